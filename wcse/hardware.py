"""Accelerator peaks: the one table of dense bf16 throughput per GPU that training's MFU
(:mod:`wcse.train.worker`) and the cost plan (:mod:`wcse.plan`) both read. Imports nothing heavy."""

from __future__ import annotations

# Dense bf16 tensor-core peaks per GPU (no sparsity), TFLOPS, from NVIDIA's datasheets; matched as
# substrings of torch.cuda.get_device_name(), first match wins ("NVIDIA H100 80GB HBM3" is the SXM).
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
)


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named ``device_name`` (a CUDA device name or a short one such
    as "H100"); None for a GPU not in the table."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)
