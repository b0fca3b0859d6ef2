"""Reading local record files (JSON list, JSONL) with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

from medsft.errors import MedsftError


def read_records(path: str | Path) -> list[dict]:
    """Read a ``.json`` file holding a list of objects, or a ``.jsonl`` file with one object per line."""
    path = Path(path)
    if not path.is_file():
        raise MedsftError(f"data file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise MedsftError(f"{path}, line {lineno}: malformed JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise MedsftError(f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MedsftError(f"{path}, line {e.lineno} column {e.colno}: malformed JSON ({e.msg})") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MedsftError(f"{path}: expected a JSON list of objects")
    return data
