"""``python -m medsft.generate``: base vs fine-tuned continuations from a run directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from medsft.errors import MedsftError
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
    assert "base vs fine-tuned" in out.getvalue()
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
