"""Datasets medsft knows: one module per dataset (loader + formatting), dispatched here."""

from __future__ import annotations

from datasets import DatasetDict

from medsft.data import wikidoc
from medsft.data.report import LoadReport
from medsft.errors import MedsftError

# Hub ids recognised by dataset_type=auto
KNOWN_HUB_IDS = {wikidoc.HUB_ID: "wikidoc"}
LOADERS = {"wikidoc": (wikidoc.load_wikidoc, wikidoc.FORMATTERS)}


def dataset_type_for(dataset_name: str, dataset_type: str) -> str:
    if dataset_type != "auto":
        return dataset_type
    if dataset_name in KNOWN_HUB_IDS:
        return KNOWN_HUB_IDS[dataset_name]
    raise MedsftError(
        f"cannot tell which dataset '{dataset_name}' is: set --dataset_type ({', '.join(LOADERS)}, or hf for a "
        "dataset already in a TRL format)"
    )


def load_sft_datasets(script_args) -> tuple[DatasetDict, LoadReport]:
    """Load, clean, split and format the training data named by the script arguments.

    Returns a ``DatasetDict`` with ``train`` and possibly ``validation``, each in a TRL format (prompt/completion),
    and the loader's report of kept and dropped rows.
    """
    if not script_args.dataset_name:
        raise MedsftError("dataset_name is required (a Hub id or a local file/directory)")
    kind = dataset_type_for(script_args.dataset_name, script_args.dataset_type)
    if kind == "hf":
        return _load_hf(script_args)
    load, formatters = LOADERS[kind]
    raw, report = load(script_args.dataset_name, validation_size=script_args.validation_size)
    formatter = formatters[script_args.dataset_format]
    formatted = DatasetDict(
        {name: split.map(formatter, remove_columns=split.column_names) for name, split in raw.items()}
    )
    return formatted, report


def _load_hf(script_args) -> tuple[DatasetDict, LoadReport]:
    """A dataset already in a TRL format: loaded with ``datasets.load_dataset`` and passed through."""
    from pathlib import Path

    from datasets import load_dataset

    from medsft.errors import hub_errors

    name = script_args.dataset_name
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
    with hub_errors("dataset", name):
        if Path(name).suffix in builders:  # a local file: datasets needs the builder named
            if not Path(name).is_file():
                raise MedsftError(f"data file not found: {name}")
            loaded = load_dataset(builders[Path(name).suffix], data_files={"train": name})
        else:
            loaded = load_dataset(name, name=script_args.dataset_config)
    result = DatasetDict(train=loaded[script_args.dataset_train_split])
    if script_args.dataset_test_split in loaded:
        result["validation"] = loaded[script_args.dataset_test_split]
    report = LoadReport(source=script_args.dataset_name, read=sum(len(s) for s in result.values()))
    report.splits = {name: len(split) for name, split in result.items()}
    return result, report
