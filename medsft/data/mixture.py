"""Training data from the data arguments: one dataset or a ``datasets:`` mixture, decontaminated, formatted, mixed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from datasets import Dataset, DatasetDict, concatenate_datasets
from trl import is_conversational

from medsft.core.errors import MedsftError
from medsft.data import clinical_notes, pubmedqa
from medsft.data.load_report import LoadReport
from medsft.data.registry import DATASET_OPTIONS, SPECS, DatasetOptions, LoadedSplits, dataset_type_for, load_splits

logger = logging.getLogger(__name__)

# Dataset options that only some loaders read; set for a dataset that does not read them, they would do nothing
_PUBMEDQA = ("pubmedqa", "pubmedqa_artificial")
OPTION_TYPES: dict[str, tuple[str, ...]] = {
    "pubmedqa_long_answer": _PUBMEDQA,
    "pubmedqa_balance_labels": _PUBMEDQA,
    "medquad_top_k_focus": ("medquad",),
    "num_notes": ("clinical_notes",),
    "notes_seed": ("clinical_notes",),
    "validation_size": tuple(SPECS),  # an hf dataset keeps its own splits (--dataset_test_split)
}
_READERS = {
    _PUBMEDQA: "PubMedQA",
    ("medquad",): "MedQuAD",
    ("clinical_notes",): "clinical-notes",
}
_DEFAULTS = {f.name: f.default for f in fields(DatasetOptions)}
_WARN_ONLY = ("validation_size",)


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
    """One entry per source: the single ``dataset_name``, or each dataset of a ``datasets:`` mixture; each with its
    ``load_splits`` arguments (a mixture entry's own dataset options override the top-level ones)."""
    shared = {name: getattr(script_args, name) for name in DATASET_OPTIONS}
    if mixture is not None and mixture.datasets:
        if script_args.dataset_name:
            raise MedsftError("give either dataset_name or a datasets: mixture, not both")
        entries = []
        for d in mixture.datasets:
            own = {name: getattr(d, name) for name in DATASET_OPTIONS if getattr(d, name, None) is not None}
            entries.append(
                {
                    "path": d.path, "type": d.type, "format": d.format or script_args.dataset_format,
                    "fraction": d.fraction, "config_name": d.name, "split": d.split, "options": {**shared, **own},
                    "own": set(own),
                }
            )  # fmt: skip
        return entries
    if not script_args.dataset_name and script_args.dataset_type != "clinical_notes":
        raise MedsftError("dataset_name is required (a Hub id or a local file/directory), or a datasets: mixture")
    return [
        {
            "path": script_args.dataset_name or clinical_notes.NAME,
            "type": script_args.dataset_type,
            "format": script_args.dataset_format,
            "fraction": None,
            "config_name": script_args.dataset_config,
            "split": script_args.dataset_train_split,
            "options": shared,
            "own": set(shared),  # one dataset: every option given is its own
        }
    ]


def _settle_options(entries: list[dict]) -> None:
    """Refuse a dataset option that no dataset of the run reads (it would silently do nothing): one set on a
    dataset (or given for a single dataset) that its loader does not read, or one set for a whole mixture that none
    of its datasets reads. A mixture-wide option then reaches only the datasets that read it."""
    kinds = [dataset_type_for(e["path"], e["type"]) for e in entries]
    for option, types in OPTION_TYPES.items():
        readers = f"{_READERS[types]} data" if types != tuple(SPECS) else "medsft's own dataset types"
        given = [e["options"].get(option, _DEFAULTS[option]) != _DEFAULTS[option] for e in entries]
        for entry, kind, set_here in zip(entries, kinds, given, strict=True):
            if set_here and option in entry["own"] and kind not in types:
                hint = " (an hf dataset keeps its own splits: --dataset_test_split)" if kind == "hf" else ""
                hint += f"; pass --{option} false" if _DEFAULTS[option] is False else ""
                _refuse(option, f"{option} applies to {readers} only; {entry['path']} is read as {kind}{hint}")
        if any(given) and not any(kind in types for kind in kinds):
            described = ", ".join(f"{e['path']} ({kind})" for e, kind in zip(entries, kinds, strict=True))
            _refuse(option, f"{option} applies to {readers} only; no dataset of this run is: {described}")
        for entry, kind in zip(entries, kinds, strict=True):
            if kind not in types:  # a mixture-wide value reaches only the datasets that read it
                entry["options"] = {**entry["options"], option: _DEFAULTS[option]}


def _refuse(option: str, message: str) -> None:
    # validation_size is set by recipes (WikiDoc's) that users rerun on their own hf data, and cannot be unset from
    # the command line: said in one warning line; every other option has a way out on the command line
    if option in _WARN_ONLY:
        logger.warning("%s; not used", message)
        return
    raise MedsftError(message)


def _check_abstracts_hold_out(entries: list[dict]) -> None:
    """PubMed abstracts hold out the abstracts of PubMedQA's default validation split (the 50 shipped PMIDs); a
    mixture that splits PubMedQA otherwise would select its model on questions whose abstracts it trains on."""
    kinds = [dataset_type_for(e["path"], e["type"]) for e in entries]
    if "pubmed_abstracts" not in kinds:
        return
    for entry, kind in zip(entries, kinds, strict=True):
        size = entry["options"].get("validation_size")
        if kind == "pubmedqa" and size is not None and size != pubmedqa.VALIDATION_SIZE:
            raise MedsftError(
                f"{entry['path']}: validation_size {size} splits PubMedQA differently from the default "
                f"({pubmedqa.VALIDATION_SIZE}), whose 50 validation questions' abstracts the PubMed abstracts leave "
                "out, so model selection would read questions whose abstracts are trained on; keep PubMedQA's default "
                "(set validation_size on the other datasets' entries instead of at the top level)"
            )


def _load_one(entry: dict, script_args) -> LoadedSplits:
    return load_splits(
        entry["path"],
        entry["type"],
        entry["format"],
        config_name=entry["config_name"],
        split=entry["split"],
        test_split=script_args.dataset_test_split,
        **entry["options"],
    )


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
    _settle_options(entries)
    _check_abstracts_hold_out(entries)
    loaded = [_load_one(entry, script_args) for entry in entries]
    shapes = {_shape(one.splits["train"]) for one in loaded}
    if len(shapes) > 1:
        described = ", ".join(f"{e['path']} ({e['format']})" for e in entries)
        raise MedsftError(
            f"a mixture's datasets must share one format kind (text, prompt/completion or chat): {described}"
        )
    reports = [one.report for one in loaded]
    train = _mix([one.splits["train"] for one in loaded], [e["fraction"] for e in entries], reports, seed)
    result = DatasetDict(train=train)
    validations = [one.splits["validation"] for one in loaded if "validation" in one.splits]
    if validations:
        result["validation"] = concatenate_datasets(validations)
    if len(result["train"]) == 0:
        raise MedsftError(f"no training examples left: {' | '.join(r.summary() for r in reports)}")
    tokens = tuple(dict.fromkeys(t for one in loaded for t in one.special_tokens))
    return LoadedData(result, reports, tokens, sorted({one.license for one in loaded}))


def _shape(dataset: Dataset) -> tuple:
    columns = tuple(sorted(dataset.column_names))
    return columns, bool(len(dataset)) and is_conversational(dataset[0])
