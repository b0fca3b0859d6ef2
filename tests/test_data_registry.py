"""medsft.data.registry: dataset types and formats, recognising official layouts, and load_splits."""

from __future__ import annotations

import pytest

from medsft.configs.training import MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.data.mixture import load_sft_datasets
from tests.conftest import MEDQUAD_DIR, PUBMEDQA_DIR


def test_unsupported_format_names_the_choices():
    args = MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_format="special_tokens")
    with pytest.raises(
        MedsftError, match="pubmedqa has no 'special_tokens' format; choose one of chat, instruction, text"
    ):
        load_sft_datasets(args)


def test_auto_recognises_official_layouts():
    from medsft.data.registry import dataset_type_for

    assert dataset_type_for(str(PUBMEDQA_DIR), "auto") == "pubmedqa"
    assert dataset_type_for(str(MEDQUAD_DIR), "auto") == "medquad"
    assert dataset_type_for("synthetic-clinical-notes", "auto") == "clinical_notes"


def test_load_splits_needs_no_command_line_arguments(wikidoc_small):
    """The loader API evaluation and mixtures use: a path, a type, a format and dataset options."""
    from medsft.data.registry import load_splits
    from medsft.data.wikidoc import load_wikidoc

    loaded = load_splits(wikidoc_small, "wikidoc", "instruction", validation_size=0.25)
    raw, report = load_wikidoc(wikidoc_small, validation_size=0.25)
    assert {name: len(rows) for name, rows in loaded.splits.items()} == {n: len(r) for n, r in raw.items()}
    assert set(loaded.splits["train"].column_names) == {"prompt", "completion"}
    assert loaded.splits["train"][0]["completion"].strip() == raw["train"][0]["output"].strip()
    assert loaded.report.kept == report.kept and loaded.report.decontamination["policy"] == "warn"
    with pytest.raises(MedsftError, match="validation_size must be in"):
        load_splits(wikidoc_small, "wikidoc", "instruction", validation_size=1.5)
    with pytest.raises(TypeError):
        load_splits(wikidoc_small, "wikidoc", "instruction", not_an_option=1)
