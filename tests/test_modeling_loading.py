"""QLoRA: NF4 with double quantization from the recipe, and the bitsandbytes CPU eval-mode regression."""

from __future__ import annotations

from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from peft import get_peft_model

from medsft.configs.parser import parse_args
from medsft.configs.training import MedModelConfig, MedScriptArguments, MedSFTConfig
from medsft.modeling.loading import load_model
from medsft.modeling.lora import build_lora_config
from medsft.modeling.source import resolve_model_source

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.parametrize("recipe", ["wikidoc_qlora.yaml", "wikidoc_qlora_smollm2.yaml"])
def test_recipe_builds_nf4_double_quant_model(recipe, tiny_gpt2, tiny_llama, tmp_path):
    model_path = tiny_gpt2 if "smollm2" not in recipe else tiny_llama
    argv = [str(RECIPES / recipe), "--model_name_or_path", model_path, "--output_dir", str(tmp_path)]
    if "smollm2" in recipe:
        argv += ["--dataset_format", "chat"]
    _, _, model_args, _ = parse_args((MedScriptArguments, MedSFTConfig, MedModelConfig), argv)
    model = load_model(resolve_model_source(model_path), model_args, for_training=True)
    q = model.config.quantization_config
    q = q if isinstance(q, dict) else q.to_dict()
    assert q["load_in_4bit"] and q["bnb_4bit_quant_type"] == "nf4" and q["bnb_4bit_use_double_quant"]
    assert q["bnb_4bit_compute_dtype"] == "float32"
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(layer.weight.quant_state.nested for layer in layers)
    assert all(layer.support_avx512bf16_for_cpu is False for layer in layers)  # the CPU guard is on


def lora_grads(model, batch) -> torch.Tensor:
    model.train()
    model.zero_grad()
    model(**batch, labels=batch["input_ids"], use_cache=False).loss.backward()
    return torch.cat([p.grad.flatten().clone() for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_gradients_after_eval_forward_equal_gradients_before(arch, tiny_gpt2, tiny_llama, gpt2_tokenizer):
    path = tiny_gpt2 if arch == "gpt2" else tiny_llama
    model_args = MedModelConfig(model_name_or_path=path, load_in_4bit=True, use_peft=True, lora_dropout=0.0)
    model = load_model(resolve_model_source(path), model_args, for_training=True)
    model = get_peft_model(model, build_lora_config(model_args, path))
    torch.manual_seed(0)
    for name, param in model.named_parameters():  # non-zero B so that A gets gradients too
        if "lora_B" in name:
            param.data = torch.randn_like(param) * 0.01
    batch = gpt2_tokenizer(["Patient presents with fever and a persistent cough for three days."], return_tensors="pt")

    before = lora_grads(model, batch)
    assert before.abs().sum() > 0
    # What evaluation during training and generation do: eval-mode forwards
    model.eval()
    with torch.no_grad():
        model(**batch)
        model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=gpt2_tokenizer.eos_token_id)
    after = lora_grads(model, batch)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)


def test_weights_are_read_not_mapped_and_are_the_same(tiny_llama, monkeypatch):
    """medsft reads safetensors with pread (no file pages in the process's memory); the weights are unchanged."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, modeling_utils

    backends = []

    def spy(filename, framework, device="cpu", backend=None):
        backends.append(backend)
        return safe_open(filename, framework, device=device, backend=backend)

    monkeypatch.setattr(modeling_utils, "safe_open", spy)
    model_args = MedModelConfig(model_name_or_path=tiny_llama, dtype="float32")
    ours = load_model(resolve_model_source(tiny_llama), model_args, for_training=False)
    assert backends == ["pread"] and modeling_utils.safe_open is spy  # asked for, and put back afterwards
    mapped = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    assert backends == ["pread", "mmap"]  # transformers' own choice, outside medsft's load
    assert ours.state_dict().keys() == mapped.state_dict().keys()
    assert all(torch.equal(v, mapped.state_dict()[k]) for k, v in ours.state_dict().items())
