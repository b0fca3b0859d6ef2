"""Training data from the data arguments: one dataset or a ``datasets:`` mixture, decontaminated, formatted, mixed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, concatenate_datasets
from trl import is_conversational

from medsft.core.errors import MedsftError
from medsft.data import clinical_notes, pubmedqa
from medsft.data.load_report import LoadReport
from medsft.data.registry import (
    DATASET_OPTIONS,
    OPTION_DEFAULTS,
    OPTION_READERS,
    LoadedSplits,
    dataset_type_for,
    load_splits,
    refuse_unread,
    unread_option,
)

logger = logging.getLogger(__name__)


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


def _settle_options(entries: list[dict], kinds: list[str]) -> None:
    """Refuse a dataset option that no dataset of the run reads (it would silently do nothing): one set on a
    dataset (or given for a single dataset) that its loader does not read, or one set for a whole mixture that none
    of its datasets reads. A mixture-wide option then reaches only the datasets that read it."""
    for option, (types, readers) in OPTION_READERS.items():
        said = False  # (a warning-only option is said once: on its dataset, or for the run)
        for entry, kind in zip(entries, kinds, strict=True):
            message = unread_option(option, entry["options"].get(option, OPTION_DEFAULTS[option]), kind, entry["path"])
            if message and option in entry["own"]:
                refuse_unread(option, message)
                said = True
        given = any(e["options"].get(option, OPTION_DEFAULTS[option]) != OPTION_DEFAULTS[option] for e in entries)
        if given and not said and not any(kind in types for kind in kinds):
            described = ", ".join(f"{e['path']} ({kind})" for e, kind in zip(entries, kinds, strict=True))
            refuse_unread(option, f"{option} applies to {readers} only; no dataset of this run is: {described}")
        for entry, kind in zip(entries, kinds, strict=True):
            if kind not in types:  # a mixture-wide value reaches only the datasets that read it
                entry["options"] = {**entry["options"], option: OPTION_DEFAULTS[option]}


def _check_abstracts_hold_out(entries: list[dict], kinds: list[str]) -> None:
    """PubMed abstracts hold out the abstracts of PubMedQA's default validation split (the 50 shipped PMIDs); a
    mixture that splits PubMedQA otherwise would select its model on questions whose abstracts it trains on."""
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
    kinds = [dataset_type_for(e["path"], e["type"]) for e in entries]  # each dataset's loader, resolved once
    _settle_options(entries, kinds)
    _check_abstracts_hold_out(entries, kinds)
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
