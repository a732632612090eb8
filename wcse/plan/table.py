"""The plan as markdown tables: the assumptions, a row per cell with the grid's total, the flags,
and per-model sampling and per-arm finetuning detail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wcse.plan.assumptions import PlanConfig
from wcse.plan.cost import Cell


def _si(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _flops(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"


def _hours(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _gpu_dollars(hours: float | None, a: PlanConfig) -> float | None:
    return None if hours is None or a.hardware.gpu_hour_usd is None else hours * a.hardware.gpu_hour_usd


def _total_dollars(api: float | None, hours: Sequence[float | None], a: PlanConfig) -> float | None:
    parts = [api, *(_gpu_dollars(h, a) for h in hours)]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def cell_summary(cell: Cell) -> dict[str, Any]:
    """A cell's row: its sampling, finetuning and evaluation summed (unknown parts left out)."""
    def total(values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    return {
        "samples": sum(s.requests for s in cell.sampling),
        "prompt_tokens": sum(s.prompt_tokens for s in cell.sampling),
        "generated_tokens": sum(s.generated_tokens for s in cell.sampling),
        "sampling_flops": total([s.flops for s in cell.sampling]),
        "sampling_dollars": total([s.dollars for s in cell.sampling]),
        "sampling_gpu_hours": total([s.gpu_hours for s in cell.sampling]),
        "train_tokens": sum(f.tokens for f in cell.finetunes),
        "train_flops": total([f.flops for f in cell.finetunes]),
        "train_gpu_hours": total([f.gpu_hours for f in cell.finetunes]),
        "eval_gpu_hours": total([e.gpu_hours for e in cell.evaluations]),
    }


def render(cells: list[Cell], grid: dict[str, Any], a: PlanConfig) -> str:
    h = a.hardware
    price = f", ${h.gpu_hour_usd}/GPU-hour" if h.gpu_hour_usd is not None else " (no plan.hardware.gpu_hour_usd: GPU time is not priced)"
    out = [
        f"Assumptions: {h.gpu} at {h.peak():g} dense bf16 TFLOPS per GPU, MFU {h.sample_mfu} sampling / "
        f"{h.train_mfu} finetuning{price}. FLOPs: 2 x params per sampled token, prompt included (the "
        "summary's realised FLOPs), 6 x params per trained token; GPU-hours count a problem's prompt once "
        "for all its vLLM samples (prefix caching). Override with plan.<key>=value (python -m wcse.plan --help).",
        "",
    ]
    rows = []
    for i, cell in enumerate(cells):
        if cell.error is not None:
            rows.append([str(i), cell.label, *["-"] * 12, f"**not planned**: {cell.error}"])
            continue
        c, b = cell_summary(cell), cell.budget
        rows.append([
            str(i), cell.label, f"{cell.problems:,}", f"{b['wc_samples']} / {b['se_samples']}", _si(c["samples"]),
            _si(c["prompt_tokens"]), _si(c["generated_tokens"]), _flops(c["sampling_flops"]),
            _dollars(c["sampling_dollars"]), _si(c["train_tokens"]), _flops(c["train_flops"]),
            _hours(c["sampling_gpu_hours"]), _hours(c["train_gpu_hours"]), _hours(c["eval_gpu_hours"]),
            "; ".join(cell.flags) or "-",
        ])
    g = grid
    rows.append([
        "", f"**total** ({g['cells']} cells, each piece of work once)", "", "", _si(g["samples"]), _si(g["prompt_tokens"]),
        _si(g["generated_tokens"]), _flops(g["sampling_flops"]), _dollars(g["sampling_dollars"]), _si(g["train_tokens"]),
        _flops(g["train_flops"]), _hours(g["sampling_gpu_hours"]), _hours(g["train_gpu_hours"]), _hours(g["eval_gpu_hours"]),
        f"{g['failed_cells']} not planned" if g["failed_cells"] else "-",
    ])
    out.append(_table(
        ["#", "cell", "problems", "WC / SE per problem", "samples", "prompt tokens", "generated tokens",
         "sampling FLOPs", "API $", "train tokens", "train FLOPs", "GPU-h sampling", "GPU-h finetuning",
         "GPU-h evaluation", "flags"],
        rows,
    ))
    hours = [g["sampling_gpu_hours"], g["train_gpu_hours"], g["eval_gpu_hours"]]
    known_hours = sum(x for x in hours if x is not None)
    spend = _total_dollars(g["sampling_dollars"], hours, a)
    out += [
        "",
        f"Grid total: {known_hours:,.1f} GPU-hours on {h.gpu}"
        + (f", {_dollars(spend)} in all" if spend is not None else "")
        + f". Still to spend given the cache: sampling {_hours(g['sampling_gpu_hours_to_spend'])} GPU-h"
        + (f" and {_dollars(g['sampling_dollars_to_spend'])} of API calls" if g["sampling_dollars_to_spend"] else "")
        + f" ({g['samples_stored']:,} of {g['samples']:,} samples stored), finetuning "
        f"{_hours(g['train_gpu_hours_to_spend'])} GPU-h ({g['finetunes_cached']} of {g['finetunes']} finetunes "
        "cached); evaluation is not checked against the cache.",
    ]
    sampling = [
        [str(i), s.model, _si(s.params), str(s.per_problem), f"{s.requests:,}", f"{s.stored:,}",
         f"{s.prompt_tokens / s.requests:.0f}", f"{s.generated_tokens / s.requests:.0f}", _flops(s.flops),
         _dollars(s.dollars), _hours(s.gpu_hours), s.lengths]
        for i, cell in enumerate(cells) for s in cell.sampling
    ]
    if sampling:
        out += ["", "Sampling, per model:", "", _table(
            ["#", "model", "params", "per problem", "samples", "in store", "prompt tokens / sample",
             "generated tokens / sample", "FLOPs", "API $", "GPU-h", "token counts from"],
            sampling,
        )]
    finetunes = [
        [str(i), f.target, f.arm, f"{f.steps:,} x {f.global_batch}", f"{f.row_tokens:.0f}", _si(f.tokens),
         _flops(f.flops), _hours(f.gpu_hours), str(f.gpus), "yes" if f.cached else "no"]
        for i, cell in enumerate(cells) for f in cell.finetunes
    ]
    if finetunes:
        out += ["", "Finetuning, per arm:", "", _table(
            ["#", "target", "arm", "steps x global batch", "tokens / row", "tokens", "FLOPs", "GPU-h", "GPUs", "cached"],
            finetunes,
        )]
    return "\n".join(out)
