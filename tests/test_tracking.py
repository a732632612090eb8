"""logger=wandb writes an offline run carrying the summary's numbers and the run's tags."""

from __future__ import annotations

from pathlib import Path

from wcse.tracking import track


def test_offline_wandb_run_carries_the_summary(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg("logger=wandb", "setup=kd")
    summary = {
        "finetune": {"arms": {"wc": {"pass@1": 0.25}, "se": {"pass@1": 0.5}}, "target": "student"},
        "data": {"wc": {"coverage": 0.75, "fpr": {"value": 0.1}}},
        "artifacts": [{"stage": "train"}],
    }
    track(cfg, summary)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    # wandb 0.31 keeps an offline run as protobuf records and ships no Python reader for them;
    # protobuf stores strings verbatim, so the summary's keys, values and tags are visible.
    records = runs[0].read_bytes()
    for needle in (b"finetune/arms/wc/pass@1", b"0.25", b"data/wc/fpr/value", b"0.1", b"kd", b"toy"):
        assert needle in records, needle
    assert b"artifacts" not in records  # the artifact list is bookkeeping, not a metric


def test_logger_none_writes_nothing(compose_cfg, tmp_path: Path) -> None:
    track(compose_cfg("logger=none"), {"data": {}})
    assert not (tmp_path / "run").exists()
