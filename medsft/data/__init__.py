"""The data layer: one module per dataset (loader + formatting beside it), the registry that dispatches to them,
mixtures, decontamination against the PubMedQA test set, and file reading with errors that name the file and row.

Public API: ``load_splits`` (one dataset, any options) and ``load_sft_datasets`` (training's data arguments).
"""

from medsft.data.mixture import LoadedData, load_sft_datasets
from medsft.data.registry import KNOWN_HUB_IDS, SPECS, dataset_type_for, hub_id_for

__all__ = ["KNOWN_HUB_IDS", "SPECS", "LoadedData", "dataset_type_for", "hub_id_for", "load_sft_datasets"]
