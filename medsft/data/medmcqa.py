"""MedMCQA: the loader and lm-evaluation-harness's ``medmcqa`` prompt (scored on the validation split, as the harness
and the Open Medical-LLM Leaderboard do: the test split's answers are not public).

Local: the official release's layout, ``train.json`` / ``dev.json`` / ``test.json`` with one JSON object a line
(``id``, ``question``, ``opa``…``opd``, ``cop``, ``choice_type``, ``exp``, ``subject_name``, ``topic_name``), given
as the file or its folder; the release numbers the correct option 1…4. Hub: ``openlifescienceai/medmcqa``
(the same fields, ``cop`` 0…3), split ``validation``.

The harness's prompt: ``"Question: " + question + "\\nChoices:\\n" + "A. …\\nB. …\\nC. …\\nD. …\\n" + "Answer:"``,
choices ``A``…``D`` after a space.
"""

from __future__ import annotations

from pathlib import Path

from medsft.core.errors import MedsftError, hub_errors
from medsft.core.paths import looks_local
from medsft.data.io import read_records
from medsft.data.load_report import LoadReport
from medsft.data.multiple_choice import keep_valid, options_block

HUB_ID = "openlifescienceai/medmcqa"
LICENSE = "apache-2.0"
SPLITS = ("validation", "train")
_FILES = {"validation": "dev.json", "train": "train.json"}  # the release's names


def _local_file(source: str, split: str) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    if (path / _FILES[split]).is_file():
        return path / _FILES[split]
    if not path.exists():
        raise MedsftError(f"MedMCQA data not found: {source}")
    raise MedsftError(f"{source}: no {_FILES[split]} (the official release's {split} file)")


def _row(index: int, record: dict, first_option: int) -> dict:
    cop = record.get("cop")
    answer = cop - first_option if isinstance(cop, int) and not isinstance(cop, bool) else None
    return {
        "id": str(index),
        "question": record.get("question"),
        "options": [record.get(key) for key in ("opa", "opb", "opc", "opd")],
        "answer": answer,
        "subject": record.get("subject_name"),
    }


def load_medmcqa(source: str = HUB_ID, split: str = "validation") -> tuple[list[dict], LoadReport]:
    """MedMCQA's ``split`` as multiple-choice rows (``data.multiple_choice``); unscorable rows counted and dropped."""
    if split not in SPLITS:
        raise MedsftError(f"MedMCQA's scored splits are {', '.join(SPLITS)} (test has no public answers), not {split}")
    if looks_local(source):
        path = _local_file(source, split)
        # the release writes one object a line in .json files; a JSON list (an export) is read too
        records = read_records(path, json_lines="auto")
        name = path.name
        first_option = 1  # the release's cop is 1…4
    else:
        from datasets import load_dataset

        with hub_errors("dataset", source):
            records = load_dataset(source, split=split).to_list()
        name, first_option = source, 0
    report = LoadReport(source=name)
    rows = keep_valid([_row(i, r, first_option) for i, r in enumerate(records)], report)
    report.splits = {split: len(rows)}
    return rows, report


def harness_prompt(row: dict) -> str:
    """``medmcqa``'s ``doc_to_text``."""
    return f"Question: {row['question']}\nChoices:\n{options_block(row['options'])}Answer:"
