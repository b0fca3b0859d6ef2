"""MedQA (USMLE, English, 4 options): the loader and lm-evaluation-harness's ``medqa_4options`` prompt.

Local: the official release's layout, ``questions/US/4_options/phrases_no_exclude_{split}.jsonl`` (one JSON object a
line: ``question``, ``options`` ``{A..D}``, ``answer_idx``, ``answer``, ``meta_info``), given as that file, the
release folder, or any folder on the way down to the file. Hub: ``GBaker/MedQA-USMLE-4-options`` (the same fields)
or ``GBaker/MedQA-USMLE-4-options-hf`` (``sent1``, ``ending0``…``ending3``, ``label``), which the harness reads.

The harness's prompt: ``"Question: " + question + "\\n" + "A. …\\nB. …\\nC. …\\nD. …\\n" + "Answer:"``, choices
``A``…``D`` after a space.
"""

from __future__ import annotations

from pathlib import Path

from medsft.core.errors import MedsftError, hub_errors
from medsft.core.paths import looks_local
from medsft.data.io import read_records
from medsft.data.load_report import LoadReport
from medsft.data.multiple_choice import LETTERS, keep_valid, letter_index, options_block

HUB_ID = "GBaker/MedQA-USMLE-4-options"
HARNESS_HUB_ID = "GBaker/MedQA-USMLE-4-options-hf"
LICENSE = "mit"
SPLITS = ("test", "dev", "train")  # the release's file names; the Hub calls dev "validation"


def _local_file(source: str, split: str) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    name = f"phrases_no_exclude_{split}.jsonl"
    for candidate in (path / "questions/US/4_options" / name, path / "US/4_options" / name, path / "4_options" / name,
                      path / name):  # fmt: skip
        if candidate.is_file():
            return candidate
    if not path.exists():
        raise MedsftError(f"MedQA data not found: {source}")
    raise MedsftError(
        f"{source}: no MedQA {split} file (expected questions/US/4_options/{name}, the official release's layout)"
    )


def _row(index: int, record: dict) -> dict:
    if "sent1" in record:  # the -hf layout
        options = [record.get(f"ending{i}") for i in range(len(LETTERS))]
        question, answer = record.get("sent1"), record.get("label")
    else:
        given = record.get("options")
        options = [given.get(letter) for letter in LETTERS] if isinstance(given, dict) else None
        if isinstance(given, dict) and set(given) - set(LETTERS):
            options = None  # a 5-option file: not this task
        question, answer = record.get("question"), letter_index(record.get("answer_idx"))
    return {"id": str(index), "question": question, "options": options, "answer": answer, "subject": None}


def load_medqa(source: str = HUB_ID, split: str = "test") -> tuple[list[dict], LoadReport]:
    """MedQA's ``split`` as multiple-choice rows (``data.multiple_choice``); unscorable rows counted and dropped."""
    if split not in SPLITS:
        raise MedsftError(f"MedQA has no '{split}' split (one of {', '.join(SPLITS)})")
    if looks_local(source):
        path = _local_file(source, split)
        records, name = read_records(path), path.name
    else:
        from datasets import load_dataset

        with hub_errors("dataset", source):
            records = load_dataset(source, split="validation" if split == "dev" else split).to_list()
        name = source
    report = LoadReport(source=name)
    rows = keep_valid([_row(i, r) for i, r in enumerate(records)], report)
    report.splits = {split: len(rows)}
    return rows, report


def harness_prompt(row: dict) -> str:
    """``medqa_4options``'s ``doc_to_text``."""
    return f"Question: {row['question']}\n{options_block(row['options'])}Answer:"
