"""Padding-free packing through the real trainer path: no attention across examples, and EOS is learned."""

from __future__ import annotations

import pytest
import torch
from trl import SFTTrainer

from medsft.configs.training import MedSFTConfig
from medsft.data.wikidoc import load_wikidoc, to_chat, to_instruction
from medsft.modeling.loading import load_tokenizer
from medsft.modeling.source import resolve_model_source


def packed_trainer(model_path: str, data_path: str, tmp_path, fmt) -> SFTTrainer:
    from transformers import AutoModelForCausalLM

    source = resolve_model_source(model_path)
    tokenizer = load_tokenizer(source, need_chat_template=True)
    raw, _ = load_wikidoc(data_path, validation_size=0.0)
    data = raw["train"].select(range(12)).map(fmt, remove_columns=raw["train"].column_names)
    args = MedSFTConfig(
        output_dir=str(tmp_path), packing=True, max_length=512, per_device_train_batch_size=4,
        gradient_checkpointing=False, report_to="none", seed=0,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_path)
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)


@pytest.mark.parametrize(("arch", "fmt"), [("gpt2", to_instruction), ("gpt2", to_chat), ("llama", to_chat)])
def test_packed_loss_equals_token_weighted_loss_of_examples(arch, fmt, tiny_gpt2, tiny_llama, wikidoc_small, tmp_path):
    trainer = packed_trainer(tiny_gpt2 if arch == "gpt2" else tiny_llama, wikidoc_small, tmp_path, fmt)
    batch = next(iter(trainer.get_train_dataloader()))
    # Padding-free: one row holding several examples, positions restarting at each example
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) >= 3
    ends = starts[1:] + [batch["input_ids"].shape[1]]
    model = trainer.model.train()
    with torch.no_grad():
        packed = trainer.compute_loss(model, dict(batch)).item()
        total_nll, total_tokens = 0.0, 0
        for start, end in zip(starts, ends):
            ids, labels = batch["input_ids"][:, start:end], batch["labels"][:, start:end]
            n = int((labels[:, 1:] != -100).sum())
            total_nll += model(input_ids=ids, labels=labels, use_cache=False).loss.item() * n
            total_tokens += n
    assert packed == pytest.approx(total_nll / total_tokens, abs=1e-4)

    # Logits per example equal the example run alone (random tiny models barely move the loss when attention leaks,
    # the logits show it). The check can fail: with a KV cache transformers skips the per-example mask.
    inputs = {k: batch[k] for k in ("input_ids", "position_ids")}
    with torch.no_grad():
        packed_logits = model(**inputs, use_cache=False).logits[0]
        leaky_logits = model(**inputs, use_cache=True).logits[0]
        alone = [model(input_ids=batch["input_ids"][:, s:e], use_cache=False).logits[0] for s, e in zip(starts, ends)]
    torch.testing.assert_close(packed_logits, torch.cat(alone), atol=1e-4, rtol=1e-4)
    assert (leaky_logits - torch.cat(alone)).abs().max() > 1e-2


@pytest.mark.parametrize("fmt", [to_instruction, to_chat])
def test_eos_is_learned_with_pad_equal_to_eos(fmt, tiny_gpt2, wikidoc_small, tmp_path):
    trainer = packed_trainer(tiny_gpt2, wikidoc_small, tmp_path, fmt)
    tokenizer = trainer.processing_class
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # GPT-2 has no pad token
    batch = next(iter(trainer.get_train_dataloader()))
    examples = int((batch["position_ids"][0] == 0).sum())
    eos_as_label = int((batch["labels"] == tokenizer.eos_token_id).sum())
    assert eos_as_label == examples  # every example's answer ends with a trained EOS
