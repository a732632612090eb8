"""SampleStore and ensure_samples: keyed, append-only, resumable after a crash, safe for concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from test_hf_sampler import PROMPTS, make_requests, save_tiny_model

from wcse.records import Sample, to_json
from wcse.sampling.hf import HFSampler
from wcse.sampling.store import SampleRequest, SampleStore, ensure_samples, sample_key, sample_seed


class Spy:
    """Wraps a real sampler, recording what it is asked for; optionally dies on call ``crash_on``."""

    def __init__(self, inner: HFSampler, crash_on: int | None = None) -> None:
        self.inner, self.name, self.crash_on = inner, inner.name, crash_on
        self.calls: list[list[str]] = []

    def generate(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        if len(self.calls) == self.crash_on:
            raise RuntimeError("simulated crash")
        self.calls.append([r.key for r in requests])
        return self.inner.generate(requests)


def record(request: SampleRequest, text: str = "seven") -> Sample:
    """A stored sample for ``request`` without running a model (the store does not care how it was made)."""
    return Sample(
        key=request.key, model=request.model, dataset=request.dataset, problem_id=request.problem_id,
        index=request.index, seed=request.seed, params=dict(request.params), prompt=request.prompt, text=text,
        prompt_tokens=1, generated_tokens=1, finish_reason="stop", backend="test", seconds=0.0,
    )


def raw_keys(store: SampleStore) -> list[str]:
    """Every key line in every shard, duplicates included."""
    return [json.loads(line)["key"] for shard in store.shards() for line in shard.read_text().splitlines()]


@pytest.fixture(scope="module")
def sampler(tmp_path_factory: pytest.TempPathFactory) -> HFSampler:
    return HFSampler(str(save_tiny_model(tmp_path_factory.mktemp("tiny"))), batch_size=4, device="cpu")


def test_keys_and_seeds_are_stable_and_distinct() -> None:
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8}
    # Pinned: a change here would orphan every stored sample.
    assert sample_seed(0, "p0", 0) == 8381171415074628405
    assert len({sample_seed(0, "p0", j) for j in range(100)} | {sample_seed(1, "p0", 0)}) == 101
    assert all(0 <= sample_seed(7, f"p{i}", 3) < 2**63 for i in range(100))
    key = sample_key("m", "d", "p0", 0, params, 5)
    assert key.startswith("m|d|p0|0|5|")
    assert key == sample_key("m", "d", "p0", 0, dict(reversed(params.items())), 5)
    assert key != sample_key("m", "d", "p0", 0, {**params, "temperature": 0.7}, 5)
    with pytest.raises(ValueError, match="separator"):
        sample_key("m", "d", "a|b", 0, params, 5)


def test_append_load_dedup(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "store")
    assert store.load() == [] and store.keys() == set()
    requests = make_requests(PROMPTS[:5])
    first, second = requests[:3], requests[2:]  # p2 in both
    assert store.append([record(r) for r in first]) == 3
    assert store.append([record(r, text="other") for r in second] + [record(second[-1])]) == 2
    assert store.append([record(r) for r in first]) == 0  # nothing new: no empty shard either
    assert len(store.shards()) == 2
    loaded = {s.key: s for s in store.load()}
    assert set(loaded) == store.keys() == {r.key for r in first + second}
    assert loaded[second[0].key].text == "seven"  # the first writer of a key wins
    assert sorted(raw_keys(store)) == sorted(loaded)
    dataset = SampleStore(store.root).to_dataset()  # a fresh reader sees the same
    assert sorted(dataset["key"]) == sorted(loaded) and "generated_tokens" in dataset.column_names


def test_ensure_samples_generates_only_missing(tmp_path: Path, sampler: HFSampler) -> None:
    store, spy = SampleStore(tmp_path / "store"), Spy(sampler)
    low = ensure_samples(store, spy, make_requests(PROMPTS[:2], indices=range(3)))
    high_requests = make_requests(PROMPTS[:2], indices=range(5))
    high = ensure_samples(store, spy, high_requests)
    assert [len(keys) for keys in spy.calls] == [6, 4]  # the high budget only adds indices 3 and 4
    assert {k.split("|")[3] for k in spy.calls[1]} == {"3", "4"}
    assert [s.key for s in high] == [r.key for r in high_requests]
    assert [s for s in high if s.index < 3] == sorted(low, key=lambda s: (s.problem_id, s.index))
    assert ensure_samples(store, spy, high_requests) == high and len(spy.calls) == 2


def test_crash_then_rerun_equals_uninterrupted_run(tmp_path: Path, sampler: HFSampler) -> None:
    requests = make_requests(PROMPTS, indices=range(2))  # 12 requests, 3 chunks of 4
    uninterrupted = ensure_samples(SampleStore(tmp_path / "clean"), sampler, requests, flush_every=4)
    store = SampleStore(tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        ensure_samples(store, Spy(sampler, crash_on=1), requests, flush_every=4)
    assert len(store.keys()) == 4  # the first chunk survived
    resumed = ensure_samples(store, spy := Spy(sampler), requests, flush_every=4)
    assert sum(len(keys) for keys in spy.calls) == 8
    assert sorted(raw_keys(store)) == sorted(r.key for r in requests)  # no duplicate, none lost
    # Batches differ between the two runs, the samples do not.
    assert [replace(s, seconds=0.0) for s in resumed] == [replace(s, seconds=0.0) for s in uninterrupted]


def _write_keys(root: str, keys: list[str], start: multiprocessing.synchronize.Event) -> None:
    """One writer process: appends overlapping keys in small chunks, racing the other."""
    store, params = SampleStore(Path(root)), {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 1}
    start.wait()
    for begin in range(0, len(keys), 3):
        store.append([record(SampleRequest(k, "m", "d", k, 0, 0, "", params)) for k in keys[begin : begin + 3]])


def test_concurrent_writers_never_duplicate(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # children only write JSON: no model or torch use after fork
    start = ctx.Event()
    keys = [f"k{i:03d}" for i in range(90)]
    writers = [
        ctx.Process(target=_write_keys, args=(str(tmp_path), keys[30:60] + keys[:30], start)),
        ctx.Process(target=_write_keys, args=(str(tmp_path), keys[30:60] + keys[60:], start)),
    ]  # both start on the shared keys, so without the lock they would race on them
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    store = SampleStore(tmp_path)
    assert sorted(raw_keys(store)) == keys  # every key once; every shard line is valid JSON
    assert store.keys() == set(keys)


def test_corrupt_shard_is_set_aside_and_its_valid_lines_kept(tmp_path: Path, caplog) -> None:
    store = SampleStore(tmp_path)
    store.append([record(r) for r in make_requests(PROMPTS[:2])])
    first, second = store.shards()[0].read_text().splitlines()
    good = store.shards()[0]
    good.write_text(first + "\n" + second[: len(second) // 2] + "\n")  # a torn second line
    repaired = SampleStore(tmp_path)
    loaded = repaired.load()
    assert [s.key for s in loaded] == [json.loads(first)["key"]]  # the valid line survives
    assert good.with_suffix(".corrupt").exists() and not good.exists()  # kept for inspection
    assert f"{good.name}:2: invalid JSON" in caplog.text  # the warning names file and line
    assert SampleStore(tmp_path).keys() == {json.loads(first)["key"]}  # repaired on disk


def test_a_store_written_before_stop_strings_still_loads(tmp_path: Path) -> None:
    """Records from before ``stop_string`` existed lack the key: they load with None, and a
    record of today round-trips its stop string."""
    request = make_requests(PROMPTS[:1])[0]
    old = {k: v for k, v in json.loads(to_json(record(request))).items() if k != "stop_string"}
    (tmp_path / "shard-20240101T000000000000Z-old.jsonl").write_text(json.dumps(old) + "\n", encoding="utf-8")
    (loaded,) = SampleStore(tmp_path).load()
    assert loaded.stop_string is None and loaded.text == loaded.response == "seven" and loaded.finished
    stopped = replace(record(make_requests(PROMPTS[:2])[1]), stop_string="\nQuestion:")
    SampleStore(tmp_path).append([stopped])
    assert {s.key: s.stop_string for s in SampleStore(tmp_path).load()} == {
        request.key: None, stopped.key: "\nQuestion:"
    }
