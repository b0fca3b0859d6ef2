"""medsft.data.medqa on the real ../shared release (counts computed here with plain json) and bad rows."""

from __future__ import annotations

import json

import pytest

from medsft.core.errors import MedsftError
from medsft.data.medqa import harness_prompt, load_medqa
from tests.conftest import MEDQA_DIR

TEST_FILE = MEDQA_DIR / "questions/US/4_options/phrases_no_exclude_test.jsonl"


def test_official_test_set_is_read_whole_and_in_order():
    records = [json.loads(line) for line in TEST_FILE.read_text().splitlines() if line.strip()]
    for source in (MEDQA_DIR, MEDQA_DIR / "questions", TEST_FILE):  # the release, a folder on the way, the file
        rows, report = load_medqa(str(source))
        assert len(rows) == len(records) == report.kept and not report.dropped
    assert [r["id"] for r in rows] == [str(i) for i in range(len(records))]
    for row, record in zip(rows[:50], records):
        assert row["options"] == [record["options"][k] for k in "ABCD"]
        assert row["options"][row["answer"]] == record["answer"]  # answer_idx names the answer's text
    assert harness_prompt(rows[0]) == (
        f"Question: {records[0]['question']}\n"
        + "".join(f"{k}. {records[0]['options'][k]}\n" for k in "ABCD")
        + "Answer:"
    )


def test_bad_rows_are_counted_not_silently_dropped(tmp_path):
    good = {"question": "q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "C"}
    rows = [
        good,
        {**good, "answer_idx": "E"},
        {**good, "options": {"A": "a", "B": "b", "C": "c"}},  # option D missing
        {**good, "options": {**good["options"], "E": "e"}},  # a 5-option file is not this task
        {**good, "question": " "},
        {**good, "options": {**good["options"], "B": ""}},
    ]
    path = tmp_path / "phrases_no_exclude_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept, report = load_medqa(str(tmp_path))
    assert [r["id"] for r in kept] == ["0"] and kept[0]["answer"] == 2 and report.read == 6
    assert report.dropped == {
        "answer not among the options": 1, "not four options": 1, "empty question": 1, "missing or empty option": 2,
    }  # fmt: skip


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(MedsftError, match="MedQA data not found"):
        load_medqa(str(tmp_path / "nowhere"))
    with pytest.raises(MedsftError, match="no MedQA test file"):
        load_medqa(str(tmp_path))
    with pytest.raises(MedsftError, match="no 'val' split"):
        load_medqa(str(MEDQA_DIR), "val")
