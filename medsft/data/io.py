"""Reading local record files (JSON list, JSONL) with errors that name the file, line and row."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from medsft.core.errors import MedsftError


def read_text(path: str | Path) -> str:
    """A data file's text; a file that is not UTF-8 is an error naming it and the first bad byte."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MedsftError(
            f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); re-save it as UTF-8"
        ) from None


def _lone_surrogate(value) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(v) for v in value.values())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def check_unicode(records: list[dict], path: str | Path) -> list[dict]:
    """Refuse strings that are not valid Unicode (a JSON escape like ``\\ud800`` decodes to a lone surrogate, which
    every later step, Arrow first, fails on far from the file)."""
    for i, record in enumerate(records, start=1):
        for key, value in record.items():
            if _lone_surrogate(value):
                raise MedsftError(f"{path}, row {i}: field '{key}' holds a lone surrogate (not valid Unicode text)")
    return records


def read_records(path: str | Path, json_lines: bool | str | None = None) -> list[dict]:
    """Read a ``.json`` file holding a list of objects, or a ``.jsonl`` file with one object per line.

    ``json_lines``: True for one object per line whatever the suffix, ``"auto"`` for one object per line when the
    text starts with an object (MedMCQA's release names such files ``.json``), None to go by the suffix."""
    path = Path(path)
    if not path.is_file():
        raise MedsftError(f"data file not found: {path}")
    text = read_text(path)
    if json_lines == "auto":
        json_lines = text.lstrip().startswith("{")
    if json_lines or (json_lines is None and path.suffix == ".jsonl"):
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
        return check_unicode(records, path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MedsftError(f"{path}, line {e.lineno} column {e.colno}: malformed JSON ({e.msg})") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MedsftError(f"{path}: expected a JSON list of objects")
    return check_unicode(data, path)


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write text or bytes through a temporary file and rename: a crash, kill or full disk never leaves a
    half-written file (run records, evaluation reports, the test-set index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temporary file behind
        raise
    return path


def check_writable_dir(path: str | Path, flag: str) -> None:
    """Refuse, before anything is loaded, a folder that cannot be created or written (a file on its way, a read-only
    mount, /proc): the nearest existing folder gets a temporary folder, removed at once, so nothing is left behind.
    Permission bits alone cannot say it (root passes ``os.access`` everywhere)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MedsftError(f"{flag} {path} is a file, not a folder: choose another {flag}")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MedsftError(f"{flag} {path} cannot be created: {parent} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".medsft-write-check-", dir=parent))
    except OSError as e:
        raise MedsftError(
            f"{flag} {path} cannot be written ({e.strerror or e} in {parent}): choose another {flag}"
        ) from None


def read_json(path: str | Path, expect: type | None = dict, what: str = "JSON file"):
    """A JSON file's content; unreadable, malformed or (with ``expect``) of the wrong type is one error naming the
    file (and line). The one JSON reader of medsft: data files, manifests, adapter configs, reports, predictions."""
    path = Path(path)
    if not path.is_file():
        raise MedsftError(f"{what} not found: {path}")
    try:
        data = json.loads(read_text(path))
    except OSError as e:
        raise MedsftError(f"{path}: unreadable ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise MedsftError(f"{path}, line {e.lineno} column {e.colno}: malformed JSON ({e.msg})") from None
    if expect is not None and not isinstance(data, expect):
        raise MedsftError(f"{path}: expected a JSON {'object' if expect is dict else expect.__name__}")
    return data
