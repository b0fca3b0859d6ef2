"""medsft.data.medmcqa on a small file the test writes in the official release's layout (MedMCQA is not offline)."""

from __future__ import annotations

import json

import pytest

from medsft.core.errors import MedsftError
from medsft.data.medmcqa import harness_prompt, load_medmcqa


def write_release(folder, records: list[dict]):
    """``dev.json`` as the release writes it: one JSON object a line, ``cop`` numbering the options 1…4."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def record(i: int, cop: int | None = 1, **changes) -> dict:
    return {"id": f"q{i}", "question": f"Question {i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop,
            "choice_type": "single", "exp": "", "subject_name": "Anatomy", "topic_name": None, **changes}  # fmt: skip


def test_release_layout_and_one_based_answers(tmp_path):
    folder = write_release(tmp_path / "medmcqa", [record(0, 1), record(1, 4), record(2, 5), record(3, 2, opc="")])
    rows, report = load_medmcqa(str(folder))
    assert [(r["id"], r["answer"]) for r in rows] == [("0", 0), ("1", 3)]  # cop 1 is A, 4 is D
    assert report.dropped == {"answer not among the options": 1, "missing or empty option": 1}
    assert harness_prompt(rows[0]) == "Question: Question 0?\nChoices:\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    assert load_medmcqa(str(folder / "dev.json"))[0] == rows  # the file itself


def test_errors(tmp_path):
    with pytest.raises(MedsftError, match="test has no public answers"):
        load_medmcqa(str(tmp_path), "test")
    with pytest.raises(MedsftError, match="no dev.json"):
        load_medmcqa(str(tmp_path))
