"""medsft.run_dir.record: read_run, the one reader of a run directory, for runs with and without run_config.json."""

from __future__ import annotations

import json

import pytest
import yaml

from medsft.configs.training import MedModelConfig, MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.run_dir.record import read_run, write_manifest, write_recipe, write_run_config


def _old_run(path, recipe: dict, status: str = "finished"):
    """A run directory as medsft wrote it before run_config.json existed: only the user's keys are recorded."""
    path.mkdir()
    (path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (path / "run_manifest.json").write_text(json.dumps({"status": status, "model": {"name": "gpt2"}}))
    return path


def test_run_without_run_config_gets_the_declared_defaults(tmp_path):
    run = read_run(_old_run(tmp_path / "old", {"model_name_or_path": "gpt2", "load_in_4bit": True}))
    assert run.model_name_or_path == "gpt2" and run.load_in_4bit  # the user's keys
    assert run.dataset_format == MedScriptArguments().dataset_format  # the defaults, not guesses in each reader
    assert run["bnb_4bit_quant_type"] == MedModelConfig().bnb_4bit_quant_type
    assert run.base == {"name": "gpt2"} and run.finished and not run.is_adapter


def test_run_config_records_every_effective_value(tmp_path):
    script_args = MedScriptArguments(dataset_name="x.json", dataset_format="text")
    model_args = MedModelConfig(model_name_or_path="gpt2")
    keys = {"dataset_name", "model_name_or_path"}
    write_recipe(str(tmp_path), keys, script_args, model_args)
    write_run_config(str(tmp_path), keys, script_args, model_args)
    write_manifest(str(tmp_path), {"status": "finished"})
    run = read_run(tmp_path)
    assert run.recipe == {"dataset_name": "x.json", "model_name_or_path": "gpt2"}  # what the user set
    assert run.dataset_format == "text"  # set in code, not by the user: still recorded
    assert run["lora_r"] == model_args.lora_r and run["validation_size"] == script_args.validation_size
    assert json.loads((tmp_path / "run_config.json").read_text())["set_by_user"] == sorted(keys)


def test_read_run_errors(tmp_path):
    with pytest.raises(MedsftError, match="run directory not found"):
        read_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsftError, match="has no recipe.yaml"):
        read_run(tmp_path / "empty")
    unfinished = _old_run(tmp_path / "unfinished", {"model_name_or_path": "gpt2"}, status="training")
    with pytest.raises(MedsftError, match="has not finished"):
        read_run(unfinished)
    assert not read_run(unfinished, require_finished=False).finished
    (unfinished / "run_config.json").write_text("{not json")
    with pytest.raises(MedsftError, match="run_config.json"):
        read_run(unfinished, require_finished=False)
