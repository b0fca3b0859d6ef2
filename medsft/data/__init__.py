"""The data layer: one module per dataset (loader + formatting beside it), the registry that dispatches to them,
mixtures, decontamination against the PubMedQA test set, and file reading with errors that name the file and row.

Public API: ``load_splits`` (one dataset, any options) and ``load_sft_datasets`` (training's data arguments).
"""

from __future__ import annotations

import importlib

# Imported on first use, not with the package: the mixture and registry bring transformers and datasets (seconds),
# while light readers of a run (bench/plot_training.py, the JSON reader in medsft.data.io) need neither
_PUBLIC = {
    "LoadedData": "medsft.data.mixture",
    "load_sft_datasets": "medsft.data.mixture",
    "KNOWN_HUB_IDS": "medsft.data.registry",
    "SPECS": "medsft.data.registry",
    "dataset_type_for": "medsft.data.registry",
    "hub_id_for": "medsft.data.registry",
    "load_splits": "medsft.data.registry",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'medsft.data' has no attribute {name!r}")
