"""Which jobs a multirun planned, read back from the ``multirun.yaml`` Hydra saves in its folder.

Hydra's basic sweeper parses the sweep's overrides (``hydra.sweeper.params`` first, then the
command line's), turns each into its list of values (``a=1,2``, ``choice(...)``, ``range(...)``,
``glob(...)`` over a config group's options; a plain override is a list of one) and plans the
cartesian product of those lists, in order, as jobs 0, 1, ... . Its expansion is not public
API, so it is done here the same way with the public override parser. A ``shuffle(...)``
sweep plans its values in a random order: its jobs are found all the same, but a job's
number here may not be the one Hydra gave it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.core.plugins import Plugins
from hydra.errors import HydraException, OverrideParseException
from hydra.plugins.config_source import ConfigSource

from wcse.config import register


def read_yaml(path: Path) -> Any:
    """A YAML file's content; None when there is no such file."""
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"malformed {path.name}: {err}") from err


def planned_jobs(root: Path) -> list[list[str]]:
    """The overrides of every job the basic-sweeper multirun in ``root`` planned, in job-number
    order; [] when ``root`` is no multirun or another sweeper planned it (its plan is its own)."""
    config = read_yaml(root / "multirun.yaml")
    if config is None:
        return []
    try:
        hydra = config["hydra"]
        sweeper = hydra["sweeper"]
        if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            return []
        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        return sweep_jobs([*params, *hydra["overrides"]["task"]], hydra["runtime"]["config_sources"])
    except (KeyError, TypeError, AttributeError, OverrideParseException, HydraException) as err:
        raise ValueError(f"malformed multirun.yaml: {type(err).__name__} {err}") from err


def sweep_jobs(overrides: list[str], sources: list[dict[str, str]]) -> list[list[str]]:
    """The jobs the basic sweeper plans for these overrides (its ``params`` first, then the
    command line's), each as its list of plain overrides, in job-number order; ``sources`` is the
    config search path as ``hydra.runtime.config_sources`` lists it (for ``glob(...)``). Raises
    Hydra's errors for an override it cannot parse or enumerate."""
    values: dict[str, list[str]] = {}  # a later override of a key replaces the earlier, in its place
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        values[key] = [f"{key}={value}" for value in _values(override, sources)]
    return [list(job) for job in itertools.product(*values.values())]


def _values(override: Override, sources: list[dict[str, str]]) -> list[str]:
    """An override's values as the sweeper lists them."""
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    if not override.is_discrete_sweep():
        raise HydraException(f"{override.input_line}: the basic sweeper cannot enumerate an interval sweep")
    glob = override.value()
    if isinstance(glob, Glob):  # the parser cannot list a group's options without Hydra's config loader
        return glob.filter(_group_options(override.key_or_group, sources))
    return list(override.sweep_string_iterator())


def _group_options(group: str, sources: list[dict[str, str]]) -> list[str]:
    """The configs of a config group in the sweep's config sources (``hydra.runtime.config_sources``:
    its search path), as Hydra's config loader lists them: from every source, sorted, each once.
    A structured source lists this process's ConfigStore, which holds wcse's schemas once
    registered, as it did in the sweep's process."""
    register()
    kinds = {kind.scheme(): kind for kind in Plugins.instance().discover(ConfigSource)}
    options: set[str] = set()
    for source in sources:
        found = kinds[source["schema"]](source["provider"], f"{source['schema']}://{source['path']}")
        if found.is_group(group):
            options.update(found.list(group, results_filter=ObjectType.CONFIG))
    return sorted(options)
