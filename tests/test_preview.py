"""``python -m medsft.preview``: the tokens and trained-token masks it shows are the ones TRL trains on."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from datasets import Dataset
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from medsft.data import clinical_notes, medquad, pubmedqa
from medsft.data.lengths import tokenize_for_training
from medsft.modeling.loading import DEFAULT_CHAT_TEMPLATE, add_special_tokens, fit_embeddings
from medsft.preview import main
from tests.conftest import GPT2_TOKENIZER, MEDQUAD_DIR, PUBMEDQA_DIR

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _examples(fmt: str) -> list[dict]:
    if fmt in ("pubmedqa-instruction", "pubmedqa-chat"):
        rows = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))[0]["train"].select(range(3))
        formatter = pubmedqa.to_instruction if fmt.endswith("instruction") else pubmedqa.to_chat
        return [formatter(r, long_answer=True) for r in rows]
    if fmt == "notes-text":
        return [clinical_notes.to_text(n) for n in clinical_notes.generate_notes(3)]
    rows = medquad.load_medquad(str(MEDQUAD_DIR / "1_CancerGov_QA"), validation_size=0)[0]["train"].select(range(3))
    return [medquad.to_special_tokens(r) for r in rows]


@pytest.mark.parametrize("fmt", ["pubmedqa-instruction", "pubmedqa-chat", "notes-text", "medquad-special"])
def test_preview_masks_equal_trl_tokenization(fmt, tiny_gpt2, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    if fmt == "medquad-special":
        add_special_tokens(tokenizer, medquad.SPECIAL_TOKENS)
        fit_embeddings(model, len(tokenizer))
    examples = _examples(fmt)
    args = SFTConfig(output_dir=str(tmp_path), packing=False, max_length=None, report_to="none", bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tokenizer)
    for example, tokenized in zip(examples, trainer.train_dataset, strict=True):
        ids, trained = tokenize_for_training(example, tokenizer)
        assert ids == tokenized["input_ids"]
        # TRL folds its completion mask into labels (-100 = no loss); a text example has no labels column
        labels = tokenized.get("labels") or ids
        assert trained == [label != -100 for label in labels]
        assert 0 < sum(trained) <= len(ids)


def test_preview_command_shows_counts_and_lengths(tmp_path):
    out = io.StringIO()
    shown = main(
        [
            "preview",
            str(RECIPES / "pubmedqa_lora.yaml"),
            "--dataset_name",
            str(PUBMEDQA_DIR),
            "--model_name_or_path",
            str(GPT2_TOKENIZER),
            "--num_examples",
            "2",
            "--max_length",
            "256",
        ],  # fmt: skip
        console=Console(file=out, width=120),
    )
    text = out.getvalue()
    assert "pubmedqa: read 1000, kept 1000 (train 450, validation 50, test 500); dropped: none" in text
    assert "decontamination: {'policy': 'error', 'overlapping_rows': 0, 'test_set': 'pubmedqa test set'}" in text
    assert "example 1:" in text and "example 2:" not in text
    # the truncated count is what tokenizing every example gives, independently of the preview
    from transformers import GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast.from_pretrained(GPT2_TOKENIZER)
    rows = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))[0]["train"]
    lengths = [
        len(tokenizer(pubmedqa.lm_eval_prompt(r) + " " + r["final_decision"] + tokenizer.eos_token)["input_ids"])
        for r in rows
    ]
    assert shown["lengths"] == lengths
    over = sum(n > 256 for n in lengths)
    assert shown["over"] == over and f"{over} ({100 * over / 450:.1f}%)" in text
    # an answer word is the only trained text: " yes"/" no"/" maybe" + EOS
    for ids, trained in shown["shown"]:
        assert tokenizer.decode([i for i, t in zip(ids, trained, strict=True) if t]).strip() in (
            "yes<|endoftext|>",
            "no<|endoftext|>",
            "maybe<|endoftext|>",
        )
