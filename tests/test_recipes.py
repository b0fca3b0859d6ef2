"""Every shipped recipe trains a few steps offline: its own settings, with only the model, data path, output dir and
CPU-sized step counts overridden on the command line (as the recipes' headers tell offline users to do)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medsft.train import main
from tests.conftest import MEDQUAD_DIR, PUBMEDQA_DIR, WIKIDOC_JSON, assert_training_logs, recipe_argv

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
LOCAL_DATA = {
    "pubmedqa": PUBMEDQA_DIR,
    "pubmed_abstracts": PUBMEDQA_DIR,
    "medquad": MEDQUAD_DIR,
    "wikidoc": WIKIDOC_JSON,
    "clinical_notes": None,
}


def test_every_recipe_has_local_data():
    # the recipes the README documents: one missing (or renamed) must fail here, not shrink the parametrization below
    assert RECIPE_NAMES == [
        "clinical_notes_lora", "medquad_gpt2", "medquad_smollm2", "pubmed_abstracts_lm", "pubmedqa_full_smollm2",
        "pubmedqa_gpt2_full", "pubmedqa_lora", "pubmedqa_lora_smollm2", "wikidoc_qlora", "wikidoc_qlora_smollm2",
    ]  # fmt: skip
    for name in RECIPE_NAMES:
        assert yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["dataset_type"] in LOCAL_DATA, name


# eval_*.yaml are evaluation settings (tests/test_evaluate.py), not training recipes
RECIPE_NAMES = sorted(p.stem for p in RECIPES.glob("*.yaml") if not p.stem.startswith("eval_"))


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_trains_offline(name, tiny_gpt2, tiny_llama, medquad_small, tmp_path):
    recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    model = tiny_gpt2 if recipe["model_name_or_path"] == "gpt2" else tiny_llama
    # MedQuAD: three of its collections (loading all 16k pairs and checking them for overlaps took ~10 s a recipe)
    data = medquad_small if recipe["dataset_type"] == "medquad" else LOCAL_DATA[recipe["dataset_type"]]
    out = tmp_path / "run"
    argv = recipe_argv(
        # one evaluation and one checkpoint, at the last step (where early stopping's best model is picked)
        name, model, out, "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2",
        # PubMedQA's abstracts need the recipe's 1024 tokens: at 128 almost every answer would be cut away (refused)
        "--max_length", "1024" if recipe["dataset_type"] == "pubmedqa" else "128",
        "--per_device_eval_batch_size", "8", "--max_train_samples", "16",
        "--pubmedqa_reference", str(PUBMEDQA_DIR), quick=False,
    )  # fmt: skip
    if recipe["dataset_type"] == "clinical_notes":  # (an option no dataset of the run reads is refused)
        argv += ["--num_notes", "200"]
    if data is not None:
        argv += ["--dataset_name", str(data)]
    if recipe["dataset_type"] == "medquad":  # a smaller per-focus validation split, for CPU time
        argv += ["--validation_size", "0.02"]
    trainer = main(argv)
    assert trainer.state.global_step == 2
    weights = "adapter_model.safetensors" if recipe.get("use_peft") else "model.safetensors"
    assert (out / weights).is_file()
    manifest = json.loads((out / "run_manifest.json").read_text())
    (source,) = manifest["dataset"]["sources"]
    assert source["splits"]["train"] > 0 and source["decontamination"]["policy"] in ("error", "warn")
    # the recorded recipe is the shipped one plus the CLI overrides
    recorded = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recorded["dataset_format"] == recipe["dataset_format"] and recorded["max_steps"] == 2
    if recipe.get("eval_strategy") not in (None, "no"):
        assert any("eval_loss" in entry for entry in trainer.state.log_history)
    # every run: TensorBoard event files (the recipes' report_to) and the loss curve
    assert recipe["report_to"] == "tensorboard"
    assert_training_logs(out, trainer.state.log_history)
