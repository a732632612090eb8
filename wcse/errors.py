"""The errors wcse raises about what it was given: a setting, a data file, the cache, a peer.

Each says what is wrong and where (the key, the file and line, the lock and its holder), so
the command line prints its message alone, without a stack trace (``HYDRA_FULL_ERROR=1``
shows one). Any other exception is a bug and keeps its traceback. Each class also derives
from the builtin error it refines, so ``except ValueError`` and friends still catch them.
"""

from __future__ import annotations


class WcseError(Exception):
    """Base of the errors a user can fix from the message alone."""


class ConfigError(WcseError, ValueError):
    """A setting outside its domain, an unknown key, or settings that contradict each other."""


class DataError(WcseError, ValueError):
    """A data file or row that does not fit its format (the message names file and line)."""


class MissingInput(WcseError, FileNotFoundError):
    """A configured input file or folder that does not exist."""


class LockTimeout(WcseError, TimeoutError):
    """A lock still held by another process after ``paths.lock_timeout_s``."""
