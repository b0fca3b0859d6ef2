"""The one rule for "is this name a Hub id or a local path?", shared by models, adapters, datasets and publishing."""

from __future__ import annotations

from pathlib import Path

# Names ending so are files, never Hub repositories (a missing local file must not be looked up on the Hub)
_FILE_SUFFIXES = (
    ".json",
    ".jsonl",
    ".csv",
    ".parquet",
    ".txt",
    ".xml",
    ".gguf",
    ".yaml",
    ".yml",
    ".safetensors",
    ".bin",
)


def is_hub_id(name: str) -> bool:
    """Whether ``name`` names a Hub repository rather than a local path: it does not exist here, does not start with
    ``.``, ``/`` or ``~``, is not a file name, and is a repo id as ``huggingface_hub`` validates it (``owner/name``,
    or a canonical name like ``gpt2``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    if name.lower().endswith(_FILE_SUFFIXES):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path (``not is_hub_id``); one that does not exist is a missing file, not
    a Hub id."""
    return not is_hub_id(name)
