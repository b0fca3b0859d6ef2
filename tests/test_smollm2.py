"""The real SmolLM2-135M-Instruct from its GGUF file: cached conversion and a few QLoRA steps of its recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsft.configs.training import MedModelConfig
from medsft.modeling import source as model_module
from medsft.modeling.adapters import load_adapter
from medsft.modeling.loading import load_model
from medsft.modeling.source import resolve_model_source
from medsft.train import main
from tests.conftest import SMOLLM2_GGUF, recipe_argv


@pytest.mark.slow
def test_gguf_is_converted_once_and_reused(gguf_cache, monkeypatch):
    first = resolve_model_source(str(SMOLLM2_GGUF), gguf_cache)
    assert first.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and len(first.gguf_sha256) == 64
    assert (Path(first.path) / "model.safetensors").is_file()
    assert first.gguf_sha256[:16] in first.path  # keyed by the file's hash

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(model_module, "_convert_gguf", no_conversion)
    assert resolve_model_source(str(SMOLLM2_GGUF), gguf_cache).path == first.path


@pytest.mark.slow
def test_smollm2_recipe_trains_from_gguf_and_adapter_reloads(gguf_cache, wikidoc_small, tmp_path):
    out = tmp_path / "run"
    trainer = main(
        [
            *recipe_argv("wikidoc_qlora_smollm2", str(SMOLLM2_GGUF), out, quick=False),
            "--gguf_cache_dir", gguf_cache, "--dataset_name", wikidoc_small, "--max_steps", "2", "--max_length", "128",
            "--per_device_train_batch_size", "1",
        ]
    )  # fmt: skip
    assert (out / "adapter_model.safetensors").is_file()
    tokenizer = trainer.processing_class
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    batch = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What causes asthma?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )  # fmt: skip
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**batch, use_cache=False).logits
    model_args = MedModelConfig(model_name_or_path=str(SMOLLM2_GGUF), load_in_4bit=True, use_bnb_nested_quant=True,
                                use_peft=True)  # fmt: skip
    base = load_model(resolve_model_source(str(SMOLLM2_GGUF), gguf_cache), model_args, for_training=False)
    reloaded = load_adapter(base, str(out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch, use_cache=False).logits, expected, atol=1e-4, rtol=1e-4)
