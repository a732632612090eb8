"""The artifact cache: built once, reused, rebuilt when damaged, never half-published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wcse.artifacts import MANIFEST, Cache, MissingArtifact, digest


def writer(calls: list[int]):
    def build(out: Path) -> None:
        calls.append(1)
        (out / "data.txt").write_text("payload " * 100)
        (out / "sub").mkdir()
        (out / "sub" / "more.json").write_text(json.dumps({"a": 1}))

    return build


def test_digest_ignores_key_order_and_changes_with_content() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_built_once_then_reused(tmp_path: Path) -> None:
    cache, calls = Cache(tmp_path), []
    first = cache.get_or_build("stage", {"x": 1}, writer(calls))
    second = cache.get_or_build("stage", {"x": 1}, writer(calls))
    assert first == second and len(calls) == 1
    assert [e["cached"] for e in cache.events] == [False, True]
    manifest = json.loads((first / MANIFEST).read_text())
    assert set(manifest["files"]) == {"data.txt", "sub/more.json"}


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "data.txt").write_text("payload " * 99 + "pAyload "),  # same size, other bytes
        lambda p: (p / "data.txt").write_text("trunc"),
        lambda p: (p / "sub" / "more.json").unlink(),
        lambda p: (p / MANIFEST).write_text("{not json"),
        lambda p: (p / MANIFEST).unlink(),
    ],
)
def test_damaged_artifact_is_rebuilt_not_used(tmp_path: Path, damage) -> None:
    cache, calls = Cache(tmp_path), []
    path = cache.get_or_build("stage", {"x": 1}, writer(calls))
    damage(path)
    assert not cache.valid(path)
    assert cache.get_or_build("stage", {"x": 1}, writer(calls)) == path
    assert len(calls) == 2 and cache.valid(path)


def test_failed_build_publishes_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def crash(out: Path) -> None:
        (out / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("stage", {"x": 1}, crash)
    assert not cache.path("stage", {"x": 1}).exists()
    assert not [p for p in (tmp_path / "stage").iterdir() if p.name.startswith(".tmp")]


def test_a_resumable_build_finds_what_its_killed_predecessor_left(tmp_path: Path) -> None:
    cache, seen = Cache(tmp_path), []

    def train(out: Path) -> None:
        seen.append(sorted(p.name for p in out.iterdir()))
        (out / f"checkpoint-{len(seen)}").mkdir()
        if len(seen) == 1:
            raise RuntimeError("killed after checkpoint 1")
        (out / "model.bin").write_text("weights")

    with pytest.raises(RuntimeError):
        cache.get_or_build("train", {"x": 1}, train, resumable=True)
    assert not cache.path("train", {"x": 1}).exists()  # nothing published
    path = cache.get_or_build("train", {"x": 1}, train, resumable=True)
    assert seen == [[], ["checkpoint-1"]]  # the rerun started from the first run's checkpoint
    assert sorted(p.name for p in path.iterdir()) == sorted([MANIFEST, "checkpoint-1", "checkpoint-2", "model.bin"])
    assert [p.name for p in (tmp_path / "train").iterdir() if p.name.startswith(".partial")] == []


def test_stage_not_selected_and_not_cached_is_a_clear_error(tmp_path: Path) -> None:
    cache = Cache(tmp_path, allowed={"verify"})
    with pytest.raises(MissingArtifact, match="stage 'train' is not in `stages`"):
        cache.get_or_build("train", {"x": 1}, writer([]))
