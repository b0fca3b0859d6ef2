"""QLoRA's frozen embeddings and LM head in their checkpoint's 16 bits: the same losses and gradients, less memory."""

from __future__ import annotations

import logging

import pytest
import torch
from peft import LoraConfig, get_peft_model

from medsft.modeling import frozen_16bit
from medsft.modeling.frozen_16bit import store_frozen_embeddings_16bit


def _model(arch: str, tie: bool, bf16_values: bool):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=300, tie_word_embeddings=tie))
    else:
        config = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=300, tie_word_embeddings=tie)  # fmt: skip
        model = LlamaForCausalLM(config)
    if bf16_values:  # what a bfloat16 checkpoint loaded in float32 holds
        for param in model.parameters():
            param.data = param.data.to(torch.bfloat16).float()
    targets = ["c_attn"] if arch == "gpt2" else ["q_proj", "v_proj"]
    model = get_peft_model(model, LoraConfig(r=4, target_modules=targets, lora_dropout=0.0))
    for name, param in model.named_parameters():  # non-zero B so that every LoRA weight gets a gradient
        if "lora_B" in name:
            param.data = torch.randn_like(param) * 0.1
    return model.eval()


def _loss_and_grads(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    model.zero_grad()
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(1))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    return out.loss.detach(), out.logits.detach(), grads


@pytest.mark.parametrize("arch,tie", [("gpt2", True), ("llama", False), ("llama", True)])
def test_same_loss_logits_and_gradients_at_half_the_embedding_memory(arch, tie, monkeypatch):
    monkeypatch.setattr(frozen_16bit, "HEAD_CHUNK_ROWS", 128)  # several chunks over the 300-token vocabulary
    reference, halved = _model(arch, tie, bf16_values=True), _model(arch, tie, bf16_values=True)
    before = sum(p.numel() * p.element_size() for p in halved.parameters())
    saved, what = store_frozen_embeddings_16bit(halved)

    after = sum(p.numel() * p.element_size() for p in halved.parameters())
    assert saved > 0 and before - after == saved
    head = halved.get_output_embeddings()
    assert head.weight.dtype == torch.bfloat16 and halved.get_input_embeddings().weight.dtype == torch.bfloat16
    assert "bfloat16" in what and ("lm_head" in what or tie)
    expected, got = _loss_and_grads(reference), _loss_and_grads(halved)
    assert got[1].dtype == torch.float32  # computed in float32 all the way
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    assert head.weight.grad is None  # frozen stays frozen


def test_values_that_are_not_16bit_and_trained_matrices_are_left_alone():
    model = _model("llama", tie=False, bf16_values=False)  # float32 values (e.g. dequantized GGUF weights)
    assert store_frozen_embeddings_16bit(model) == (0, "")
    assert all(p.dtype == torch.float32 for p in model.parameters())

    model = _model("llama", tie=False, bf16_values=True)
    model.get_output_embeddings().weight.requires_grad_(True)
    saved, what = store_frozen_embeddings_16bit(model)
    assert "embed_tokens" in what and "lm_head" not in what
    assert model.get_output_embeddings().weight.dtype == torch.float32


@pytest.fixture(scope="module")
def tiny_llama_bf16(tmp_path_factory, gpt2_tokenizer) -> str:
    """A tiny Llama saved in bfloat16, as most Hub checkpoints are (untied embeddings, as TinyLlama's)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(gpt2_tokenizer), max_position_embeddings=1024,
                         bos_token_id=gpt2_tokenizer.bos_token_id, eos_token_id=gpt2_tokenizer.eos_token_id,
                         tie_word_embeddings=False)  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-llama-bf16")
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    gpt2_tokenizer.save_pretrained(path)
    return str(path)


def test_qlora_training_is_unchanged_and_says_what_it_kept(
    tiny_llama_bf16, wikidoc_small, tmp_path, caplog, monkeypatch
):
    from medsft.train import main as train
    from tests.conftest import recipe_argv

    args = ("--dataset_name", wikidoc_small, "--max_steps", "3", "--max_length", "128", "--dataset_format", "chat",
            "--logging_steps", "1")  # fmt: skip
    caplog.set_level(logging.INFO)
    halved = train(recipe_argv("wikidoc_qlora_smollm2", tiny_llama_bf16, tmp_path / "halved", *args))
    assert "frozen model.embed_tokens (bfloat16), lm_head (bfloat16) kept in their checkpoint's 16 bits" in caplog.text
    assert halved.model.get_output_embeddings().weight.dtype == torch.bfloat16

    monkeypatch.setattr("medsft.train.store_frozen_embeddings_16bit", lambda model: (0, ""))
    full = train(recipe_argv("wikidoc_qlora_smollm2", tiny_llama_bf16, tmp_path / "full", *args))
    assert full.model.get_output_embeddings().weight.dtype == torch.float32

    def losses(trainer) -> list[float]:
        return [e["loss"] for e in trainer.state.log_history if "loss" in e]

    assert len(losses(halved)) == 3
    assert losses(halved) == pytest.approx(losses(full), rel=1e-5)
