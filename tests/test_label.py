"""``python -m wcse.label``: the human FPR check's export and import, on a hand-built run."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wcse.artifacts import digest
from wcse.label import cohen_kappa, main, read_labels, report
from wcse.records import Problem, Sample, StepJudgement, Verdict, write_jsonl
from wcse.sampling.store import SampleStore
from wcse.summary import (
    ArtifactEvent,
    Budget,
    DataMetrics,
    DatasetSection,
    Rate,
    RunInfo,
    RunSummary,
    SamplingCost,
    SamplingSection,
    SplitInfo,
)

DATA = Path(__file__).parent / "data"
DATASET_KEY = "0123456789abcdef"
STOP = "\n\nQuestion:"
PER_PROBLEM = {"wc": 4, "se": 2}


def correct(role: str, i: int, j: int) -> bool:
    return (i + j) % 3 != 0 if role == "wc" else j == 0


def steps(role: str, i: int, j: int) -> bool | None:
    """The exact checker's verdict; None (nothing checked it) for two se problems' samples."""
    return None if role == "se" and i in (1, 2) else (i * j) % 4 != 1


STEPS_JUDGE = "smollm2@0123abcd"
JUDGED = {"se|p1|0": False}  # the steps judge's verdicts where the exact checker gave none (se|p2|0: not judged)


def make_run(root: Path, judged: bool = False) -> Path:
    """A run directory whose summary points at a hand-built cache: a dataset artifact (beside a
    transfer set's), each role's sample store and verify artifact; ``judged``: and the se
    role's steps-judge table, as the metrics stage writes it."""
    cache = root / "cache"
    problems = [Problem(id=f"p{i}", question=f"Tom has {i} apples . He buys 1 more . How many ?", answer=str(i + 1)) for i in range(6)]
    train = cache / "dataset" / digest({"key": DATASET_KEY})
    write_jsonl(train / "train.jsonl", problems)
    write_jsonl(cache / "dataset" / "transfer" / "train.jsonl", problems[:1])
    events = [
        ArtifactEvent(stage="dataset", label="toy_arith", path=str(train), cached=False),
        ArtifactEvent(stage="dataset", label="transfer", path=str(cache / "dataset" / "transfer"), cached=False),
    ]
    models = {}
    for role, n in PER_PROBLEM.items():
        samples = [
            Sample(
                key=f"{role}|p{i}|{j}", model=f"toy-{role}", dataset=f"toy_arith@{DATASET_KEY}", problem_id=f"p{i}",
                index=j, seed=j, params={"stop": [STOP]}, prompt="Question: ...",
                text=f"{i} + 1 = {i + 1} . #### {i + 1}{STOP} next", prompt_tokens=3, generated_tokens=9,
                finish_reason="stop", backend="toy", seconds=0.0,
            )
            for i in range(6)
            for j in range(n)
        ]
        SampleStore(cache / "samples" / role).append(samples)
        verdicts = [
            Verdict(key=s.key, problem_id=s.problem_id, index=s.index, extracted=str(int(s.problem_id[1:]) + 1),
                    correct=correct(role, int(s.problem_id[1:]), s.index),
                    steps_correct=steps(role, int(s.problem_id[1:]), s.index), status="ok")
            for s in samples
        ]
        write_jsonl(cache / "verify" / f"key-{role}" / "verdicts.jsonl", verdicts)
        events.append(ArtifactEvent(stage="verify", label=role, path=str(cache / "verify" / f"key-{role}"), cached=True))
        models[role] = SamplingCost(
            samples_per_problem=n, store=str(cache / "samples" / role), samples=len(samples), prompt_tokens=0,
            generated_tokens=0, flops=None, dollars=None, truncation_rate=0.0,
        )
    data = {}
    if judged:
        table = root / "run" / "metrics" / "se.steps_judged.jsonl"
        write_jsonl(table, [StepJudgement(key, verdict, STEPS_JUDGE) for key, verdict in JUDGED.items()])
        data["se"] = DataMetrics(
            k=2, n_problems=6, n_samples=12, n_correct=6, accuracy=0.5, coverage=1.0, diversity=1.0, diversity_by_rule={},
            fpr=Rate.of(1, 1), coverage_curve={}, per_level={}, per_subject={}, per_problem_table=str(table.with_name("se.problems.jsonl")),
            steps_judged_table=str(table),
        )
    summary = RunSummary(
        run=RunInfo(model_pair="toy", dataset="toy_arith", setup="kd", budget="low", seed=0, run_dir=str(root / "run"),
                    cache_dir=str(cache), stages=["dataset", "sample", "verify"]),
        dataset=DatasetSection(name="toy_arith", id=f"toy_arith@{DATASET_KEY}", splits={"train": SplitInfo(n=6, source="hand-built")}),
        sampling=SamplingSection(
            budget=Budget(se_samples=2, wc_samples=4, mode="flops", nominal_ratio=2.0, realised_ratio=2.0),
            models=models, realised_flops_ratio_wc_over_se=None, realised_dollar_ratio_wc_over_se=None,
        ),
        data=data or None,
        artifacts=events,
    )
    (root / "run").mkdir(exist_ok=True)
    summary.write(root / "run" / "summary.json")
    return root / "run"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_export_draws_a_seeded_sample_of_correct_solutions_per_role(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert main(["export", str(run), "--per-model", "5", "--out", str(tmp_path / "a.csv")]) == 0
    rows = read_csv(tmp_path / "a.csv")
    by_role = {role: [r for r in rows if r["role"] == role] for role in PER_PROBLEM}
    pool = sorted(f"wc|p{i}|{j}" for i in range(6) for j in range(4) if correct("wc", i, j))
    assert [r["key"] for r in by_role["wc"]] == random.Random("label:0:wc").sample(pool, 5)  # the documented draw
    assert len(by_role["se"]) == 5 and len({r["key"] for r in by_role["se"]}) == 5  # 6 correct se samples
    assert all(r["key"].endswith("|0") for r in by_role["se"])  # se: only sample 0 is correct
    first = by_role["wc"][0]
    _, problem, index = first["key"].split("|")
    i = int(problem.removeprefix("p"))
    assert first["problem"] == f"Tom has {i} apples . He buys 1 more . How many ?"
    assert (first["reference_answer"], first["extracted_answer"]) == (str(i + 1), str(i + 1))
    assert first["solution"] == f"{i} + 1 = {i + 1} . #### {i + 1}"  # the response: cut at the stop string
    assert first["human_steps_correct"] == ""
    for r in rows:
        _, problem, index = r["key"].split("|")
        i, j = int(problem.removeprefix("p")), int(index)
        expected = steps(r["role"], i, j)
        assert (r["judge"], r["judge_steps_correct"]) == (("", "") if expected is None else ("exact", str(expected).lower()))

    assert main(["export", str(run), "--per-model", "5", "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    main(["export", str(run), "--per-model", "5", "--seed", "1", "--out", str(tmp_path / "c.csv")])
    assert [r["key"] for r in read_csv(tmp_path / "c.csv")] != [r["key"] for r in rows]
    main(["export", str(run), "--per-model", "50", "--out", str(tmp_path / "all.jsonl")])
    everything = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert sum(r["role"] == "wc" for r in everything) == len(pool)  # fewer correct than asked: all of them
    assert all(r["human_steps_correct"] is None for r in everything)


def test_the_steps_judges_verdicts_fill_the_judge_column_where_no_exact_checker_did(tmp_path: Path) -> None:
    """Real data's judge column: the metrics stage's steps-judge table, by sample key; with
    --judged-only, only solutions something gave a verdict are drawn."""
    run = make_run(tmp_path, judged=True)
    assert main(["export", str(run), "--per-model", "50", "--out", str(tmp_path / "all.csv")]) == 0
    se = {r["key"]: r for r in read_csv(tmp_path / "all.csv") if r["role"] == "se"}
    assert (se["se|p1|0"]["judge"], se["se|p1|0"]["judge_steps_correct"]) == (STEPS_JUDGE, "false")
    assert (se["se|p2|0"]["judge"], se["se|p2|0"]["judge_steps_correct"]) == ("", "")  # neither checked it
    assert se["se|p0|0"]["judge"] == "exact"
    assert main(["export", str(run), "--per-model", "50", "--judged-only", "--out", str(tmp_path / "judged.csv")]) == 0
    rows = read_csv(tmp_path / "judged.csv")
    assert {r["key"] for r in rows if r["role"] == "se"} == set(se) - {"se|p2|0"}
    assert all(r["judge_steps_correct"] in ("true", "false") for r in rows)
    for r in rows:  # the annotator agrees with every verdict
        r["human_steps_correct"] = r["judge_steps_correct"]
    with open(tmp_path / "labelled.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["import", str(tmp_path / "labelled.csv"), "--out", str(tmp_path / "report.json")]) == 0
    by_role = json.loads((tmp_path / "report.json").read_text())["roles"]
    assert by_role["se"]["judges"] == ["exact", STEPS_JUDGE] and by_role["se"]["agreement"]["accuracy"] == 1.0
    assert by_role["se"]["agreement"]["n"] == by_role["se"]["labelled"] == len(se) - 1


def test_the_exported_file_round_trips_through_labelling_and_import(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    main(["export", str(run), "--per-model", "5", "--out", str(tmp_path / "labels.jsonl")])
    assert report(read_labels(tmp_path / "labels.jsonl"))["wc"]["unlabelled"] == 5  # nothing guessed
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    for r in rows:  # an annotator who agrees with the exact checker, and skips the unchecked one
        r["human_steps_correct"] = "" if r["judge_steps_correct"] is None else ("yes" if r["judge_steps_correct"] else "no")
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["import", str(tmp_path / "labels.jsonl"), "--run", str(run)]) == 0
    roles = json.loads((run / "labels.json").read_text())["roles"]
    attached = RunSummary.read(run / "summary.json").labels  # the run's summary carries the same report
    assert attached.file == str(tmp_path / "labels.jsonl") and attached.model_dump(mode="json", by_alias=True)["roles"] == roles
    assert list(roles) == ["wc", "se"]
    for role, r in roles.items():
        judged = [x for x in rows if x["role"] == role and x["judge_steps_correct"] is not None]
        wrong = sum(not x["judge_steps_correct"] for x in judged)
        assert r["labelled"] == r["agreement"]["n"] == len(judged)
        assert r["human_fpr"]["value"] == r["judge_fpr"]["value"] == wrong / len(judged)
        assert r["agreement"]["accuracy"] == 1.0 and r["judges"] == ["exact"]
    assert roles["se"]["unlabelled"] == 1  # the sample nothing checked


def test_the_hand_labelled_file_gives_the_hand_computed_fpr_and_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(DATA / "labels_small.csv"), "--out", str(tmp_path / "labels.json")]) == 0
    roles = json.loads((tmp_path / "labels.json").read_text())["roles"]
    wc, se = roles["wc"], roles["se"]
    # wc: 5 labelled (p6 blank); human wrong on p2, p3; the judge wrong on p2, p5; they agree on p1, p2, p4
    assert (wc["rows"], wc["labelled"], wc["unlabelled"]) == (6, 5, 1)
    assert wc["human_fpr"]["value"] == wc["judge_fpr"]["value"] == pytest.approx(2 / 5)
    # p_o = 3/5; both say right 3/5 of the time: p_e = 0.6^2 + 0.4^2 = 0.52; kappa = 0.08 / 0.48
    assert wc["agreement"] == {
        "n": 5, "accuracy": pytest.approx(0.6), "kappa": pytest.approx(1 / 6),
        "human_wrong_judge_right": 1, "human_right_judge_wrong": 1,
    }
    # se: all 4 labelled, p8 wrong for both: FPR 1/4, full agreement, kappa 1
    assert se["human_fpr"]["value"] == se["judge_fpr"]["value"] == 0.25
    assert (se["agreement"]["accuracy"], se["agreement"]["kappa"]) == (1.0, pytest.approx(1.0))
    assert wc["judges"] == ["steps"]
    out = capsys.readouterr().out
    assert "0.40 [0.12, 0.77]" in out and "0.17" in out


def test_the_sweep_report_shows_each_labelled_runs_fpr_and_agreement(tmp_path: Path) -> None:
    from tests.test_report_sweep import summary, write_job
    from wcse.report.__main__ import build_report
    from wcse.summary import LabelsSection

    labels = LabelsSection(file="labels_small.csv", roles=report(read_labels(DATA / "labels_small.csv")))
    run = summary("self_improve", "low", str(tmp_path / "0")).model_copy(update={"labels": labels})
    write_job(tmp_path, "0-setup=self_improve", ["setup=self_improve"], run)
    write_job(tmp_path, "1-setup=self_improve,seed=1", ["setup=self_improve", "seed=1"], summary("self_improve", "low", str(tmp_path / "1"), seed=1))
    md = build_report(tmp_path).read_text()
    section = md[md.index("## Human-labelled false-positive rate"):]
    assert "| 0-setup=self_improve | WC | 5 | 40.0% [11.8, 76.9] | steps | 40.0% [11.8, 76.9] | 5 | 0.60 | 0.17 |" in section
    assert "1-setup=self_improve" not in section.split("\n## ")[0]  # an unlabelled run has no row


def test_fpr_intervals_are_wilson_95() -> None:
    labels = read_labels(DATA / "labels_small.csv")
    fpr = report(labels)["wc"]["human_fpr"]  # 2 of 5: Wilson's 95% interval, by the textbook formula
    assert (fpr["low"], fpr["high"], fpr["n"]) == (pytest.approx(0.1176, abs=1e-4), pytest.approx(0.7693, abs=1e-4), 5)


def test_kappa_is_chance_corrected_and_undefined_when_chance_agreement_is_one() -> None:
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == pytest.approx(0.0)
    assert cohen_kappa([True] * 4, [True] * 4) is None  # p_e = 1: 0/0
    assert cohen_kappa([], []) is None


def test_every_bad_row_is_named_with_its_file_row_and_key(tmp_path: Path) -> None:
    header = "role,key,human_steps_correct,judge_steps_correct\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + 'wc,k1,true,true\nwc,k2,maybe,true\nwc,k1,false,false\nse,"k\n3",yes,perhaps\nse,k4\n,,true,\n')
    with pytest.raises(ValueError) as err:
        read_labels(bad)
    message = str(err.value)
    assert f"{bad}: 5 bad rows" in message
    assert f"{bad}: row 2 (line 3) (key k2): human_steps_correct: 'maybe' is not a verdict" in message
    assert f"{bad}: row 3 (line 4) (key k1): duplicate key, first at {bad}: row 1 (line 2) (key k1)" in message
    assert f"{bad}: row 4 (line 5) (key k\n3): judge_steps_correct: 'perhaps'" in message  # a cell over two lines
    assert f"{bad}: row 5 (line 7) (key k4): 2 cells fewer than the header" in message
    assert f"{bad}: row 6 (line 8): no key" in message

    no_key = tmp_path / "no_key.csv"
    no_key.write_text("role,sample,human_steps_correct\nwc,k1,true\n")
    with pytest.raises(ValueError, match=r"no_key.csv: line 1 \(header\): missing column\(s\) \['key'\]"):
        read_labels(no_key)
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"role": "wc", "key": "a", "human_steps_correct": true}\n\n{"role": "wc", "key": "b"}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:3 \(key b\): missing 'human_steps_correct'"):
        read_labels(jsonl)


def test_export_finds_a_moved_cache_with_cache_dir_and_never_overwrites_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path)
    shutil.move(tmp_path / "cache", tmp_path / "moved")
    assert main(["export", str(run), "--out", str(tmp_path / "l.csv")]) == 2
    assert "not found" in capsys.readouterr().err and not (tmp_path / "l.csv").exists()
    assert main(["export", str(run), "--cache-dir", str(tmp_path / "moved"), "--out", str(tmp_path / "l.csv")]) == 0
    assert main(["export", str(run), "--cache-dir", str(tmp_path / "moved"), "--out", str(tmp_path / "l.csv")]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_python_m_wcse_label_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wcse.label", "import", str(DATA / "labels_small.csv"), "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:3] == ["role", "labelled", "blank"]
    assert (tmp_path / "r.json").is_file()
