"""``--dataset_type hf``: a dataset already in a TRL format (``text``, ``messages``, ``prompt``/``completion``),
read with ``datasets`` (or medsft's JSON reader) and checked row by row."""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset, DatasetDict

from medsft.core.errors import MedsftError
from medsft.data.io import read_records
from medsft.data.load_report import LoadReport

logger = logging.getLogger(__name__)


_TRL_COLUMNS = {"text": ("text",), "messages": ("messages",), "prompt": ("prompt", "completion")}


def check_trl_rows(rows, where: str):
    """``--dataset_type hf`` rows must be in a TRL format (``text``, ``messages`` or ``prompt``/``completion``) with
    no missing value; the error names the row and field."""
    columns = list(rows.column_names) if isinstance(rows, Dataset) else list(rows[0]) if rows else []
    kind = next((k for k in _TRL_COLUMNS if k in columns), None)
    if kind is None:
        raise MedsftError(
            f"{where}: --dataset_type hf needs a 'text', 'messages' or 'prompt'/'completion' column; it has "
            f"{', '.join(columns) or 'none'}"
        )
    fields = [c for c in _TRL_COLUMNS[kind] if kind != "prompt" or c in columns]
    for i, row in enumerate(rows, start=1):
        for column in fields:
            value = row.get(column)
            if value is None or (isinstance(value, str) and not value.strip() and column != "prompt"):
                raise MedsftError(f"{where}, row {i}: '{column}' is {'missing' if value is None else 'empty'}")
            if column in ("text", "completion") and not isinstance(value, (str, list)):
                raise MedsftError(f"{where}, row {i}: '{column}' must be text, got {type(value).__name__}")
    return rows


def load_hf(name: str, config: str | None, split: str, test_split: str) -> tuple[DatasetDict, LoadReport]:
    """A dataset already in a TRL format: loaded with ``datasets.load_dataset`` and passed through."""
    from datasets import load_dataset

    from medsft.core.errors import hub_errors

    builders = {".csv": "csv", ".parquet": "parquet"}
    with hub_errors("dataset", name):
        if Path(name).suffix in (".json", ".jsonl"):  # medsft's reader: errors name the file, line and row
            loaded = DatasetDict(train=Dataset.from_list(check_trl_rows(read_records(name), name)))
            split = "train"
        elif Path(name).suffix in builders:  # a local file: datasets needs the builder named
            if not Path(name).is_file():
                raise MedsftError(f"data file not found: {name}")
            loaded = load_dataset(builders[Path(name).suffix], data_files={"train": name})
            split = "train"
        else:
            loaded = load_dataset(name, name=config)
    if split not in loaded:
        raise MedsftError(f"{name} has no split '{split}' (it has {', '.join(loaded)})")
    result = DatasetDict(train=loaded[split])
    if test_split in loaded:
        result["validation"] = loaded[test_split]
    for split_name, rows in result.items():
        check_trl_rows(rows, f"{name} ({split_name})")
    report = LoadReport(
        source=Path(name).name if Path(name).exists() else name, read=sum(len(s) for s in result.values())
    )
    report.splits = {n: len(s) for n, s in result.items()}
    return result, report
