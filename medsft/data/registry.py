"""The datasets medsft knows: each one's loader, formats, licence and decontamination policy, and the rules that
recognise a dataset from its Hub id or local layout."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from datasets import DatasetDict

from medsft.core.errors import MedsftError
from medsft.core.paths import is_hub_id, looks_local
from medsft.data import clinical_notes, medquad, pubmed_abstracts, pubmedqa, pubmedqa_artificial, wikidoc
from medsft.data.load_report import LoadReport

logger = logging.getLogger(__name__)


DECONTAMINATION_POLICIES = ("error", "drop", "warn", "off")


@dataclass(frozen=True)
class DatasetOptions:
    """The options of one dataset's loader and formatting (``load_splits``); in training they come from the data
    arguments, and each dataset of a mixture may set its own.

    Parameters:
        validation_size: fraction held out (seeded) as validation; None: the dataset's own default.
        pubmedqa_long_answer: PubMedQA formats follow the yes/no/maybe word with the long answer.
        pubmedqa_reference: the PubMedQA release whose official test set is kept out of the data (default: the data
            itself when it is PubMedQA, else ``qiaojin/PubMedQA``).
        pubmedqa_test_file: the official ``test_ground_truth.json`` when it is not beside the PubMedQA data.
        pubmedqa_balance_labels: oversample the PubMedQA training questions whose answer is rarer ("no", "maybe")
            to the count of the most common one (``pubmedqa.balance_labels``); validation keeps the real prior.
        medquad_top_k_focus: keep only the k MedQuAD foci with the most question-answer pairs.
        num_notes / notes_seed: size and seed of the generated clinical-notes corpus.
        decontamination: rows overlapping the PubMedQA test set: ``error``, ``drop``, ``warn`` or ``off``; None: the
            dataset's own default.
        benchmark_references: ``medqa=PATH,mmlu=PATH,medmcqa=PATH`` (local releases or Hub ids): also keep those
            benchmarks' scored questions out of the data, under the same policy.
    """

    validation_size: float | None = None
    pubmedqa_long_answer: bool = False
    pubmedqa_reference: str | None = None
    pubmedqa_test_file: str | None = None
    pubmedqa_balance_labels: bool = False
    medquad_top_k_focus: int | None = None
    num_notes: int = 2000
    notes_seed: int = 0
    decontamination: str | None = None
    benchmark_references: str | None = None

    def __post_init__(self):
        if self.validation_size is not None and not 0.0 <= self.validation_size < 1.0:
            raise MedsftError(f"validation_size must be in [0, 1), got {self.validation_size}")
        if self.medquad_top_k_focus is not None and self.medquad_top_k_focus < 1:
            raise MedsftError(f"medquad_top_k_focus must be positive, got {self.medquad_top_k_focus}")
        if self.num_notes < 1:
            raise MedsftError(f"num_notes must be positive, got {self.num_notes}")
        from medsft.data.decontam import parse_benchmark_references

        parse_benchmark_references(self.benchmark_references)  # a bad entry is refused before anything loads
        if self.decontamination is not None and self.decontamination not in DECONTAMINATION_POLICIES:
            raise MedsftError(
                f"decontamination must be one of {', '.join(DECONTAMINATION_POLICIES)}, got {self.decontamination}"
            )


DATASET_OPTIONS = tuple(f.name for f in fields(DatasetOptions))


@dataclass(frozen=True)
class DatasetSpec:
    """How medsft reads one dataset: its loader, formats, licence and default decontamination policy."""

    load: Callable  # (source, DatasetOptions) -> (DatasetDict of raw rows, LoadReport)
    formatters: dict[str, Callable]
    license: str
    hub_ids: tuple[str, ...] = ()
    hub_config: str | None = None  # the Hub dataset's config this loader reads; a bare Hub id means another loader
    decontamination: str = "warn"
    format_options: Callable = lambda options: {}  # noqa: E731 - per-dataset keyword options for the formatters
    special_tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)  # format -> tokens to add


def _validation_size(args, default: float) -> float:
    return default if args.validation_size is None else args.validation_size


def _pubmedqa_reference(source: str, args) -> str:
    """Where the PubMedQA test set is read from: the flag, else the data itself when it is PubMedQA, else the Hub."""
    if args.pubmedqa_reference:
        return args.pubmedqa_reference
    if (Path(source) / pubmedqa.DATA_FILE).is_file() or Path(source).name == pubmedqa.DATA_FILE:
        return source
    if Path(source).is_file() and (Path(source).parent / pubmedqa.DATA_FILE).is_file():
        return str(Path(source).parent)  # e.g. ori_pqaa.json beside PQA-L in the official release's data/
    return pubmedqa.HUB_ID


def _load_pubmedqa(source: str, args) -> tuple[DatasetDict, LoadReport]:
    splits, report = pubmedqa.load_pubmedqa(
        source, _validation_size(args, pubmedqa.VALIDATION_SIZE), args.pubmedqa_test_file
    )
    del splits["test"]  # the official test set is for evaluation only
    return _balanced(splits, report, args)


def _load_pubmedqa_artificial(source: str, args) -> tuple[DatasetDict, LoadReport]:
    splits, report = pubmedqa_artificial.load_pubmedqa_artificial(
        source, _validation_size(args, pubmedqa_artificial.VALIDATION_SIZE)
    )
    return _balanced(splits, report, args)


def _balanced(splits: DatasetDict, report: LoadReport, args) -> tuple[DatasetDict, LoadReport]:
    """``--pubmedqa_balance_labels``: the training questions with rarer answers repeated, the copies counted."""
    if args.pubmedqa_balance_labels:
        splits["train"], added = pubmedqa.balance_labels(splits["train"])
        report.repeated = {f"{label} questions repeated to balance labels": n for label, n in added.items() if n}
        report.splits["train"] = len(splits["train"])
        logger.info("PubMedQA labels balanced: train %d questions (+%s)", len(splits["train"]), added)
    return splits, report


def _load_abstracts(source: str, args) -> tuple[DatasetDict, LoadReport]:
    test_pmids = set(pubmedqa.official_test_labels(_pubmedqa_reference(source, args), args.pubmedqa_test_file))
    return pubmed_abstracts.load_pubmed_abstracts(
        source, test_pmids, _validation_size(args, pubmed_abstracts.VALIDATION_SIZE), pubmedqa.validation_pmids()
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
    "pubmedqa_artificial": DatasetSpec(
        load=_load_pubmedqa_artificial,
        formatters=pubmedqa_artificial.FORMATTERS,
        license=pubmedqa_artificial.LICENSE,
        hub_ids=(pubmedqa.HUB_ID,),
        hub_config=pubmedqa_artificial.HUB_CONFIG,
        decontamination="drop",  # 211k generated rows: an overlap is removed and counted, not fatal
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


# Dataset options that only some loaders read (every loader reads the others): given for another dataset, they would
# do nothing, so they are refused (medsft.data.mixture checks a whole run before loading; load_splits one dataset)
_PUBMEDQA_KINDS = ("pubmedqa", "pubmedqa_artificial")
OPTION_READERS: dict[str, tuple[tuple[str, ...], str]] = {
    "pubmedqa_long_answer": (_PUBMEDQA_KINDS, "PubMedQA data"),
    "pubmedqa_balance_labels": (_PUBMEDQA_KINDS, "PubMedQA data"),
    "medquad_top_k_focus": (("medquad",), "MedQuAD data"),
    "num_notes": (("clinical_notes",), "clinical-notes data"),
    "notes_seed": (("clinical_notes",), "clinical-notes data"),
    "validation_size": (tuple(SPECS), "medsft's own dataset types"),  # an hf dataset keeps its own splits
}
OPTION_DEFAULTS = {f.name: f.default for f in fields(DatasetOptions)}


def unread_option(option: str, value, kind: str, path: str) -> str | None:
    """The line saying that ``kind``'s loader does not read ``option`` set to ``value``; None when it does (or the
    option is at its default)."""
    types, readers = OPTION_READERS[option]
    if kind in types or value == OPTION_DEFAULTS[option]:
        return None
    hint = " (an hf dataset keeps its own splits: --dataset_test_split)" if kind == "hf" else ""
    hint += f"; pass --{option} false" if OPTION_DEFAULTS[option] is False else ""
    return f"{option} applies to {readers} only; {path} is read as {kind}{hint}"


def refuse_unread(option: str, message: str) -> None:
    """An option no dataset reads is an error; ``validation_size`` one warning line: recipes (WikiDoc's) set it, users
    rerun them on their own hf data, and it cannot be unset from the command line."""
    if option == "validation_size":
        logger.warning("%s; not used", message)
        return
    raise MedsftError(message)


# Hub ids (and names) recognised by dataset_type=auto: a Hub id alone means its default config (qiaojin/PubMedQA is
# PQA-L; its pqa_artificial config needs --dataset_type pubmedqa_artificial)
KNOWN_HUB_IDS = {hub_id: name for name, spec in SPECS.items() if not spec.hub_config for hub_id in spec.hub_ids}


def dataset_type_for(dataset_name: str, dataset_type: str) -> str:
    """The loader for ``dataset_name``: as given, or recognised from a known Hub id or an official local layout."""
    if dataset_type != "auto":
        return dataset_type
    if dataset_name in KNOWN_HUB_IDS:
        return KNOWN_HUB_IDS[dataset_name]
    path = Path(dataset_name)
    if not path.exists() and looks_local(dataset_name):
        raise MedsftError(f"dataset path {dataset_name} does not exist (nor is it a Hub id owner/name)")
    if path.name == pubmedqa.DATA_FILE or (path / pubmedqa.DATA_FILE).is_file():
        return "pubmedqa"
    if path.name == pubmedqa_artificial.DATA_FILE or (path / pubmedqa_artificial.DATA_FILE).is_file():
        return "pubmedqa_artificial"
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
    if dataset_name and is_hub_id(dataset_name):
        return dataset_name
    hub_ids = SPECS[kind].hub_ids if kind in SPECS else ()
    return hub_ids[0] if hub_ids else None


@dataclass
class LoadedSplits:
    """One dataset's formatted splits, what its loader read and dropped, its licence and the tokens it adds."""

    splits: DatasetDict
    report: LoadReport
    license: str
    special_tokens: tuple[str, ...] = ()


def load_splits(
    path: str,
    type: str = "auto",  # noqa: A002 - the recipe key's name
    format: str = "chat",  # noqa: A002 - the recipe key's name
    *,
    config_name: str | None = None,
    split: str = "train",
    test_split: str = "test",
    **options,
) -> LoadedSplits:
    """Load, clean, split, decontaminate and format one dataset; needs no command-line arguments.

    Parameters:
        path: a Hub id or local file/directory (``clinical_notes`` is generated and ignores it).
        type: a medsft dataset type, ``hf`` (already in a TRL format) or ``auto`` (``dataset_type_for``).
        format: one of the dataset's formats (``SPECS[type].formatters``).
        config_name / split / test_split: for ``hf`` datasets, the config and the splits used as train/validation.
        options: ``DatasetOptions`` fields (``validation_size``, ``medquad_top_k_focus``, ``num_notes`` ...).
    """
    from medsft.data import decontam
    from medsft.data.hf import load_hf

    opts = DatasetOptions(**options)
    kind = dataset_type_for(path, type)
    for option in OPTION_READERS:
        if message := unread_option(option, getattr(opts, option), kind, path):
            refuse_unread(option, message)
    if kind == "hf":
        splits, report = load_hf(path, config_name, split, test_split)
        policy = opts.decontamination or "warn"
        license_, tokens, formatter, format_options = "unknown", (), None, {}
    else:
        spec = SPECS[kind]
        if format not in spec.formatters:
            raise MedsftError(f"{kind} has no '{format}' format; choose one of {', '.join(spec.formatters)}")
        splits, report = spec.load(path, opts)
        policy = opts.decontamination or spec.decontamination
        license_, tokens = spec.license, spec.special_tokens.get(format, ())
        formatter, format_options = spec.formatters[format], spec.format_options(opts)
    benchmarks = decontam.parse_benchmark_references(opts.benchmark_references)
    indexes = decontam.test_set_indexes(policy, _pubmedqa_reference(path, opts), opts.pubmedqa_test_file, benchmarks)
    splits["train"], checked = decontam.decontaminate(splits["train"], policy, indexes, report.source)
    report.decontamination = {"policy": policy, **checked}
    reason = "overlaps PubMedQA test set" if not benchmarks else "overlaps a benchmark's test questions"
    if checked.get("dropped_rows"):
        report.dropped[reason] += checked["dropped_rows"]
        report.splits["train"] = len(splits["train"])
    # the validation split feeds model selection (early stopping, the best checkpoint): it must not hold test rows
    # either; an overlap there is recorded only when found, so reports of clean data keep their shape
    for name in [n for n in splits if n != "train" and len(splits[n]) and policy != "off"]:
        splits[name], held = decontam.decontaminate(splits[name], policy, indexes, report.source, split=name)
        found = {"PubMedQA": held.get("overlapping_rows")} | {
            b: entry.get("overlapping_rows") for b, entry in held.get("benchmarks", {}).items()
        }
        if any(found.values()):
            report.decontamination[f"{name}_overlapping_rows"] = {b: n for b, n in found.items() if n}
        if held.get("dropped_rows"):
            report.dropped[f"{reason} ({name} split)"] += held["dropped_rows"]
            report.splits[name] = len(splits[name])
    if formatter is not None:
        splits = DatasetDict(
            {
                name: rows.map(formatter, fn_kwargs=format_options, remove_columns=rows.column_names)
                for name, rows in splits.items()
            }
        )
    return LoadedSplits(splits, report, license_, tokens)
