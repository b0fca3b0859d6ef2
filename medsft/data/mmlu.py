"""MMLU's six medical subjects (the Open Medical-LLM Leaderboard's): the loader and lm-evaluation-harness's
``mmlu_SUBJECT`` prompts.

Local: the official release's layout, ``test/SUBJECT_test.csv``, ``dev/SUBJECT_dev.csv`` and ``val/SUBJECT_val.csv``
(the ``validation`` split; CSV without a header: ``question,A,B,C,D,answer-letter``; dev holds the 5 few-shot
exemplars). Hub: ``cais/mmlu`` with the subject as
config (``question``, ``choices``, ``answer`` 0…3).

The harness's prompt: the description line ``"The following are multiple choice questions (with answers) about
SUBJECT.\\n\\n"``, then for ``--num_fewshot K`` the first K dev rows each followed by ``" " + letter + "\\n\\n"``,
then ``question.strip() + "\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer:"``; choices ``A``…``D`` after a space.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from medsft.core.errors import MedsftError, hub_errors
from medsft.core.paths import looks_local
from medsft.data.io import read_text
from medsft.data.load_report import LoadReport
from medsft.data.multiple_choice import LETTERS, keep_valid, letter_index

HUB_ID = "cais/mmlu"
LICENSE = "mit"
SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
SPLITS = ("test", "dev", "validation")
LOCAL_FOLDERS = {"validation": "val"}  # the release's folder and file suffix where they differ from the Hub's name


def _read_csv(path: Path, subject: str) -> list[dict]:
    rows = []
    for index, fields in enumerate(csv.reader(io.StringIO(read_text(path)))):
        if len(fields) != 6:  # counted by check_row: not four options
            question = fields[0] if fields else None
            rows.append({"id": f"{subject}/{index}", "question": question, "options": None, "answer": None})
            continue
        rows.append(
            {
                "id": f"{subject}/{index}",
                "question": fields[0],
                "options": fields[1:5],
                "answer": letter_index(fields[5]),
            }
        )
    return rows


def _read(source: str, subject: str, split: str) -> tuple[list[dict], str]:
    if looks_local(source):
        root = Path(source)
        folder = LOCAL_FOLDERS.get(split, split)
        path = root / folder / f"{subject}_{folder}.csv"
        if not path.is_file():
            if not root.is_dir():
                raise MedsftError(f"MMLU data not found: {source}")
            raise MedsftError(f"{source}: no {folder}/{subject}_{folder}.csv (the official release's layout)")
        return _read_csv(path, subject), path.name
    from datasets import load_dataset

    with hub_errors("dataset", f"{source} ({subject})"):
        records = load_dataset(source, subject, split=split).to_list()
    rows = [
        {"id": f"{subject}/{i}", "question": r.get("question"), "options": r.get("choices"), "answer": r.get("answer")}
        for i, r in enumerate(records)
    ]
    return rows, f"{source}/{subject}"


def load_mmlu(
    source: str = HUB_ID, subjects: tuple[str, ...] = SUBJECTS, split: str = "test"
) -> tuple[list[dict], list[LoadReport]]:
    """Each subject's ``split`` as multiple-choice rows, subject by subject; one ``LoadReport`` per subject."""
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        raise MedsftError(f"unknown MMLU subject(s) {', '.join(unknown)}; the medical ones are {', '.join(SUBJECTS)}")
    if split not in SPLITS:
        raise MedsftError(f"MMLU has no '{split}' split (one of {', '.join(SPLITS)})")
    rows, reports = [], []
    for subject in subjects:
        raw, name = _read(source, subject, split)
        for row in raw:
            row["subject"] = subject
        report = LoadReport(source=name)
        kept = keep_valid(raw, report)
        report.splits = {split: len(kept)}
        rows += kept
        reports.append(report)
    return rows, reports


def description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def question_text(row: dict) -> str:
    """``mmlu``'s ``doc_to_text``."""
    a, b, c, d = row["options"]
    return f"{row['question'].strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def harness_prompt(row: dict, fewshot: list[dict] = ()) -> str:
    """The whole context the harness scores the choices after: description, exemplars, question."""
    shots = "".join(f"{question_text(ex)} {LETTERS[ex['answer']]}\n\n" for ex in fewshot)
    return description(row["subject"]) + shots + question_text(row)
