"""The sample store: append-only JSONL shards of :class:`~wcse.records.Sample`, addressed by key.

Sampling is the expensive stage and a sweep grows it incrementally (the low budget's samples
are the first ones of the high budget's), so the store is built to be resumed and shared:

- a sample's key names everything that determined it (model, dataset, problem, index, sampling
  params, seed), so "do we have it?" is a set lookup and nothing is ever generated twice;
- every write is a new shard written atomically (temp file + rename), so a crash loses at most
  the chunk in flight and never leaves a half-written file;
- writers take a file lock and re-read the keys under it, so concurrent jobs of one sweep never
  store a key twice; a writer waiting for it says who holds it (:class:`wcse.locks.HeldLock`);
- every line carries a checksum of its record, verified on reading: a line changed on disk (a
  flipped digit is still valid JSON) is set aside with the shard's torn lines, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import datasets
from tqdm.auto import tqdm

from wcse.locks import HeldLock
from wcse.records import CHECKSUM, Sample, from_dict, verify_checksum, write_checked_jsonl

log = logging.getLogger(__name__)

KEY_SEP = "|"


def canonical_params(params: Mapping[str, Any]) -> str:
    """Sampling params as canonical JSON: equal params give equal text whatever the dict order."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"))


def sample_key(model: str, dataset: str, problem_id: str, index: int, params: Mapping[str, Any], seed: int) -> str:
    """A readable key naming everything that determines a sample (params as a short digest)."""
    for name, value in (("model", model), ("dataset", dataset), ("problem_id", problem_id)):
        if KEY_SEP in value:  # the separator inside a field would let two samples share a key
            raise ValueError(f"{name} {value!r} contains the key separator {KEY_SEP!r}")
    digest = hashlib.sha1(canonical_params(params).encode()).hexdigest()[:12]
    return KEY_SEP.join((model, dataset, problem_id, str(index), str(seed), digest))


def sample_seed(base_seed: int, problem_id: str, index: int) -> int:
    """A stable 63-bit seed for sample ``index`` of a problem, independent of the budget.

    A cryptographic hash rather than ``hash()``, which is salted per process.
    """
    digest = hashlib.sha256(f"{base_seed}{KEY_SEP}{problem_id}{KEY_SEP}{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class SampleRequest:
    """One sample to generate; ``params`` holds at least temperature, top_p and max_new_tokens, and
    ``stop`` (a list of strings, :func:`wcse.data.prompts.stop_params`) when the prompt has stop strings.

    ``prompt`` is the text a completion model continues; ``messages``, when set, is the same prompt
    as chat turns (:func:`wcse.data.prompts.messages`) for a chat-only API. Neither is in the key:
    the prompt's version in ``params`` stands for both.
    """

    key: str
    model: str
    dataset: str
    problem_id: str
    index: int
    seed: int
    prompt: str
    params: Mapping[str, Any]
    messages: tuple[dict[str, str], ...] | None = None

    @classmethod
    def create(
        cls,
        *,
        model: str,
        dataset: str,
        problem_id: str,
        index: int,
        prompt: str,
        params: Mapping[str, Any],
        base_seed: int,
        messages: Sequence[Mapping[str, str]] | None = None,
    ) -> SampleRequest:
        """The request for sample ``index`` of a problem, with its derived seed and key."""
        seed = sample_seed(base_seed, problem_id, index)
        key = sample_key(model, dataset, problem_id, index, params, seed)
        turns = None if messages is None else tuple(dict(m) for m in messages)
        return cls(key, model, dataset, problem_id, index, seed, prompt, dict(params), turns)

    def to_sample(
        self,
        *,
        text: str,
        prompt_tokens: int,
        generated_tokens: int,
        finish_reason: str,
        backend: str,
        seconds: float,
        stop_string: str | None = None,
    ) -> Sample:
        """The record of this request's generation: its own fields plus what the backend measured."""
        return Sample(
            key=self.key,
            model=self.model,
            dataset=self.dataset,
            problem_id=self.problem_id,
            index=self.index,
            seed=self.seed,
            params=dict(self.params),
            prompt=self.prompt,
            text=text,
            prompt_tokens=prompt_tokens,
            generated_tokens=generated_tokens,
            finish_reason=finish_reason,
            backend=backend,
            seconds=seconds,
            stop_string=stop_string,
        )


class Sampler(Protocol):
    """A backend: turns requests into samples, one per request, in request order."""

    name: str

    def generate(self, requests: Sequence[SampleRequest]) -> list[Sample]: ...


class SampleStore:
    """A directory of immutable ``shard-<utc timestamp>-<uuid>.jsonl`` files.

    Shards never change once written, so each is parsed once per store object and cached.
    Every line written carries a ``checksum`` (:func:`wcse.records.to_checked_json`). Shards
    written before checksums existed have none on any line: they are read unverified (their
    count is logged once per store), since regenerating every old sample would cost the sweep
    they came from; a shard with a checksum on any line must have a valid one on every line.
    ``set_aside`` counts the lines this object found damaged and set aside.
    """

    def __init__(self, root: Path, *, lock_timeout_s: float | None = None) -> None:
        self.root = Path(root)
        self._parsed: dict[str, list[Sample]] = {}
        self._lock = HeldLock(self.root / ".lock", timeout_s=lock_timeout_s)  # one object: re-entrant
        self.set_aside = 0
        self.unverified_shards = 0

    def shards(self) -> list[Path]:
        """Shard files, oldest first (the timestamp leads the name)."""
        return sorted(self.root.glob("shard-*.jsonl"))

    def _by_key(self) -> dict[str, Sample]:
        samples: dict[str, Sample] = {}
        unverified = self.unverified_shards
        for shard in self.shards():
            if shard.name not in self._parsed:
                self._parsed[shard.name] = self._read(shard)
            for sample in self._parsed[shard.name]:
                samples.setdefault(sample.key, sample)  # first wins
        if self.unverified_shards > unverified:
            log.warning(
                "%s: %d shards were written before shard checksums; their samples are used unverified",
                self.root, self.unverified_shards - unverified,
            )
        return samples

    @staticmethod
    def _parse(shard: Path) -> tuple[list[Sample], list[str], bool]:
        """(the valid samples, a reason per damaged line, whether the shard carries checksums)."""
        rows: list[tuple[str, Any]] = []
        damaged: list[str] = []
        for lineno, raw in enumerate(shard.read_bytes().split(b"\n"), 1):
            if not raw.strip():
                continue
            where = f"{shard}:{lineno}"
            try:
                rows.append((where, json.loads(raw.decode("utf-8"))))
            except UnicodeDecodeError as err:
                damaged.append(f"{where}: not UTF-8 ({err.reason} at byte {err.start})")
            except json.JSONDecodeError as err:
                damaged.append(f"{where}: invalid JSON ({err.msg})")
        checked = any(isinstance(row, dict) and CHECKSUM in row for _, row in rows)
        samples = []
        for where, row in rows:
            try:
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: a JSON {type(row).__name__}, not a record")
                try:
                    body = verify_checksum(row) if checked else row
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from None
                samples.append(from_dict(Sample, body, where))
            except (ValueError, TypeError) as err:
                damaged.append(str(err))
        return samples, damaged, checked

    def _read(self, shard: Path) -> list[Sample]:
        """A shard's samples. A damaged shard (shards are written atomically, so only the disk or
        a hand edit can damage one: a torn line, a changed byte) is moved aside as ``*.corrupt``;
        its valid lines are kept in a new shard and the rest are regenerated by
        ``ensure_samples``: nothing valid is lost and nothing damaged is used."""
        kept, damaged, checked = self._parse(shard)
        if not damaged:
            self.unverified_shards += not checked and bool(kept)
            return kept
        with self._lock:
            if not shard.exists():  # another process already repaired it
                return []
            if kept:
                salvaged = shard.with_name(f"{shard.stem}-salvaged.jsonl")
                write_checked_jsonl(salvaged, kept)
                self._parsed[salvaged.name] = kept
            shard.rename(shard.with_suffix(".corrupt"))
        self.set_aside += len(damaged)
        log.warning(
            "%s%s; set aside %d damaged lines (shard moved to %s), kept %d valid samples, the rest will be regenerated",
            "; ".join(damaged[:3]), f"; and {len(damaged) - 3} more" if len(damaged) > 3 else "",
            len(damaged), shard.with_suffix(".corrupt").name, len(kept),
        )
        return kept

    def select(self, keys: Sequence[str]) -> list[Sample]:
        """The stored samples for ``keys``, in that order; a missing key is an error naming it."""
        stored = self._by_key()
        missing = [k for k in keys if k not in stored]
        if missing:
            raise KeyError(f"{len(missing)} samples are not in {self.root}, e.g. {missing[0]!r}")
        return [stored[k] for k in keys]

    def load(self) -> list[Sample]:
        """Every stored sample, once per key."""
        return list(self._by_key().values())

    def keys(self) -> set[str]:
        return set(self._by_key())

    def append(self, samples: Sequence[Sample]) -> int:
        """Store the samples whose key is new as one shard; returns how many were new."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            present = self.keys()  # re-read under the lock: another writer may have just added some
            new: dict[str, Sample] = {}
            for sample in samples:
                if sample.key not in present:
                    new.setdefault(sample.key, sample)
            if new:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                write_checked_jsonl(self.root / f"shard-{stamp}-{uuid.uuid4().hex}.jsonl", new.values())
        return len(new)

    def to_dataset(self) -> datasets.Dataset:
        """The samples, once per key, as a ``datasets.Dataset`` (loading the raw shards would keep duplicates)."""
        return datasets.Dataset.from_list([asdict(sample) for sample in self.load()])


def ensure_samples(
    store: SampleStore,
    sampler: Sampler,
    requests: Sequence[SampleRequest],
    *,
    flush_every: int | None = None,
    desc: str = "",
) -> list[Sample]:
    """The samples for ``requests`` in request order, generating only those not yet stored.

    Each chunk of ``flush_every`` generations is stored as soon as it is done, so a killed run
    loses at most one chunk and a rerun picks up where it stopped. Concurrent jobs asking for the
    same keys may both generate them, but the store keeps one.
    """
    present = store.keys()
    missing = list({r.key: r for r in requests if r.key not in present}.values())
    log.info(
        "%s: %d of %d samples exist, %d to generate, store %s",
        desc or sampler.name, len(requests) - len(missing), len(requests), len(missing), store.root,
    )
    tokens, start = 0, time.perf_counter()
    with tqdm(total=len(missing), unit="sample", desc=desc or sampler.name, disable=not missing) as bar:
        # A backend that batches internally (vLLM) states the chunk that keeps it busy; a killed run
        # loses at most one chunk.
        flush_every = flush_every or getattr(sampler, "chunk_size", 256)
        for begin in range(0, len(missing), flush_every):
            chunk = missing[begin : begin + flush_every]
            samples = sampler.generate(chunk)
            if [s.key for s in samples] != [r.key for r in chunk]:
                raise RuntimeError(f"sampler {sampler.name!r} did not return one sample per request, in order")
            added = store.append(samples)
            tokens += sum(s.generated_tokens for s in samples)
            bar.update(len(chunk))
            rate = tokens / (time.perf_counter() - start)
            bar.set_postfix_str(f"{rate:.0f} tok/s")
            log.info("%s: stored %d samples (%d/%d done, %.0f tok/s) in %s", desc or sampler.name, added,
                     begin + len(chunk), len(missing), rate, store.root)
    return store.select([r.key for r in requests])
