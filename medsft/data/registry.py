"""The datasets medsft knows: each one's loader, formats, licence and decontamination policy, and the rules that
recognise a dataset from its Hub id or local layout."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets import DatasetDict

from medsft.core.errors import MedsftError
from medsft.core.paths import looks_local
from medsft.data import clinical_notes, medquad, pubmed_abstracts, pubmedqa, wikidoc
from medsft.data.load_report import LoadReport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """How medsft reads one dataset: its loader, formats, licence and default decontamination policy."""

    load: Callable  # (source, script_args) -> (DatasetDict of raw rows, LoadReport)
    formatters: dict[str, Callable]
    license: str
    hub_ids: tuple[str, ...] = ()
    decontamination: str = "warn"
    format_options: Callable = lambda args: {}  # noqa: E731 - per-dataset keyword options for the formatters
    special_tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)  # format -> tokens to add


def _validation_size(args, default: float) -> float:
    return default if args.validation_size is None else args.validation_size


def _pubmedqa_reference(source: str, args) -> str:
    """Where the PubMedQA test set is read from: the flag, else the data itself when it is PubMedQA, else the Hub."""
    if args.pubmedqa_reference:
        return args.pubmedqa_reference
    if (Path(source) / pubmedqa.DATA_FILE).is_file() or Path(source).name == pubmedqa.DATA_FILE:
        return source
    return pubmedqa.HUB_ID


def _load_pubmedqa(source: str, args) -> tuple[DatasetDict, LoadReport]:
    splits, report = pubmedqa.load_pubmedqa(
        source, _validation_size(args, pubmedqa.VALIDATION_SIZE), args.pubmedqa_test_file
    )
    del splits["test"]  # the official test set is for evaluation only
    return splits, report


def _load_abstracts(source: str, args) -> tuple[DatasetDict, LoadReport]:
    test_pmids = set(pubmedqa.official_test_labels(_pubmedqa_reference(source, args), args.pubmedqa_test_file))
    return pubmed_abstracts.load_pubmed_abstracts(
        source, test_pmids, _validation_size(args, pubmed_abstracts.VALIDATION_SIZE)
    )


SPECS: dict[str, DatasetSpec] = {
    "wikidoc": DatasetSpec(
        load=lambda s, a: wikidoc.load_wikidoc(s, _validation_size(a, wikidoc.VALIDATION_SIZE)),
        formatters=wikidoc.FORMATTERS,
        license=wikidoc.LICENSE,
        hub_ids=(wikidoc.HUB_ID,),
    ),
    "pubmedqa": DatasetSpec(
        load=_load_pubmedqa,
        formatters=pubmedqa.FORMATTERS,
        license=pubmedqa.LICENSE,
        hub_ids=(pubmedqa.HUB_ID,),
        decontamination="error",
        format_options=lambda a: {"long_answer": a.pubmedqa_long_answer},
    ),
    "medquad": DatasetSpec(
        load=lambda s, a: medquad.load_medquad(s, _validation_size(a, medquad.VALIDATION_SIZE), a.medquad_top_k_focus),
        formatters=medquad.FORMATTERS,
        license=medquad.LICENSE,
        hub_ids=(medquad.HUB_ID,),
        special_tokens={"special_tokens": medquad.SPECIAL_TOKENS},
    ),
    "pubmed_abstracts": DatasetSpec(
        load=_load_abstracts,
        formatters=pubmed_abstracts.FORMATTERS,
        license=pubmed_abstracts.LICENSE,
        decontamination="error",
    ),
    "clinical_notes": DatasetSpec(
        load=lambda s, a: clinical_notes.load_clinical_notes(
            a.num_notes, a.notes_seed, _validation_size(a, clinical_notes.VALIDATION_SIZE)
        ),
        formatters=clinical_notes.FORMATTERS,
        license=clinical_notes.LICENSE,
        hub_ids=(clinical_notes.NAME,),
    ),
}


# Hub ids (and names) recognised by dataset_type=auto
KNOWN_HUB_IDS = {hub_id: name for name, spec in SPECS.items() for hub_id in spec.hub_ids}


def dataset_type_for(dataset_name: str, dataset_type: str) -> str:
    """The loader for ``dataset_name``: as given, or recognised from a known Hub id or an official local layout."""
    if dataset_type != "auto":
        return dataset_type
    if dataset_name in KNOWN_HUB_IDS:
        return KNOWN_HUB_IDS[dataset_name]
    path = Path(dataset_name)
    if not path.exists() and (looks_local(dataset_name) or path.suffix != ""):
        raise MedsftError(f"dataset path {dataset_name} does not exist (nor is it a Hub id owner/name)")
    if path.name == pubmedqa.DATA_FILE or (path / pubmedqa.DATA_FILE).is_file():
        return "pubmedqa"
    if path.is_dir() and next(path.rglob("*.xml"), None) is not None:
        return "medquad"
    if path.name.startswith("medical_meadow_wikidoc") or next(path.glob("medical_meadow_wikidoc*"), None):
        return "wikidoc"
    raise MedsftError(
        f"cannot tell which dataset '{dataset_name}' is: set --dataset_type ({', '.join(SPECS)}, or hf for a "
        "dataset already in a TRL format)"
    )


def hub_id_for(dataset_name: str, dataset_type: str = "auto") -> str | None:
    """The Hub id of a dataset, also when it was read from a local copy (for evaluation reports and model cards).

    A local copy of a dataset medsft knows maps to that dataset's Hub id; any other ``owner/name`` that is not a local
    path is taken to be a Hub id itself; generated data and unrecognised local files have none.
    """
    if dataset_name in KNOWN_HUB_IDS:
        return dataset_name
    try:
        kind = dataset_type_for(dataset_name, dataset_type)
    except MedsftError:
        kind = None
    if kind == "clinical_notes":
        return None
    if dataset_name and dataset_name.count("/") == 1 and not Path(dataset_name).exists():
        return dataset_name
    hub_ids = SPECS[kind].hub_ids if kind in SPECS else ()
    return hub_ids[0] if hub_ids else None
