"""Data-parallel sampling shards: disjoint, complete, stable; sharded jobs fill one store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import compose_config
from wcse import runner
from wcse.artifacts import MissingArtifact
from wcse.sampling.backends import in_shard
from wcse.settings import validate


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_are_disjoint_and_complete(count) -> None:
    ids = [f"problem-{i}" for i in range(2000)]
    slices = [{p for p in ids if in_shard(p, index, count)} for index in range(count)]
    assert set().union(*slices) == set(ids)
    assert sum(len(s) for s in slices) == len(ids)
    assert all(len(s) > len(ids) / count * 0.8 for s in slices)  # balanced
    # stable: a problem's shard does not depend on which other problems exist
    assert {p for p in ids[:500] if in_shard(p, 0, count)} == slices[0] & set(ids[:500])


def test_bad_shard_index_is_rejected(compose_cfg) -> None:
    with pytest.raises(ValueError, match="sampler.shard"):
        validate(compose_cfg("sampler.shard.index=2", "sampler.shard.count=2"))


def test_sharded_jobs_fill_one_store_then_the_rest_runs(tmp_path: Path) -> None:
    base = ["experiment=toy_tiny", "dataset.toy.n_train=24"]
    for index in range(2):
        cfg = compose_config(tmp_path, *base, "stages=[dataset,sample]", "sampler.shard.count=2", f"sampler.shard.index={index}")
        summary = runner.run(cfg)
        assert 0 < summary.sampling.models["se"].samples < 24  # only its slice
    with pytest.raises(MissingArtifact, match="every shard"):
        cfg = compose_config(tmp_path / "other", *base, "stages=[dataset,sample,verify]", "sampler.shard.count=2")
        runner.run(cfg)
    assert not (tmp_path / "other" / "cache" / "samples").exists()  # refused before anything ran
    summary = runner.run(compose_config(tmp_path, *base, "stages=[dataset,sample,verify,metrics]"))
    assert summary.data["se"].n_samples == 24 and summary.data["wc"].n_samples == 72
    assert summary.sampling.models["se"].samples == 24  # all found in the store the shards filled
