"""Recipe parsing: positional path or --config, CLI overrides, unknown keys, TRL flag names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsft.configs.parser import parse_args
from medsft.configs.training import MedModelConfig, MedScriptArguments, MedSFTConfig
from medsft.core.errors import MedsftError

TYPES = (MedScriptArguments, MedSFTConfig, MedModelConfig)


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "model_name_or_path: gpt2\ndataset_name: medalpaca/medical_meadow_wikidoc_patient_information\n"
        "learning_rate: 3.0e-4\nuse_peft: true\nload_in_4bit: true\nlora_target_modules: [c_attn]\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    return str(path)


@pytest.mark.parametrize("form", ["positional", "config"])
def test_recipe_positional_or_config_and_cli_overrides(recipe, form):
    argv = [recipe] if form == "positional" else ["--config", recipe]
    script, train, model, keys = parse_args(TYPES, argv + ["--learning_rate", "1e-4", "--max_steps", "50"])
    assert train.learning_rate == 1e-4 and train.max_steps == 50  # CLI wins
    assert model.model_name_or_path == "gpt2" and model.load_in_4bit and model.use_peft
    assert model.lora_target_modules == ["c_attn"]  # stays a list (TRL would make it a bare regex string)
    assert script.dataset_type == "auto" and script.dataset_format == "chat"
    assert {"learning_rate", "max_steps", "model_name_or_path", "output_dir"} <= keys
    assert train.bf16 is False  # no bf16-capable GPU here: medsft does not force bf16
    # pinned memory only where there is a device to copy to (torch's DataLoader warns about it otherwise)
    assert train.dataloader_pin_memory is torch.accelerator.is_available()


def test_bf16_on_a_machine_without_a_gpu_trains_on_the_cpu(recipe, monkeypatch):
    """transformers refuses bf16 without a GPU unless use_cpu is set; medsft sets it (CPU mixed precision)."""
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    _, train, _, _ = parse_args(TYPES, [recipe, "--bf16", "true"])
    assert train.bf16 is True and train.use_cpu is True
    _, train, _, _ = parse_args(TYPES, [recipe])
    assert train.bf16 is False and train.use_cpu is False  # float32 by default: nothing changed
    assert train.return_freed_memory is True  # and freed memory goes back to the system unless a recipe says


def test_bf16_on_a_gpu_without_it_is_one_line(recipe, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(MedsftError, match=r"this GPU \(Tesla T4\) has no bf16: add --bf16 false"):
        parse_args(TYPES, [recipe, "--bf16", "true"])


def test_unknown_recipe_key_is_named(recipe):
    with open(recipe, "a") as f:
        f.write("lora_rank: 8\n")
    with pytest.raises(MedsftError, match=r"r\.yaml: unknown key\(s\) lora_rank"):
        parse_args(TYPES, [recipe])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(MedsftError, match="recipe file not found"):
        parse_args(TYPES, [str(tmp_path / "nope.yaml")])


def test_recipe_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(MedsftError, match="must be a YAML mapping"):
        parse_args(TYPES, [str(path)])


def test_4bit_without_peft_is_rejected(tmp_path):
    with pytest.raises(MedsftError, match="load_in_4bit needs use_peft"):
        parse_args(TYPES, ["--model_name_or_path", "gpt2", "--load_in_4bit", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize(
    "shipped",
    sorted(
        str(p)
        for p in (Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml")
        if "early_stopping_patience" in p.read_text()
    ),
)
def test_a_recipes_early_stopping_turns_off_from_the_command_line(shipped, tmp_path):
    # a run without validation (e.g. a short CPU run) must be possible from a recipe that stops early
    off = ["--eval_strategy", "no", "--load_best_model_at_end", "false", "--output_dir", str(tmp_path)]
    with pytest.raises(MedsftError, match=r"early_stopping_patience .*0 turns it off"):
        parse_args(TYPES, [shipped, *off])
    _, train, _, _ = parse_args(TYPES, [shipped, *off, "--early_stopping_patience", "0"])
    assert train.early_stopping_patience is None and train.eval_strategy == "no"
    with pytest.raises(MedsftError, match="early_stopping_patience"):
        parse_args(TYPES, [shipped, "--early_stopping_patience", "-1", "--output_dir", str(tmp_path)])


def test_lora_preset_and_module_list_together_are_refused(recipe, tmp_path):
    # the recipe names modules; a preset from the command line would be silently ignored
    with pytest.raises(MedsftError, match=r"--lora_target_preset all-linear has no effect .*\(c_attn\)"):
        parse_args(TYPES, [recipe, "--lora_target_preset", "all-linear"])
    _, _, model, _ = parse_args(TYPES, [recipe, "--lora_target_modules", "all-linear"])
    assert model.lora_target_modules == "all-linear"
    # and the other way round: a recipe with a preset, modules named on the command line
    preset = tmp_path / "preset.yaml"
    preset.write_text(
        f"model_name_or_path: gpt2\nuse_peft: true\nlora_target_preset: all-linear\noutput_dir: {tmp_path}\n"
    )
    with pytest.raises(MedsftError, match="add --lora_target_preset default"):
        parse_args(TYPES, [str(preset), "--lora_target_modules", "c_attn"])
    _, _, model, _ = parse_args(
        TYPES, [str(preset), "--lora_target_modules", "c_attn", "--lora_target_preset", "default"]
    )
    assert model.lora_target_modules == ["c_attn"]
