"""wcse's graders on real model outputs: verbatim outputs from public sets, with their sources' labels
(tests/data/real_outputs.jsonl), and the output formats real models write (real_outputs_formats.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from wcse.verify.answers import MODES, STATUSES, check

DATA = Path(__file__).parent / "data"
VERDICTS = (True, False, *STATUSES[1:])


def _real_outputs() -> tuple[dict, list[dict]]:
    lines = (DATA / "real_outputs.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


HEADER, OUTPUTS = _real_outputs()
FORMATS = yaml.safe_load((DATA / "real_outputs_formats.yaml").read_text(encoding="utf-8"))


def _verdict(kind: str, response: str, gold: str, mode: str) -> bool | str:
    correct, _, status = check(kind, response, gold, mode)
    assert status == "ok" or correct is False
    return correct if status == "ok" else status


def test_real_outputs_are_well_formed_and_cited() -> None:
    assert len(OUTPUTS) >= 200 and len({row["id"] for row in OUTPUTS}) == len(OUTPUTS)
    for group in HEADER["groups"].values():
        assert {"repo", "commit", "path", "licence", "what", "label"} <= set(group), group
    for row in OUTPUTS:
        assert {"id", "group", "kind", "response", "gold", "label", "strict", "lenient"} <= set(row), row[
            "id"
        ]
        assert row["group"] in HEADER["groups"] and row["strict"] in VERDICTS and row["lenient"] in VERDICTS


@pytest.mark.parametrize("mode", MODES)
def test_real_outputs_verdicts(mode: str) -> None:
    wrong = [
        (row["id"], row[mode], verdict)
        for row in OUTPUTS
        if (verdict := _verdict(row["kind"], row["response"], row["gold"], mode)) != row[mode]
    ]
    assert wrong == []


def test_every_disagreement_with_a_label_is_adjudicated() -> None:
    # A verdict that differs from the source's label is either a grader bug or a label error that a
    # person has read and explained; nothing in between.
    for row in OUTPUTS:
        disagrees = any(row[mode] is not row["label"] for mode in MODES)
        assert disagrees == ("adjudication" in row), row["id"]
        assert not disagrees or row["adjudication"].startswith("label wrong:"), row["id"]


def test_format_table_is_well_formed() -> None:
    assert len(FORMATS) >= 40
    for case in FORMATS:
        assert set(case) == {"kind", "source", "response", "gold", "strict", "lenient", "note"}, case
        assert case["strict"] in VERDICTS and case["lenient"] in VERDICTS, case


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", FORMATS, ids=[f"{i}-{case['source']}" for i, case in enumerate(FORMATS)])
def test_output_formats(case: dict, mode: str) -> None:
    assert _verdict(case["kind"], case["response"], case["gold"], mode) == case[mode], case["note"]
