"""medalpaca's Medical Meadow WikiDoc Patient Information: loader and formatting.

Rows are Alpaca style ``{instruction, input, output}``; ``input`` holds the patient question, ``output`` the answer,
``instruction`` is the same sentence on every row ("Answer this question truthfully").

Hub: ``medalpaca/medical_meadow_wikidoc_patient_information`` (a single ``train`` split). Offline: the same JSON file
(``medical_meadow_wikidoc_patient_information.json``) or a directory holding it. Licence: CC BY-SA (WikiDoc).
"""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict

from medsft.core.errors import MedsftError, hub_errors
from medsft.data.io import read_records
from medsft.data.load_report import LoadReport
from medsft.data.splits import random_split

HUB_ID = "medalpaca/medical_meadow_wikidoc_patient_information"
LICENSE = "cc-by-sa-4.0"
FIELDS = ("instruction", "input", "output")
# The validation split depends on this fixed seed only, not on the training seed, so every run (and the evaluation
# harness) holds out the same rows.
SPLIT_SEED = 42
VALIDATION_SIZE = 0.05

# Alpaca's prompt (the format the data was published in). The completion is the answer; TRL appends EOS to it.
ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def _read(source: str) -> list[dict]:
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.json")) + sorted(path.glob("*.jsonl"))
        if not files:
            raise MedsftError(f"no .json/.jsonl file in WikiDoc directory {source}")
        return [r for f in files for r in read_records(f)]
    if path.suffix in (".json", ".jsonl") or path.exists():
        return read_records(path)
    from datasets import load_dataset

    with hub_errors("dataset", source):
        return load_dataset(source, split="train").to_list()


def load_wikidoc(source: str = HUB_ID, validation_size: float = VALIDATION_SIZE) -> tuple[DatasetDict, LoadReport]:
    """Load WikiDoc from the Hub id or a local file/directory, clean it and split it.

    Rows with an empty question or answer, and exact (question, answer) duplicates, are dropped and counted.
    A row missing one of the fields is an error naming the row.

    Returns:
        ``DatasetDict`` with ``train`` (and ``validation`` when ``validation_size > 0``) of raw rows, and the report.
    """
    rows = _read(source)
    report = LoadReport(source=Path(source).name if Path(source).exists() else source, read=len(rows))
    kept, seen = [], set()
    for i, row in enumerate(rows, start=1):
        missing = [f for f in FIELDS if row.get(f) is None]
        if missing:
            raise MedsftError(f"{source}, row {i}: no field(s) {', '.join(missing)} (expected {', '.join(FIELDS)})")
        not_text = [f for f in FIELDS if not isinstance(row[f], str)]
        if not_text:
            raise MedsftError(f"{source}, row {i}: field(s) {', '.join(not_text)} must be text")
        if not row["input"].strip():
            report.dropped["empty question"] += 1
        elif not row["output"].strip():
            report.dropped["empty answer"] += 1
        elif (row["input"], row["output"]) in seen:
            report.dropped["exact duplicate"] += 1
        else:
            seen.add((row["input"], row["output"]))
            kept.append({f: row[f] for f in FIELDS})
    if not kept:
        raise MedsftError(f"{source}: no usable rows ({report.summary()})")
    return random_split(kept, validation_size, SPLIT_SEED, report), report


def to_chat(row: dict) -> dict:
    """Conversational prompt/completion: rendered with the model's chat template; loss on the answer only."""
    return {
        "prompt": [{"role": "system", "content": row["instruction"]}, {"role": "user", "content": row["input"]}],
        "completion": [{"role": "assistant", "content": row["output"]}],
    }


def to_instruction(row: dict) -> dict:
    """Plain-text Alpaca prompt/completion; loss on the answer only."""
    return {"prompt": ALPACA_PROMPT.format(**row), "completion": row["output"]}


FORMATTERS = {"chat": to_chat, "instruction": to_instruction}
