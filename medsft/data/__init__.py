"""Datasets medsft knows: one module per dataset (loader + formatting beside it), dispatched here.

``load_sft_datasets`` turns the data arguments (one ``dataset_name`` or a ``datasets:`` mixture) into formatted
train/validation splits, after the decontamination check against the PubMedQA test set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets
from trl import is_conversational

from medsft.data import clinical_notes, decontam, medquad, pubmed_abstracts, pubmedqa, wikidoc
from medsft.data.io import read_records
from medsft.data.report import LoadReport
from medsft.errors import MedsftError
from medsft.hub import looks_local

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


@dataclass
class LoadedData:
    """Formatted train/validation splits, one report per source, and what training needs to know about them."""

    splits: DatasetDict
    reports: list[LoadReport]
    special_tokens: tuple[str, ...] = ()
    licenses: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return " | ".join(r.summary() for r in self.reports)


def _entries(script_args, mixture) -> list[dict]:
    """One entry per source: the single ``dataset_name``, or each dataset of a ``datasets:`` mixture."""
    if mixture is not None and mixture.datasets:
        if script_args.dataset_name:
            raise MedsftError("give either dataset_name or a datasets: mixture, not both")
        return [
            {
                "path": d.path,
                "type": d.type,
                "format": d.format or script_args.dataset_format,
                "fraction": d.fraction,
                "name": d.name,
                "split": d.split,
            }
            for d in mixture.datasets
        ]
    if not script_args.dataset_name and script_args.dataset_type != "clinical_notes":
        raise MedsftError("dataset_name is required (a Hub id or a local file/directory), or a datasets: mixture")
    return [
        {
            "path": script_args.dataset_name or clinical_notes.NAME,
            "type": script_args.dataset_type,
            "format": script_args.dataset_format,
            "fraction": None,
            "name": script_args.dataset_config,
            "split": script_args.dataset_train_split,
        }
    ]


def _load_one(entry: dict, script_args) -> tuple[DatasetDict, LoadReport, str, tuple[str, ...]]:
    kind = dataset_type_for(entry["path"], entry["type"])
    if kind == "hf":
        splits, report = _load_hf(entry["path"], entry["name"], entry["split"], script_args.dataset_test_split)
        policy = script_args.decontamination or "warn"
        license_, tokens, formatter, options = "unknown", (), None, {}
    else:
        spec = SPECS[kind]
        if entry["format"] not in spec.formatters:
            raise MedsftError(f"{kind} has no '{entry['format']}' format; choose one of {', '.join(spec.formatters)}")
        splits, report = spec.load(entry["path"], script_args)
        policy = script_args.decontamination or spec.decontamination
        license_ = spec.license
        tokens = spec.special_tokens.get(entry["format"], ())
        formatter, options = spec.formatters[entry["format"]], spec.format_options(script_args)
    splits["train"], checked = decontam.decontaminate(
        splits["train"],
        policy,
        _pubmedqa_reference(entry["path"], script_args),
        script_args.pubmedqa_test_file,
        what=report.source,
    )
    report.decontamination = {"policy": policy, **checked}
    overlap = checked["overlapping_rows"]
    if policy == "drop" and overlap:
        report.dropped["overlaps PubMedQA test set"] += overlap
        report.splits["train"] = len(splits["train"])
    if formatter is not None:
        splits = DatasetDict(
            {
                name: split.map(formatter, fn_kwargs=options, remove_columns=split.column_names)
                for name, split in splits.items()
            }
        )
    return splits, report, license_, tokens


def _mix(trains: list[Dataset], fractions: list[float | None], reports: list[LoadReport], seed: int) -> Dataset:
    """TRL's ``DatasetMixtureConfig`` semantics: fractions are normalised shares of the mixture, and its size is the
    largest that oversamples no dataset. Rows left out are counted in each source's report."""
    if all(f is None for f in fractions):
        return concatenate_datasets(trains)
    if any(f is None for f in fractions) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise MedsftError("a mixture needs a non-negative fraction on every dataset (or on none)")
    weights = [f / sum(fractions) for f in fractions]
    total = min(len(d) / w for d, w in zip(trains, weights, strict=True) if w > 0)
    mixed = []
    for dataset, weight, report in zip(trains, weights, reports, strict=True):
        n = round(weight * total)
        report.dropped["left out of the mixture (fraction)"] += len(dataset) - n
        report.splits["train"] = n
        mixed.append(dataset.shuffle(seed=seed).select(range(n)))
    return concatenate_datasets(mixed)


def load_sft_datasets(script_args, mixture=None, seed: int = 42) -> LoadedData:
    """Load, clean, split, decontaminate and format the training data named by the data arguments.

    Parameters:
        script_args: ``MedScriptArguments``.
        mixture: ``MedDatasetMixtureConfig`` whose ``datasets`` (when non-empty) replace ``dataset_name``.
        seed: for sampling mixture fractions.

    Returns:
        ``LoadedData`` whose ``splits`` has ``train`` and possibly ``validation``, each in one TRL format
        (``prompt``/``completion``, conversational or not, or ``text``).
    """
    entries = _entries(script_args, mixture)
    loaded = [_load_one(entry, script_args) for entry in entries]
    shapes = {_shape(splits["train"]) for splits, *_ in loaded}
    if len(shapes) > 1:
        described = ", ".join(f"{e['path']} ({e['format']})" for e in entries)
        raise MedsftError(
            f"a mixture's datasets must share one format kind (text, prompt/completion or chat): {described}"
        )
    reports = [report for _, report, _, _ in loaded]
    train = _mix([splits["train"] for splits, *_ in loaded], [e["fraction"] for e in entries], reports, seed)
    result = DatasetDict(train=train)
    validations = [splits["validation"] for splits, *_ in loaded if "validation" in splits]
    if validations:
        result["validation"] = concatenate_datasets(validations)
    if len(result["train"]) == 0:
        raise MedsftError(f"no training examples left: {' | '.join(r.summary() for r in reports)}")
    tokens = tuple(dict.fromkeys(t for *_, ts in loaded for t in ts))
    return LoadedData(result, reports, tokens, sorted({lic for _, _, lic, _ in loaded}))


def _shape(dataset: Dataset) -> tuple:
    columns = tuple(sorted(dataset.column_names))
    return columns, bool(len(dataset)) and is_conversational(dataset[0])


_TRL_COLUMNS = {"text": ("text",), "messages": ("messages",), "prompt": ("prompt", "completion")}


def _check_trl_rows(rows, where: str):
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


def _load_hf(name: str, config: str | None, split: str, test_split: str) -> tuple[DatasetDict, LoadReport]:
    """A dataset already in a TRL format: loaded with ``datasets.load_dataset`` and passed through."""
    from datasets import load_dataset

    from medsft.errors import hub_errors

    builders = {".csv": "csv", ".parquet": "parquet"}
    with hub_errors("dataset", name):
        if Path(name).suffix in (".json", ".jsonl"):  # medsft's reader: errors name the file, line and row
            loaded = DatasetDict(train=Dataset.from_list(_check_trl_rows(read_records(name), name)))
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
        _check_trl_rows(rows, f"{name} ({split_name})")
    report = LoadReport(
        source=Path(name).name if Path(name).exists() else name, read=sum(len(s) for s in result.values())
    )
    report.splits = {n: len(s) for n, s in result.items()}
    return result, report
