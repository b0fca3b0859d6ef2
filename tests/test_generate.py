"""``python -m medsft.generate``: base vs fine-tuned continuations from a run directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from medsft.core.errors import MedsftError
from medsft.generate import main as generate
from tests.conftest import train_quickly

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PROMPT = "Patient presents with fever and a persistent cough"


@pytest.fixture(scope="module")
def notes_run(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("notes") / "run"
    return train_quickly(
        "clinical_notes_lora", tiny_gpt2, out, "--num_notes", "64", "--max_steps", "4", "--max_length", "128"
    )


def test_base_and_fine_tuned_side_by_side(notes_run, tiny_gpt2):
    out = io.StringIO()
    (row,) = generate([str(notes_run), "--prompt", PROMPT, "--max_new_tokens", "12"], console=Console(file=out))
    assert row["prompt"] == PROMPT and row["base"] != row["fine_tuned"]
    assert "base (float32, as the run was trained) vs fine-tuned" in out.getvalue()
    # the "base" column is the plain base model's greedy continuation
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = base.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert row["base"] == tokenizer.decode(expected[0, ids.shape[1] :], skip_special_tokens=True).strip()
    # greedy: repeatable
    again = generate(
        [str(notes_run), "--prompt", PROMPT, "--max_new_tokens", "12"], console=Console(file=io.StringIO())
    )
    assert again == [row]


def test_generate_errors(tmp_path):
    with pytest.raises(MedsftError, match="run directory not found"):
        generate([str(tmp_path / "none"), "--prompt", "x"])
    with pytest.raises(MedsftError, match="has no recipe.yaml"):
        generate([str(tmp_path), "--prompt", "x"])


def test_4bit_refused_for_a_full_fine_tune(notes_run, tmp_path):
    import shutil

    full = tmp_path / "full"
    shutil.copytree(notes_run, full)
    (full / "adapter_config.json").unlink()
    with pytest.raises(MedsftError, match="full fine-tuned model, not an adapter"):
        generate([str(full), "--prompt", "x", "--load_in_4bit", "true"])


def _greedy(model, tokenizer, text: str, n: int) -> str:
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_qlora_run_is_compared_on_its_4bit_base(tiny_gpt2, wikidoc_small, tmp_path):
    from medsft.configs.training import MedModelConfig
    from medsft.modeling.loading import load_model
    from medsft.modeling.source import resolve_model_source

    run = train_quickly(
        "wikidoc_qlora", tiny_gpt2, tmp_path / "run", "--dataset_name", wikidoc_small, "--max_steps", "2",
        "--max_length", "128",
    )  # fmt: skip
    prompt = "What are the symptoms of asthma?"
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    nf4 = MedModelConfig(model_name_or_path=tiny_gpt2, load_in_4bit=True, use_bnb_nested_quant=True, use_peft=True)
    base_4bit = load_model(resolve_model_source(tiny_gpt2), nf4, for_training=False).eval()
    base_fp32 = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    text = prompt  # the recipe's instruction format: the prompt as is
    expected_4bit, expected_fp32 = _greedy(base_4bit, tokenizer, text, 12), _greedy(base_fp32, tokenizer, text, 12)
    assert expected_4bit != expected_fp32  # otherwise this test could not tell the two bases apart

    out = io.StringIO()
    (row,) = generate([str(run), "--prompt", prompt, "--max_new_tokens", "12"], console=Console(file=out, width=300))
    assert row["base_precision"] == "4-bit NF4, nested, as the run was trained" and row["base"] == expected_4bit
    assert "base (4-bit NF4, nested, as the run was trained) vs fine-tuned" in out.getvalue()
    (row,) = generate(
        [str(run), "--prompt", prompt, "--max_new_tokens", "12", "--load_in_4bit", "false"],
        console=Console(file=io.StringIO()),
    )
    assert row["base_precision"] == "float32, as --load_in_4bit asked" and row["base"] == expected_fp32
