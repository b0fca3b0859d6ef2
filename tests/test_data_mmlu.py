"""medsft.data.mmlu on the real ../shared release: the six medical subjects (counts computed here with the csv
module), the harness's description line and few-shot exemplars, and bad rows."""

from __future__ import annotations

import csv

import pytest

from medsft.core.errors import MedsftError
from medsft.data import mmlu
from tests.conftest import MMLU_DIR


def test_six_subjects_read_whole_with_official_row_ids():
    rows, reports = mmlu.load_mmlu(str(MMLU_DIR))
    for subject, report in zip(mmlu.SUBJECTS, reports):
        with open(MMLU_DIR / "test" / f"{subject}_test.csv", newline="") as f:
            expected = list(csv.reader(f))
        mine = [r for r in rows if r["subject"] == subject]
        assert len(mine) == len(expected) == report.kept and not report.dropped
        assert [r["id"] for r in mine] == [f"{subject}/{i}" for i in range(len(expected))]
        assert all("ABCD"[r["answer"]] == e[5] and r["options"] == e[1:5] for r, e in zip(mine, expected))
    assert len(rows) == 1089  # the leaderboard's six subjects, as ../shared/README.md counts them


def test_harness_prompt_with_description_and_first_dev_rows():
    (row, *_), _ = mmlu.load_mmlu(str(MMLU_DIR), ("clinical_knowledge",))
    dev, _ = mmlu.load_mmlu(str(MMLU_DIR), ("clinical_knowledge",), "dev")
    prompt = mmlu.harness_prompt(row, dev[:2])
    assert prompt.startswith(
        "The following are multiple choice questions (with answers) about clinical knowledge.\n\n"
    )
    first = f"{dev[0]['question'].strip()}\nA. {dev[0]['options'][0]}\n"
    assert (
        first in prompt
        and prompt.count("\nAnswer: ") == 2
        and prompt.endswith("\nD. " + row["options"][3] + "\nAnswer:")
    )


def test_bad_rows_and_subjects(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test/anatomy_test.csv").write_text('q1,a,b,c,d,B\nq2,a,b,c,d,E\n"q3",a,b,c\nq4,a,,c,d,A\n')
    rows, (report,) = mmlu.load_mmlu(str(tmp_path), ("anatomy",))
    assert [r["id"] for r in rows] == ["anatomy/0"] and rows[0]["answer"] == 1
    assert report.dropped == {"answer not among the options": 1, "not four options": 1, "missing or empty option": 1}
    with pytest.raises(MedsftError, match="unknown MMLU subject"):
        mmlu.load_mmlu(str(tmp_path), ("astronomy",))
    with pytest.raises(MedsftError, match="no test/college_biology_test.csv"):
        mmlu.load_mmlu(str(tmp_path), ("college_biology",))


def test_validation_split_is_read_from_the_official_releases_val_folder(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val/anatomy_val.csv").write_text("q1,a,b,c,d,C\nq2,a,b,c,d,A\n")
    rows, (report,) = mmlu.load_mmlu(str(tmp_path), ("anatomy",), "validation")
    assert [(r["id"], r["answer"]) for r in rows] == [("anatomy/0", 2), ("anatomy/1", 0)]
    assert report.splits == {"validation": 2}
    with pytest.raises(MedsftError, match=r"no val/college_medicine_val\.csv"):
        mmlu.load_mmlu(str(tmp_path), ("college_medicine",), "validation")
    with pytest.raises(MedsftError, match="MMLU has no 'train' split"):
        mmlu.load_mmlu(str(tmp_path), ("anatomy",), "train")
