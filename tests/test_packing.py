"""Packed training through the real trainer path, in every layout: no attention across examples, EOS is learned."""

from __future__ import annotations

import pytest
import torch
from trl import SFTTrainer

from medsft.configs.training import MedSFTConfig
from medsft.data.wikidoc import load_wikidoc, to_chat, to_instruction
from medsft.modeling.loading import load_tokenizer
from medsft.modeling.packing import PACKED_LAYOUTS, apply_packed_layout
from medsft.modeling.source import resolve_model_source
from medsft.modeling.trainer import FullLogitsSFTTrainer

LAYOUTS = [layout for layout in PACKED_LAYOUTS if layout != "auto"]


def packed_trainer(
    model_path: str, data_path: str, tmp_path, fmt, layout: str, trainer_class: type[SFTTrainer] = SFTTrainer
) -> SFTTrainer:
    from transformers import AutoModelForCausalLM

    source = resolve_model_source(model_path)
    tokenizer = load_tokenizer(source, need_chat_template=True)
    raw, _ = load_wikidoc(data_path, validation_size=0.0)
    data = raw["train"].select(range(12)).map(fmt, remove_columns=raw["train"].column_names)
    args = MedSFTConfig(
        output_dir=str(tmp_path), packing=True, max_length=512, per_device_train_batch_size=4,
        gradient_checkpointing=False, report_to="none", seed=0,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation="sdpa")
    trainer = trainer_class(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    apply_packed_layout(trainer, layout)
    return trainer


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each example in one row: positions restart at 0 (a row-end pad is a 1-token segment)."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    return list(zip(starts, starts[1:] + [position_ids.shape[0]]))


# Every layout on GPT-2 (Conv1D) and a Llama-type model (GQA); TRL's own layout also on the instruction format
CASES = [("padding_free", "gpt2", to_instruction)] + [
    (layout, arch, to_chat) for layout in LAYOUTS for arch in ("gpt2", "llama")
]


@pytest.mark.parametrize(("layout", "arch", "fmt"), CASES)
def test_packed_loss_equals_token_weighted_loss_of_examples(
    layout, arch, fmt, tiny_gpt2, tiny_llama, wikidoc_small, tmp_path
):
    trainer = packed_trainer(tiny_gpt2 if arch == "gpt2" else tiny_llama, wikidoc_small, tmp_path, fmt, layout)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch  # the examples are told apart by position_ids alone
    if layout == "rows":
        assert batch["input_ids"].shape[0] == 4  # one row per packed bin
    else:
        assert batch["input_ids"].shape[0] == 1  # the batch concatenated into one row
    rows = [segments(row) for row in batch["position_ids"]]
    assert sum(end - start > 1 for row in rows for start, end in row) >= 3
    model = trainer.model.train()
    with torch.no_grad():
        packed = trainer.compute_loss(model, dict(batch)).item()
        total_nll, total_tokens = 0.0, 0
        for r, row in enumerate(rows):
            for start, end in row:
                ids, labels = batch["input_ids"][r : r + 1, start:end], batch["labels"][r : r + 1, start:end]
                n = int((labels[:, 1:] != -100).sum())
                if n:
                    total_nll += model(input_ids=ids, labels=labels, use_cache=False).loss.item() * n
                    total_tokens += n
    assert packed == pytest.approx(total_nll / total_tokens, abs=1e-4)
    # Every trained label is one the examples alone train: the first token of an example is never predicted from
    # the example before it (the loss normalisation of gradient accumulation counts the same labels)
    assert int((batch["labels"] != -100).sum()) == total_tokens
    assert all(int(batch["labels"][r, start]) == -100 for r, row in enumerate(rows) for start, _ in row)

    # Logits per example equal the example run alone (random tiny models barely move the loss when attention leaks,
    # the logits show it). The check can fail: with a KV cache transformers skips the per-example mask.
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        packed_logits = model(**inputs, use_cache=False).logits
        leaky_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).logits
        alone = torch.stack(
            [
                torch.cat(
                    [model(input_ids=batch["input_ids"][r : r + 1, s:e], use_cache=False).logits[0] for s, e in row]
                )
                for r, row in enumerate(rows)
            ]
        )
    torch.testing.assert_close(packed_logits, alone, atol=1e-4, rtol=1e-4)
    assert (leaky_logits - alone).abs().max() > 1e-2


@pytest.mark.parametrize(("layout", "arch"), [("padding_free", "gpt2"), ("rows", "llama"), ("segments", "llama")])
def test_full_logits_loss_gradients_and_metrics_equal_the_fused_head(
    layout, arch, tiny_gpt2, tiny_llama, wikidoc_small, tmp_path, monkeypatch
):
    """The CPU loss head (the model's own logits) trains exactly what TRL's fused LM head trains, and logs the same
    training metrics (computed a few positions at a time, here 7, so the chunks' sums are checked too)."""
    monkeypatch.setattr("medsft.modeling.trainer.METRIC_CHUNK", 7)
    model_path = tiny_gpt2 if arch == "gpt2" else tiny_llama
    results = []
    for trainer_class in (SFTTrainer, FullLogitsSFTTrainer):
        trainer = packed_trainer(model_path, wikidoc_small, tmp_path, to_chat, layout, trainer_class)
        batch = next(iter(trainer.get_train_dataloader()))
        model = trainer.model.train()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=int((batch["labels"] != -100).sum()))
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()}
        results.append((loss.item(), grads, metrics))
    (fused_loss, fused_grads, fused_metrics), (full_loss, full_grads, full_metrics) = results
    assert full_loss == pytest.approx(fused_loss, abs=1e-5)
    assert full_grads.keys() == fused_grads.keys() and len(full_grads) > 10
    for name, grad in full_grads.items():
        torch.testing.assert_close(grad, fused_grads[name], atol=1e-5, rtol=1e-4)
    assert full_metrics.keys() == fused_metrics.keys() == {"entropy", "mean_token_accuracy", "num_tokens"}
    assert full_metrics["num_tokens"] == fused_metrics["num_tokens"] > 0
    for key in ("entropy", "mean_token_accuracy"):
        assert full_metrics[key] == pytest.approx(fused_metrics[key], abs=1e-4)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", [to_instruction, to_chat])
def test_eos_is_learned_with_pad_equal_to_eos(layout, fmt, tiny_gpt2, wikidoc_small, tmp_path):
    trainer = packed_trainer(tiny_gpt2, wikidoc_small, tmp_path, fmt, layout)
    tokenizer = trainer.processing_class
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # GPT-2 has no pad token
    batch = next(iter(trainer.get_train_dataloader()))
    examples = sum(end - start > 1 for row in batch["position_ids"] for start, end in segments(row))
    eos_as_label = int((batch["labels"] == tokenizer.eos_token_id).sum())
    assert eos_as_label == examples  # every example's answer ends with a trained EOS (row-end padding is no label)


def test_segment_attention_is_plain_sdpa_outside_packed_rows(tiny_llama):
    """The segment attention stays on for evaluation and generation: padded batches and the KV cache still work."""
    from transformers import AutoModelForCausalLM

    from medsft.modeling.packing import register_segment_attention

    reference = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa").eval()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation=register_segment_attention()).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, attention_mask=mask).logits, reference(ids, attention_mask=mask).logits)
        generated = model.generate(ids[:1], max_new_tokens=4, do_sample=False)
        assert generated.tolist() == reference.generate(ids[:1], max_new_tokens=4, do_sample=False).tolist()
