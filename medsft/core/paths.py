"""The one rule for "is this name a Hub id or a local path?", shared by models, adapters and datasets."""

from __future__ import annotations

from pathlib import Path


def looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path: it exists, starts with ``.``, ``/`` or ``~``, or is not of the
    Hub's ``owner/name`` form. A name that looks local but does not exist is a missing file, not a Hub id."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") != 1
