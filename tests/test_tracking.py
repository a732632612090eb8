"""logger=wandb: one offline run per arm of every job, read back record by record from its files.

A real toy run is tracked and its offline runs are decoded (wandb 0.31 ships no Python reader
for its ``.wandb`` files, so ``OfflineRun`` parses their leveldb-style log into
``wandb_internal_pb2.Record`` messages): the assertions compare what W&B would upload with the
job's own summary and artifacts, not with strings that merely occur somewhere in the bytes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from tests.conftest import ROOT, compose_config
from wcse import runner
from wcse.settings import validate
from wcse.summary import RunSummary
from wcse.tracking import SAMPLE_COLUMNS, SAMPLE_ROWS, SERIES, arm_metrics, group_name, track

BLOCK, HEADER = 32768, 7  # the leveldb log format wandb writes: 32 KiB blocks, 7-byte record headers
FULL, LAST = 1, 4


def log_records(path: Path) -> Iterator[pb.Record]:
    """The records of a ``.wandb`` file, each checksum verified (crc32 of the type byte and data)."""
    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:HEADER]) == (b":W&B", 0xBEE1, 0), "not a wandb log (v0)"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's zero-filled trailer
            pos += BLOCK - pos % BLOCK
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:  # preallocated, never written
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum, f"{path}: bad record at {pos}"
        pending += chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What an offline run holds, as ``wandb sync`` would upload it."""

    folder: Path
    run: pb.RunRecord = field(default_factory=pb.RunRecord)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None

    @classmethod
    def read(cls, folder: Path) -> OfflineRun:
        (log_file,) = folder.glob("run-*.wandb")
        out = cls(folder)
        for record in log_records(log_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out.run = record.run
                out.config = {i.key: json.loads(i.value_json) for i in record.run.config.update}
            elif kind == "history":
                row = {_key(i): json.loads(i.value_json) for i in record.history.item}
                out.history.append({k: v for k, v in row.items() if not k.startswith("_")})
            elif kind == "summary":
                out.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
            elif kind == "metric" and record.metric.step_metric:
                out.step_metrics[record.metric.name] = record.metric.step_metric
            elif kind == "exit":
                out.exit_code = record.exit.exit_code
        return out

    def series(self, y: str) -> list[tuple[Any, Any]]:
        return [(row[self.step_metrics[y]], row[y]) for row in self.history if y in row]

    def table(self, key: str) -> dict[str, Any]:
        (row,) = [row for row in self.history if f"{key}/_type" in row]
        assert row[f"{key}/_type"] == "table-file"
        return json.loads((self.folder / "files" / row[f"{key}/path"]).read_text())


def offline_runs(run_dir: Path) -> dict[str, OfflineRun]:
    """The job's offline runs by arm."""
    runs = [OfflineRun.read(folder) for folder in (run_dir / "wandb").glob("offline-run-*")]
    by_arm = {r.config["arm"]: r for r in runs}
    assert len(by_arm) == len(runs), "one run per arm"
    return by_arm


@pytest.fixture(scope="module")
def wandb_server() -> Iterator[socket.socket]:
    """A listening socket posing as the W&B server: whatever tries to reach it is queued, and
    ``contacted`` finds it. Nothing of a test can reach the real server."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def contacted(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


@pytest.fixture(scope="module")
def wandb_env(tmp_path_factory, wandb_server) -> Iterator[dict[str, str]]:
    """Quiet, pointed at the stand-in server, and every file wandb writes outside the run
    directory kept in a temp folder. No WANDB_MODE: offline must come from ``logger.mode``."""
    home = tmp_path_factory.mktemp("wandb-home")
    host, port = wandb_server.getsockname()
    env = {"WANDB_SILENT": "true", "WANDB_BASE_URL": f"http://{host}:{port}"}
    env |= {f"WANDB_{d}_DIR": str(home / d.lower()) for d in ("CONFIG", "CACHE", "DATA", "ARTIFACT")}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_MODE", raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, wandb_env) -> tuple[Path, RunSummary]:
    """A real toy job (w2s: the SE model finetuned on WC and on SE data), tracked as the app does."""
    root = tmp_path_factory.mktemp("tracked")
    cfg = compose_config(
        root,
        "experiment=toy_tiny",
        "setup=w2s",
        "budget=low",
        "logger=wandb",
        "dataset@transfer=toy_arith_variants",
        "transfer.toy.n_test=10",
    )
    validate(cfg)
    summary = runner.run(cfg)
    track(cfg, summary)
    return root, summary


def test_every_arm_gets_a_run_grouped_and_tagged(tracked) -> None:
    root, _ = tracked
    runs = offline_runs(root / "run")
    assert set(runs) == {"wc", "se"}
    for arm, r in runs.items():
        assert r.run.project == "wcse" and r.run.run_group == "run"  # outside a sweep: the run dir's name
        assert r.run.job_type == "w2s" and r.run.display_name == f"toy-toy_arith-w2s-low-{arm}"
        assert set(r.run.tags) == {"pair:toy", "dataset:toy_arith", "setup:w2s", "budget:low", f"arm:{arm}"}
        assert r.config["model_pair"]["name"] == "toy" and r.config["budget"]["name"] == "low"
        assert r.config["paradigm"] == {"wc": "weak-to-strong improvement", "se": "self-improvement"}[arm]
        assert r.exit_code == 0


def test_runs_carry_the_summary_metrics(tracked) -> None:
    _, typed = tracked
    summary = typed.model_dump(by_alias=True)  # wandb's keys are the summary's JSON names
    for arm, r in offline_runs(tracked[0] / "run").items():
        expected = arm_metrics(typed, arm)
        assert {k: r.summary.get(k) for k in expected} == expected
        result, data, train = summary["finetune"]["arms"][arm], summary["data"][arm], summary["train"][arm]
        assert r.summary["eval/pass@1"] == result["pass@1"]
        interval = [r.summary["eval/pass@1_interval/low"], r.summary["eval/pass@1_interval/high"]]
        assert interval == list(result["pass@1_interval"])
        assert r.summary["eval/per_level/1/value"] == result["per_level"]["1"]["value"]
        assert r.summary["eval/fpr/value"] == result["fpr"]["value"]
        best = result["checkpoint_selection"]["best"]
        assert r.summary["eval/checkpoint_selection/best/validation_pass@1"] == best["validation_pass@1"]
        assert r.summary["eval/base_pass@1"] == summary["finetune"]["base_pass@1"]
        assert r.summary["eval/transfer/pass@1"] == result["transfer"]["pass@1"]
        assert r.summary["eval/base_transfer_pass@1"] == summary["models"]["se"]["base"]["transfer"]["pass@1"]
        assert r.summary["data/coverage"] == data["coverage"] and r.summary["data/k"] == data["k"]
        assert r.summary["data/diversity_by_rule/computation"] == data["diversity_by_rule"]["computation"]
        assert r.summary["data/fpr/high"] == data["fpr"]["high"]
        assert r.summary["sampling/flops"] == summary["sampling"]["models"][arm]["flops"]
        assert r.summary["train/tokens_per_second"] == train["tokens_per_second"]
        assert r.summary["train/data/by_source/" + arm] == train["data"]["rows"]
        assert r.summary["budget/wc_samples"] == 3 and r.summary["budget/se_samples"] == 1
        assert r.summary["timing/train"] == summary["timing_seconds"]["train"]
        assert not any(k.startswith(("data/coverage_curve", "artifacts")) for k in r.summary)


def test_a_mixed_arm_has_no_data_metrics_of_its_own(tracked) -> None:
    _, summary = tracked
    keys = arm_metrics(summary, "mix")
    assert keys and not any(k.startswith(("data/", "sampling/", "filter/")) for k in keys)


def test_runs_carry_the_curves(tracked) -> None:
    summary = tracked[1].model_dump(by_alias=True)
    for arm, r in offline_runs(tracked[0] / "run").items():
        assert r.step_metrics == SERIES
        metrics = json.loads((Path(summary["train"][arm]["dir"]) / "metrics.json").read_text())
        assert r.series("train/loss") == [(h["step"], h["loss"]) for h in metrics["loss_history"]] != []
        checkpoints = summary["finetune"]["arms"][arm]["checkpoint_selection"]["checkpoints"]
        assert r.series("val/pass@1") == [(c["step"], c["validation_pass@1"]) for c in checkpoints] != []
        curve = summary["data"][arm]["coverage_curve"]
        assert r.series("data/coverage@k") == [(int(k), v) for k, v in curve.items()] != []


def test_runs_carry_a_table_of_evaluation_outputs(tracked) -> None:
    summary = tracked[1].model_dump(by_alias=True)
    for arm, r in offline_runs(tracked[0] / "run").items():
        table = r.table("eval/samples")
        assert table["columns"] == SAMPLE_COLUMNS
        eval_dir = Path(summary["finetune"]["arms"][arm]["dir"])
        samples = [json.loads(line) for line in open(eval_dir / "samples.jsonl")][:SAMPLE_ROWS]
        verdicts = {v["key"]: v for v in map(json.loads, open(eval_dir / "verdicts.jsonl"))}
        rows = [dict(zip(SAMPLE_COLUMNS, row, strict=True)) for row in table["data"]]
        assert len(rows) == SAMPLE_ROWS
        for row, sample in zip(rows, samples, strict=True):
            verdict = verdicts[sample["key"]]
            expected = (sample["problem_id"], sample["index"], sample["text"])
            assert (row["problem_id"], row["index"], row["output"]) == expected
            assert (row["correct"], row["status"]) == (verdict["correct"], verdict["status"])
            assert sample["prompt"].endswith(row["prompt_tail"]) and row["extracted"] == verdict["extracted"]


def test_group_is_the_logger_group_when_set(compose_cfg) -> None:
    assert group_name(compose_cfg("logger=wandb", "logger.group=paper-grid")) == "paper-grid"
    assert group_name(compose_cfg("logger=wandb")) == "run"  # outside Hydra: the run directory's name


def test_a_tracking_failure_is_logged_and_the_job_goes_on(compose_cfg, wandb_env, caplog) -> None:
    cfg = compose_cfg("logger=wandb", "setup.arms=[wc]")
    train = {"train_loss": 1.0, "steps": 1, "n_examples": 1, "train_seconds": 1.0, "tokens_per_second": 1.0,
             "mfu": None, "world_size": 1, "data": {"rows": 1, "by_source": {"wc": 1}},
             "dir": str(Path(cfg.paths.run_dir) / "no-such-training")}
    summary = RunSummary.parse({"version": 3, "train": {"wc": train}})
    with caplog.at_level(logging.ERROR, logger="wcse.tracking"):
        track(cfg, summary)  # metrics.json is missing: the run fails, the job does not
    assert "wandb tracking failed" in caplog.text and "FileNotFoundError" in caplog.text
    (r,) = offline_runs(Path(cfg.paths.run_dir)).values()
    assert r.exit_code == 1  # the half-logged run is marked failed, not left looking complete


def test_an_offline_job_never_contacts_the_server(tracked, wandb_env, wandb_server, tmp_path: Path) -> None:
    """The real job's runs again, in a process of their own: what wandb sends at exit counts too."""
    root, _ = tracked
    script = (
        "import sys; from pathlib import Path; from tests.conftest import compose_config; "
        "from wcse.summary import RunSummary; from wcse.tracking import track; "
        "cfg = compose_config(Path(sys.argv[1]), 'experiment=toy_tiny', 'logger=wandb'); "
        "track(cfg, RunSummary.read(Path(sys.argv[2])))"
    )
    command = [sys.executable, "-c", script, str(tmp_path), str(root / "run" / "summary.json")]
    out = subprocess.run(command, cwd=ROOT, env={**os.environ, **wandb_env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(offline_runs(tmp_path / "run")) == {"wc", "se"}
    assert not contacted(wandb_server)


def test_logger_none_writes_nothing(compose_cfg, tmp_path: Path) -> None:
    track(compose_cfg("logger=none"), {"data": {}})
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_sweep_puts_every_job_in_one_group(tracked, wandb_env, wandb_server, tmp_path: Path) -> None:
    root, _ = tracked  # its cache: the sweep's w2s job is reused, the kd job only finetunes
    sweep = tmp_path / "paper-grid"
    command = [sys.executable, "-m", "wcse.main", "-m", "experiment=toy_tiny", "logger=wandb", "setup=kd,w2s"]
    env = {**os.environ, **wandb_env, "WCSE_CACHE_DIR": str(root / "cache")}
    out = subprocess.run(
        [*command, f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert not contacted(wandb_server)
    summaries = {json.loads(p.read_text())["run"]["setup"]: p for p in sweep.glob("*/summary.json")}
    assert set(summaries) == {"kd", "w2s"}
    for setup, path in summaries.items():
        summary = json.loads(path.read_text())
        runs = offline_runs(path.parent)
        assert set(runs) == {"wc", "se"}
        for arm, r in runs.items():
            assert r.run.run_group == "paper-grid" and r.run.job_type == setup and f"arm:{arm}" in r.run.tags
            assert r.summary["eval/pass@1"] == summary["finetune"]["arms"][arm]["pass@1"]
            assert r.config["paths"]["run_dir"] == str(path.parent)
