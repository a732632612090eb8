"""Human labels for the false-positive rate: export solutions to label, import the labels back.

The paper's FPR (right final answer, wrong reasoning) is a human check of 50 correct solutions
per model, with an LLM judge compared against it. This module draws that check from a run and
scores it::

    python -m wcse.label export RUN_DIR --per-model 50 --seed 0 --out labels.csv   # or .jsonl
    python -m wcse.label import labels.csv --run RUN_DIR     # RUN_DIR/labels.json + the summary's labels section

``export`` finds the run's artifacts through ``RUN_DIR/summary.json``: the dataset and verify
artifacts from the events in its ``artifacts`` list, each role's sample store from its
``sampling`` section (``--cache-dir`` re-roots them when the cache moved). ``judge_steps_correct``
is the exact step checker's verdict where one exists (the toy world, column ``judge`` "exact"),
else the run's steps judge's (real data with ``verifier.judge`` set: the metrics stage lists its
verdicts in ``metrics/<role>.steps_judged.jsonl``; column ``judge`` names it), else blank. The
judge checks a seeded subset of correct samples (``verifier.judge.max_samples``);
``--judged-only`` draws from that subset, so every labelled item is compared with the judge.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from wcse.artifacts import digest
from wcse.records import Problem, StepJudgement, Verdict, json_lines, read_jsonl, write_jsonl
from wcse.sampling.store import SampleStore
from wcse.summary import LabelsSection, Rate, RunSummary

WORDS = {"true": True, "yes": True, "1": True, "correct": True, "false": False, "no": False, "0": False, "wrong": False}
REQUIRED = ("role", "key", "human_steps_correct")  # judge_steps_correct may be absent: no judge to compare
SHORT = object()  # a CSV cell past the end of its row: csv.DictReader's restval


@dataclass
class LabelRow:
    """One solution to label, as exported (CSV columns in this order)."""

    role: str
    key: str  # the sample's key
    problem_id: str
    problem: str  # the question text
    reference_answer: str
    extracted_answer: str | None
    solution: str  # the sample's response: what was graded and would be trained on
    human_steps_correct: bool | None  # the annotator's: every reasoning step right?
    judge: str  # what filled judge_steps_correct: "exact" (the step checker), the steps judge's name@fingerprint, or ""
    judge_steps_correct: bool | None


@dataclass(frozen=True)
class RunFiles:
    """Where a run's labelling inputs are."""

    train: Path  # the dataset artifact's train.jsonl
    verdicts: dict[str, Path]  # by sampler role
    stores: dict[str, Path]  # by sampler role
    judged: dict[str, Path]  # the steps judge's verdicts, by sampler role (roles it did not judge are absent)


def locate(summary_path: Path, cache_dir: Path | None = None) -> RunFiles:
    """The run's train problems, verdicts and sample stores, from its summary.

    The dataset event is the one whose folder is the key of the summary's dataset id (a transfer
    set has another); a verify event is labelled with its sampler role. ``cache_dir``: where the
    run's cache is now, when it is no longer at the summary's ``run.cache_dir``.
    """
    summary = RunSummary.read(summary_path)
    if summary.dataset is None or summary.sampling is None:
        raise ValueError(f"{summary_path}: no dataset or sampling section; the run did not sample")
    if cache_dir is not None and summary.run is None:
        raise ValueError(f"{summary_path}: no run section, so --cache-dir has no old cache to replace")

    def moved(path: str) -> Path:
        if cache_dir is None or summary.run is None:
            return Path(path)
        try:
            return cache_dir / Path(path).relative_to(summary.run.cache_dir)
        except ValueError:  # not under the old cache: left as it is
            return Path(path)

    def found(path: Path, what: str) -> Path:
        if not path.exists():
            hint = "" if cache_dir else "; if the cache moved, pass --cache-dir"
            raise ValueError(f"{path}: not found ({what}, recorded in {summary_path}){hint}")
        return path

    dataset_dir = digest({"key": summary.dataset.id.rpartition("@")[2]})
    datasets = {e.path for e in summary.artifacts if e.stage == "dataset" and Path(e.path).name == dataset_dir}
    if len(datasets) != 1:
        raise ValueError(f"{summary_path}: {len(datasets)} dataset artifact events for {summary.dataset.id}, need one")
    verdicts, stores, judged = {}, {}, {}
    for role, cost in summary.sampling.models.items():
        paths = {e.path for e in summary.artifacts if e.stage == "verify" and e.label == role}
        if len(paths) != 1:
            raise ValueError(f"{summary_path}: {len(paths)} verify artifact events for role {role!r}, need one (run the verify stage)")
        verdicts[role] = found(moved(paths.pop()) / "verdicts.jsonl", f"the verdicts of {role}")
        stores[role] = found(moved(cost.store), f"the sample store of {role}")
        data = (summary.data or {}).get(role)
        if data is not None and data.steps_judged_table is not None:
            judged[role] = found(Path(data.steps_judged_table), f"the steps judge's verdicts of {role}")
    return RunFiles(found(moved(datasets.pop()) / "train.jsonl", "the train problems"), verdicts, stores, judged)


def checked(v: Verdict, judged: dict[str, StepJudgement]) -> tuple[str, bool | None]:
    """What gave a sample's steps their verdict ("exact", the steps judge, or "") and the verdict."""
    if v.steps_correct is not None:
        return "exact", v.steps_correct
    j = judged.get(v.key)
    return ("", None) if j is None else (j.judge, j.steps_correct)


def draw(files: RunFiles, per_model: int, seed: int, judged_only: bool = False) -> list[LabelRow]:
    """Up to ``per_model`` correct solutions per role, drawn with ``Random(f"label:{seed}:{role}")``
    from the role's correct verdicts sorted by key, so the draw depends on nothing but the data
    (``judged_only``: from those an exact checker or the steps judge gave a verdict)."""
    problems = {p.id: p for p in read_jsonl(files.train, Problem)}
    rows = []
    for role, path in files.verdicts.items():
        judged = {j.key: j for j in read_jsonl(files.judged[role], StepJudgement)} if role in files.judged else {}
        correct = sorted((v for v in read_jsonl(path, Verdict) if v.correct), key=lambda v: v.key)
        if judged_only:
            correct = [v for v in correct if checked(v, judged)[1] is not None]
        chosen = random.Random(f"label:{seed}:{role}").sample(correct, min(per_model, len(correct)))
        try:
            samples = SampleStore(files.stores[role]).select([v.key for v in chosen])
        except KeyError as err:
            raise ValueError(f"role {role}: {err.args[0]}") from None
        for v, s in zip(chosen, samples, strict=True):
            if v.problem_id not in problems:
                raise ValueError(f"{path}: sample {v.key}: problem {v.problem_id!r} is not in {files.train}")
            problem = problems[v.problem_id]
            kind, steps_correct = checked(v, judged)
            rows.append(
                LabelRow(
                    role=role, key=v.key, problem_id=v.problem_id, problem=problem.question,
                    reference_answer=problem.answer, extracted_answer=v.extracted, solution=s.response,
                    human_steps_correct=None, judge=kind, judge_steps_correct=steps_correct,
                )
            )
    return rows


def cell(value: Any) -> str:
    """A CSV cell: a boolean as the word import reads back, None blank."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def write_rows(path: Path, rows: Sequence[LabelRow]) -> None:
    """Rows as JSONL or CSV by ``path``'s extension, written atomically."""
    if path.suffix == ".jsonl":
        write_jsonl(path, rows)
        return
    if path.suffix != ".csv":
        raise ValueError(f"{path}: the extension must be .jsonl or .csv")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([f.name for f in fields(LabelRow)])
    writer.writerows([cell(v) for v in asdict(row).values()] for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.getvalue(), encoding="utf-8", newline="")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Label:
    role: str
    key: str
    human: bool | None  # None: not labelled (yet)
    judge: bool | None  # None: not judged
    judge_kind: str  # what judged: "exact" (the step checker), the steps judge's name@fingerprint, "" (nothing)


def verdict(value: Any) -> bool | None:
    """An annotator's word as a label; blank is None (unlabelled), anything unknown an error."""
    if value is None or isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if not word:
        return None
    if word not in WORDS:
        raise ValueError(f"{value!r} is not a verdict (use one of {', '.join(WORDS)}, or leave it blank)")
    return WORDS[word]


def file_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for each row of a labels file, ``where`` naming the file and line or row."""
    if path.suffix == ".jsonl":
        rows = list(json_lines(path))
        bad = [f"{where}: a row must be a JSON object" for where, row in rows if not isinstance(row, dict)]
        if bad:
            raise ValueError("\n".join(bad))
        return rows
    if path.suffix != ".csv":
        raise ValueError(f"{path}: the extension must be .jsonl or .csv")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, restval=SHORT)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1 (header): missing column(s) {missing}")
        rows, start = [], 2  # a quoted cell may hold newlines: a row starts after the last one ended
        for number, row in enumerate(reader, 1):
            rows.append((f"{path}: row {number} (line {start})", row))
            start = reader.line_num + 1
    return rows


def read_labels(path: Path) -> list[Label]:
    """The labels of ``path``; every bad row (missing cell, unknown word, duplicate key) is
    reported, all of them in one error, so nothing is dropped without a word."""
    labels: list[Label] = []
    errors: list[str] = []
    first: dict[str, str] = {}
    rows = file_rows(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    for where, row in rows:
        key = row.get("key")
        if not isinstance(key, str) or not key.strip():
            errors.append(f"{where}: no key")
            continue
        where = f"{where} (key {key})"
        if key in first:
            errors.append(f"{where}: duplicate key, first at {first[key]}")
            continue
        first[key] = where
        bad = [f"{where}: missing {c!r}" for c in REQUIRED if c not in row]
        if None in row:  # csv.DictReader files the cells past the header under None
            bad.append(f"{where}: {len(row[None])} cells more than the header has columns")
        if any(value is SHORT for value in row.values()):
            bad.append(f"{where}: {sum(value is SHORT for value in row.values())} cells fewer than the header has columns")
        if not bad and not str(row["role"]).strip():
            bad.append(f"{where}: no role")
        parsed: dict[str, bool | None] = {}
        for column in ("human_steps_correct", "judge_steps_correct"):
            try:
                parsed[column] = verdict(row.get(column)) if not bad else None
            except ValueError as err:
                bad.append(f"{where}: {column}: {err}")
        errors += bad
        if not bad:
            kind = str(row.get("judge") or "")
            labels.append(Label(str(row["role"]), key, parsed["human_steps_correct"], parsed["judge_steps_correct"], kind))
    if errors:
        raise ValueError(f"{path}: {len(errors)} bad rows:\n" + "\n".join(errors))
    return labels


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items: their agreement beyond the chance
    agreement their label rates alone give. None when it is undefined: no items, or a chance
    agreement of 1 (both raters gave every item one and the same label; kappa is then 0/0)."""
    if len(a) != len(b):
        raise ValueError(f"need labels of the same items, got {len(a)} and {len(b)}")
    if not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((a.count(v) / n) * (b.count(v) / n) for v in (True, False))
    return None if expected == 1 else (observed - expected) / (1 - expected)


def role_report(labels: Sequence[Label]) -> dict[str, Any]:
    """Human FPR over the labelled items; the judge's FPR and its agreement with the human over
    the items both labelled."""
    labelled = [x for x in labels if x.human is not None]
    both = [x for x in labelled if x.judge is not None]
    human, judge = [bool(x.human) for x in both], [bool(x.judge) for x in both]
    return {
        "rows": len(labels),
        "labelled": len(labelled),
        "unlabelled": len(labels) - len(labelled),
        "judges": sorted({x.judge_kind for x in both if x.judge_kind}),
        "human_fpr": Rate.of(sum(not x.human for x in labelled), len(labelled)).model_dump(),
        "judge_fpr": Rate.of(judge.count(False), len(both)).model_dump(),
        "agreement": {
            "n": len(both),
            "accuracy": sum(h == j for h, j in zip(human, judge, strict=True)) / len(both) if both else None,
            "kappa": cohen_kappa(human, judge),
            "human_wrong_judge_right": sum(not h and j for h, j in zip(human, judge, strict=True)),
            "human_right_judge_wrong": sum(h and not j for h, j in zip(human, judge, strict=True)),
        },
    }


def report(labels: Sequence[Label]) -> dict[str, dict[str, Any]]:
    roles = dict.fromkeys(x.role for x in labels)  # in the file's order: wc, se as exported
    return {role: role_report([x for x in labels if x.role == role]) for role in roles}


def attach(summary_path: Path, labels: LabelsSection) -> None:
    """Put the labels report into a run's summary (replacing an earlier import's), so the console
    table and the sweep report read it with the rest of the run."""
    summary = RunSummary.read(summary_path)
    summary.model_copy(update={"labels": labels}).write(summary_path)


def table(by_role: dict[str, dict[str, Any]]) -> str:
    def rate(r: dict[str, Any]) -> str:
        return "-" if r["value"] is None else f"{r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    lines = [f"{'role':<6}{'labelled':>9}{'blank':>6}  {'human FPR [95%]':<19}{'judge FPR [95%]':<19}{'n':>4}{'acc':>6}{'kappa':>7}"]
    for role, r in by_role.items():
        a = r["agreement"]
        lines.append(
            f"{role:<6}{r['labelled']:>9}{r['unlabelled']:>6}  {rate(r['human_fpr']):<19}{rate(r['judge_fpr']):<19}"
            f"{a['n']:>4}{num(a['accuracy']):>6}{num(a['kappa']):>7}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wcse.label", description="Human labels for the false-positive rate.")
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser("export", help="draw correct solutions of a run to label")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--per-model", type=int, default=50, help="solutions per sampler role (default 50)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", type=Path, required=True, help="labels.csv or labels.jsonl")
    ex.add_argument("--cache-dir", type=Path, help="the run's cache, if it moved since the run")
    ex.add_argument("--force", action="store_true", help="overwrite --out (and any labels in it)")
    ex.add_argument("--judged-only", action="store_true", help="draw only solutions the exact checker or the steps judge gave a verdict")
    im = commands.add_parser("import", help="score labelled solutions")
    im.add_argument("labels", type=Path)
    where = im.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="the labelled run: writes RUN/labels.json and the labels section of RUN/summary.json")
    where.add_argument("--out", type=Path, help="the JSON report alone, anywhere")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            if args.per_model < 1:
                raise ValueError(f"--per-model must be at least 1, got {args.per_model}")
            if args.out.exists() and not args.force:
                raise ValueError(f"{args.out}: exists (it may hold labels); pass --force to overwrite it")
            rows = draw(locate(args.run_dir / "summary.json", args.cache_dir), args.per_model, args.seed, args.judged_only)
            write_rows(args.out, rows)
            counts = {role: sum(r.role == role for r in rows) for role in dict.fromkeys(r.role for r in rows)}
            print(f"{args.out}: {', '.join(f'{n} {role}' for role, n in counts.items()) or 'no'} solutions to label")
        else:
            by_role = report(read_labels(args.labels))
            out = args.out or args.run / "labels.json"
            if args.run is not None:
                attach(args.run / "summary.json", LabelsSection(file=str(args.labels), roles=by_role))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"labels": str(args.labels), "roles": by_role}, indent=2) + "\n")
            print(table(by_role))
            print(f"report -> {out}" + (f"; labels section -> {args.run / 'summary.json'}" if args.run is not None else ""))
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
