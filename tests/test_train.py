"""End-to-end training through ``medsft.train.main`` with the shipped recipe, a tiny GPT-2 and real WikiDoc rows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from medsft.core.errors import MedsftError
from medsft.train import main
from tests.conftest import assert_training_logs, recipe_argv


def recipe_args(model: str, data: str, out: Path, *extra: str) -> list[str]:
    """The shipped GPT-2 QLoRA recipe with local model/data and CPU-sized steps, checkpoints every 3 steps."""
    return recipe_argv(
        "wikidoc_qlora", model, out, "--dataset_name", data, "--max_length", "128", "--max_steps", "6",
        "--save_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-2", *extra, quick=False,
    )  # fmt: skip


def sample_logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["What are the symptoms of asthma?"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**batch, use_cache=False).logits.float()


class Interrupt(Exception):
    pass


class KillAfterSave(TrainerCallback):
    """Stands in for a kill right after the checkpoint at ``step`` is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupt


def test_recipe_trains_qlora_adapter_and_it_reloads(tiny_gpt2, wikidoc_small, tmp_path, caplog):
    from medsft.configs.training import MedModelConfig
    from medsft.modeling.adapters import load_adapter
    from medsft.modeling.loading import load_model
    from medsft.modeling.source import resolve_model_source

    out = tmp_path / "run"
    caplog.set_level(logging.INFO)
    trainer = main(recipe_args(tiny_gpt2, wikidoc_small, out))
    # the recipe packs (TRL's BFD, padding-free row) on SDPA on CPU: attention per example, said in the log; the
    # model's own attention is back once training is over (for the reload below, generation, a saved config)
    assert trainer.padding_free and "packed layout: segments (sdpa attention on CPU" in caplog.text
    assert "concatenated rows" not in caplog.text  # no dense-attention warning: it is not true here
    assert trainer.model.get_base_model().config._attn_implementation == "sdpa"
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "recipe.yaml"} <= files
    assert "run_manifest.json" in files
    # no library draft card (TRL's names no base, PEFT's names it by its local path): medsft.push writes the card
    assert "README.md" not in files

    assert_training_logs(out, trainer.state.log_history)  # TensorBoard events (the recipe's report_to), loss curve

    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["global_step"] == 6
    assert manifest["final_train_loss"] == [e["loss"] for e in trainer.state.log_history if "loss" in e][-1]
    assert set(manifest["versions"]) >= {"torch", "transformers", "trl", "peft", "bitsandbytes"}
    assert manifest["model"]["load_in_4bit"] is True and manifest["packed_layout"] == "segments"

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["c_attn", "c_proj"]
    assert adapter_config["fan_in_fan_out"] is False  # 4-bit: Conv1D became a transposed Linear4bit

    # The LoRA weights moved from their zero init (lora_B) during training
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in weights.items())

    # The resolved recipe holds the recipe's values with the command-line overrides applied
    import yaml

    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["max_length"] == 128 and recipe["load_in_4bit"] is True and recipe["learning_rate"] == 1e-2

    # run_config.json: every effective value, defaults included, read back by the one reader
    from medsft.run_dir.record import read_run

    run = read_run(out)
    assert run.recipe == recipe and run.finished and run.is_adapter and run.load_in_4bit
    assert run["max_length"] == 128 and run["lora_r"] == adapter_config["r"]
    unset = [k for k in ("weight_decay", "adam_beta1", "max_grad_norm", "lr_scheduler_kwargs") if k not in recipe]
    assert unset and all(run[k] == getattr(trainer.args, k) for k in unset)  # defaults the recipe left unset
    assert "hub_token" not in run.arguments and "overwrite_output_dir" not in run.arguments
    recorded = json.loads((out / "run_config.json").read_text())
    assert set(recorded["set_by_user"]) == set(recipe) and set(recipe) < set(recorded["arguments"])

    # Reload: 4-bit base + saved adapter gives the logits the trained model gave
    tokenizer = trainer.processing_class
    expected = sample_logits(trainer.model, tokenizer)
    model_args = MedModelConfig(
        model_name_or_path=tiny_gpt2, load_in_4bit=True, use_bnb_nested_quant=True, use_peft=True
    )
    base = load_model(resolve_model_source(tiny_gpt2), model_args, for_training=False)
    reloaded = load_adapter(base, str(out))
    torch.testing.assert_close(sample_logits(reloaded, tokenizer), expected, atol=1e-4, rtol=1e-4)


def test_existing_output_dir_is_never_overwritten(tiny_gpt2, wikidoc_small, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "my_notes.txt").write_text("precious")
    with pytest.raises(MedsftError, match="not empty .*my_notes.txt.* not a medsft run"):
        main(recipe_args(tiny_gpt2, wikidoc_small, out))
    with pytest.raises(MedsftError, match="not a medsft run"):
        main(recipe_args(tiny_gpt2, wikidoc_small, out, "--overwrite_output_dir", "true"))
    assert (out / "my_notes.txt").read_text() == "precious"
    with pytest.raises(MedsftError, match="holds no checkpoint"):
        main(recipe_args(tiny_gpt2, wikidoc_small, out, "--resume_from_checkpoint", "true"))
    with pytest.raises(MedsftError, match="not a training checkpoint"):
        main(recipe_args(tiny_gpt2, wikidoc_small, out, "--resume_from_checkpoint", str(out)))


def test_resume_after_interruption_matches_uninterrupted_run(tiny_gpt2, wikidoc_small, tmp_path):
    full = tmp_path / "full"
    main(recipe_args(tiny_gpt2, wikidoc_small, full))

    killed = tmp_path / "killed"
    with pytest.raises(Interrupt):
        main(recipe_args(tiny_gpt2, wikidoc_small, killed), callbacks=[KillAfterSave(3)])
    assert (killed / "checkpoint-3").is_dir() and not (killed / "adapter_model.safetensors").exists()
    (killed / "README.md").write_text("my notes on this run")  # the user's, between the two pieces

    # Rerunning without asking to resume refuses and says how
    with pytest.raises(MedsftError, match="--resume_from_checkpoint true"):
        main(recipe_args(tiny_gpt2, wikidoc_small, killed))

    trainer = main(recipe_args(tiny_gpt2, wikidoc_small, killed, "--resume_from_checkpoint", "true"))
    assert trainer.state.global_step == 6
    assert (killed / "README.md").read_text() == "my notes on this run"  # not overwritten by a library's draft card
    manifest = json.loads((killed / "run_manifest.json").read_text())
    assert manifest["resumed_from"] == "checkpoint-3"
    # the Trainer's mean loss covers the resumed session only, and the manifest says which steps
    assert manifest["train_loss_mean_steps"] == [4, 6]
    assert json.loads((full / "run_manifest.json").read_text())["train_loss_mean_steps"] == [1, 6]

    a = load_file(full / "adapter_model.safetensors")
    b = load_file(killed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key].float(), a[key].float(), atol=1e-6, rtol=0, msg=key)


def test_adapter_strength_scales_the_saved_result_and_rescales_a_finished_run(
    tiny_gpt2, wikidoc_small, tmp_path, caplog
):
    """The run's result is saved at the strength asked (lora_alpha scaled, the trained weights untouched) while its
    checkpoints keep the trained strength; the same flag on a finished run's last checkpoint, into a new folder,
    gives another strength of it without training."""
    from medsft.publishing.card import _hyperparameters
    from medsft.run_dir.record import read_run

    out = tmp_path / "half"
    main(recipe_args(tiny_gpt2, wikidoc_small, out, "--adapter_strength", "0.5"))
    last = out / "checkpoint-6"
    assert json.loads((last / "adapter_config.json").read_text())["lora_alpha"] == 32  # the recipe's, as trained
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["lora_alpha"] == 16 and saved["r"] == 16
    trained = load_file(last / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in trained.items())
    assert_same_weights(load_file(out / "adapter_model.safetensors"), trained)
    run = read_run(out)
    assert run["adapter_strength"] == 0.5 and run.recipe["adapter_strength"] == 0.5
    assert "| adapter strength | 0.5 (the trained update, lora_alpha 32, scaled to lora_alpha 16 when saved) |" in (
        _hyperparameters(run, saved)
    )

    caplog.set_level(logging.INFO)
    quarter = tmp_path / "quarter"
    trainer = main(
        recipe_args(
            tiny_gpt2, wikidoc_small, quarter, "--resume_from_checkpoint", str(last), "--adapter_strength", "0.25"
        )
    )
    assert "is its last step (6): saving it as the run's result" in caplog.text  # nothing trained
    assert trainer.state.global_step == 6 and not list(quarter.glob("checkpoint-*"))
    assert json.loads((quarter / "adapter_config.json").read_text())["lora_alpha"] == 8
    assert_same_weights(load_file(quarter / "adapter_model.safetensors"), trained)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)


def test_overwrite_output_dir_starts_over(tiny_gpt2, wikidoc_small, tmp_path, caplog):
    out = tmp_path / "run"
    main(recipe_args(tiny_gpt2, wikidoc_small, out, "--max_steps", "1", "--save_steps", "1"))
    (out / "eval").mkdir()  # a report of the old run goes with it
    main(recipe_args(tiny_gpt2, wikidoc_small, out, "--overwrite_output_dir", "true", "--max_steps", "2"))
    assert "deleting" in caplog.text and "checkpoint-1" in caplog.text  # what was deleted is logged
    assert not (out / "eval").exists() and not (out / "checkpoint-1").exists()
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["global_step"] == 2
    assert manifest["final_train_loss"] is not None


def test_first_and_last_steps_are_logged_whatever_logging_steps_is(tiny_gpt2, wikidoc_small, tmp_path):
    """A CPU-sized run of a GPU-sized recipe (3 steps, logging every 50) logs step 1 and its last step."""
    out = tmp_path / "run"
    trainer = main(recipe_args(tiny_gpt2, wikidoc_small, out, "--max_steps", "3", "--logging_steps", "50"))
    logged = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    assert [step for step, _ in logged] == [1, 3]
    assert json.loads((out / "run_manifest.json").read_text())["final_train_loss"] == logged[-1][1]


def test_wrong_lora_targets_fail_before_training(tiny_gpt2, wikidoc_small, tmp_path):
    # The seed notebook's Llama targets on GPT-2
    args = recipe_args(tiny_gpt2, wikidoc_small, tmp_path / "run", "--lora_target_modules", "q_proj", "v_proj")
    with pytest.raises(MedsftError) as info:
        main(args)
    message = str(info.value)
    assert "\n" not in message
    assert "q_proj, v_proj not found" in message and "valid names: c_attn, c_fc, c_proj" in message
    assert not (tmp_path / "run").exists()


def test_missing_dataset_file_is_a_clear_error(tiny_gpt2, tmp_path):
    with pytest.raises(MedsftError, match="data file not found: .*nope.json"):
        main(recipe_args(tiny_gpt2, str(tmp_path / "nope.json"), tmp_path / "run"))


def test_missing_model_path_is_a_clear_error(wikidoc_small, tmp_path):
    with pytest.raises(MedsftError, match="GGUF model file not found"):
        main(recipe_args(str(tmp_path / "model.gguf"), wikidoc_small, tmp_path / "run"))


def test_cli_reports_errors_in_one_line(tmp_path):
    import subprocess
    import sys

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model_name_or_path: gpt2\nlearning_rat: 1e-4\n")
    proc = subprocess.run([sys.executable, "-m", "medsft.train", str(recipe)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"medsft.train: error: {recipe}: unknown key(s) learning_rat; run with --help for the accepted arguments"
    )
    assert "Traceback" not in proc.stderr


def test_unreachable_hub_model_is_a_clear_error(wikidoc_small, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MedsftError, match="could not load model config 'gpt2'.*pass a local path instead"):
        main(recipe_args("gpt2", wikidoc_small, tmp_path / "run"))


def test_tensorboard_is_the_default_and_its_absence_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    from medsft.configs.training import MedSFTConfig

    assert MedSFTConfig(output_dir=str(tmp_path)).report_to == ["tensorboard"]
    assert MedSFTConfig(output_dir=str(tmp_path), report_to="none").report_to == []
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("tensorboard") else real(name, *a)
    )
    with pytest.raises(MedsftError, match="pip install tensorboard"):
        MedSFTConfig(output_dir=str(tmp_path))


def test_return_freed_memory_false_leaves_the_allocator_alone(tiny_gpt2, wikidoc_small, tmp_path, monkeypatch):
    """The recipes' memory setting reaches the allocator call (checked before anything about the run is read)."""
    calls = []
    monkeypatch.setattr("medsft.train.return_freed_memory", lambda: calls.append(1))
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")  # refused before anything is trained
    for setting, expected in (("false", []), ("true", [1])):
        with pytest.raises(MedsftError, match="not a medsft run"):
            main(recipe_args(tiny_gpt2, wikidoc_small, out, "--return_freed_memory", setting))
        assert calls == expected
