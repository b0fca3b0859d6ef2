"""LoRA targets and fan_in_fan_out, checked by what the adapter computes rather than by warnings."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

from medsft.configs.training import MedModelConfig
from medsft.core.errors import MedsftError
from medsft.modeling.adapters import load_adapter
from medsft.modeling.loading import guard_bnb_cpu_4bit, load_model
from medsft.modeling.lora import build_lora_config, meta_model, resolve_targets, scale_adapter
from medsft.modeling.source import resolve_model_source


def lora_config(model_path: str, **kwargs):
    return build_lora_config(MedModelConfig(model_name_or_path=model_path, use_peft=True, **kwargs), model_path)


def randomize_lora(model: torch.nn.Module) -> None:
    """LoRA B starts at zero (a no-op adapter); give A and B values so the delta is visible in the logits."""
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = torch.randn_like(param) * 0.1


def test_gpt2_default_targets_cover_attention_and_mlp_projection(tiny_gpt2):
    config = lora_config(tiny_gpt2)
    assert sorted(config.target_modules) == ["c_attn", "c_proj"]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2), config)
    adapted = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A"))
    # c_proj matches both attn.c_proj and mlp.c_proj; c_fc is not targeted
    assert adapted == [f"transformer.h.{i}.{m}" for i in (0, 1) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj")]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("attention", ["attn.c_attn", "attn.c_proj"]),
        ("all-linear", ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]),
    ],
)
def test_gpt2_presets(tiny_gpt2, preset, expected):
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_gpt2), lora_config(tiny_gpt2, lora_target_preset=preset)
    )
    adapted = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A"))
    assert adapted == sorted(f"transformer.h.{i}.{m}" for i in (0, 1) for m in expected)


def test_llama_default_targets(tiny_llama):
    assert lora_config(tiny_llama).target_modules == {"q_proj", "k_proj", "v_proj", "o_proj"}
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama), lora_config(tiny_llama, lora_target_preset="all-linear")
    )
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_seed_notebook_targets_on_gpt2_fail_in_one_line(tiny_gpt2):
    with pytest.raises(MedsftError) as info:
        lora_config(tiny_gpt2, lora_target_modules=["q_proj", "v_proj"])
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith("valid names: c_attn, c_fc, c_proj")
    assert "q_proj, v_proj not found in GPT2LMHeadModel" in message


def test_suffix_and_single_target_names_are_accepted(tiny_gpt2):
    model = meta_model(tiny_gpt2)
    assert resolve_targets(model, ["attn.c_proj"], "default") == ["attn.c_proj"]
    # TRL turns a one-element list into a bare string, which peft would read as a whole-path regex
    assert lora_config(tiny_gpt2, lora_target_modules=["c_fc"]).target_modules == {"c_fc"}


def test_fan_in_fan_out_full_precision_merged_equals_unmerged(tiny_gpt2, gpt2_tokenizer):
    config = lora_config(tiny_gpt2, lora_target_preset="all-linear")
    assert config.fan_in_fan_out is True  # Conv1D stores weights as (in, out)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2), config).eval()
    randomize_lora(model)
    batch = gpt2_tokenizer(["Patient presents with fever and a persistent cough."], return_tensors="pt")
    with torch.no_grad():
        base = model.get_base_model()
        with model.disable_adapter():
            without = model(**batch).logits
        unmerged = model(**batch).logits
        merged = model.merge_and_unload()(**batch).logits
    assert (unmerged - without).abs().max() > 1e-2  # the adapter does change the output
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    del base


def test_wrong_fan_in_fan_out_is_caught_by_the_merge_check(tiny_gpt2, gpt2_tokenizer):
    """The check above can fail: with fan_in_fan_out wrong, merging transposes the delta of the square c_proj."""
    config = lora_config(tiny_gpt2, lora_target_modules=["attn.c_proj"])
    config.fan_in_fan_out = False
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2), config).eval()
    # peft corrects Conv1D to True on its own when building the layer; force the wrong value back
    for module in model.modules():
        if hasattr(module, "fan_in_fan_out") and hasattr(module, "lora_A"):
            module.fan_in_fan_out = False
    randomize_lora(model)
    batch = gpt2_tokenizer(["Patient presents with fever."], return_tensors="pt")
    with torch.no_grad():
        unmerged = model(**batch).logits
        merged = model.merge_and_unload()(**batch).logits
    assert (merged - unmerged).abs().max() > 1e-2


def test_fan_in_fan_out_4bit_delta_matches_layer_output(tiny_gpt2):
    """Under 4-bit, Conv1D becomes a transposed Linear4bit: the delta peft would merge must equal what it adds."""
    model_args = MedModelConfig(model_name_or_path=tiny_gpt2, load_in_4bit=True, use_peft=True)
    config = build_lora_config(model_args, tiny_gpt2)
    assert config.fan_in_fan_out is False
    base = load_model(resolve_model_source(tiny_gpt2), model_args, for_training=False)
    model = get_peft_model(base, config).eval()
    randomize_lora(model)
    checked = 0
    for name, layer in model.named_modules():
        if not (hasattr(layer, "lora_A") and "default" in layer.lora_A):
            continue
        x = torch.randn(3, layer.base_layer.in_features)
        with torch.no_grad():
            added = layer(x) - layer.base_layer(x)
            delta = layer.get_delta_weight("default")  # (out, in), transposed per fan_in_fan_out as merge uses it
        torch.testing.assert_close(added, x @ delta.T, atol=1e-4, rtol=1e-3, msg=name)
        checked += 1
    assert checked == 6  # c_attn, attn.c_proj, mlp.c_proj in two blocks


def test_guard_counts_4bit_layers(tiny_gpt2):
    model_args = MedModelConfig(model_name_or_path=tiny_gpt2, load_in_4bit=True, use_peft=True)
    model = load_model(resolve_model_source(tiny_gpt2), model_args, for_training=False)
    assert guard_bnb_cpu_4bit(model) == 8  # c_attn, attn.c_proj, c_fc, mlp.c_proj in two blocks


def test_every_trl_lora_flag_reaches_the_config(tiny_gpt2):
    """The config starts from TRL's get_peft_config: flags medsft does not touch (target parameters, DoRA, rsLoRA,
    modules to save) arrive as given; medsft sets only the checked targets and fan_in_fan_out."""
    config = lora_config(
        tiny_gpt2,
        lora_target_parameters=["transformer.h.0.mlp.c_fc.weight"],
        use_dora=True,
        use_rslora=True,
        lora_modules_to_save=["lm_head"],
        lora_r=4,
        lora_alpha=8,
    )
    assert config.target_parameters == ["transformer.h.0.mlp.c_fc.weight"]
    assert config.use_dora and config.use_rslora and config.modules_to_save == ["lm_head"]
    assert (config.r, config.lora_alpha) == (4, 8) and config.fan_in_fan_out


@pytest.mark.parametrize("rslora", [False, True])
def test_adapter_strength_scales_every_update_and_the_saved_config_reproduces_it(
    tiny_gpt2, gpt2_tokenizer, tmp_path, rslora
):
    """Each adapted layer adds exactly ``strength`` times its trained update (rsLoRA's alpha/sqrt(r) and a per-module
    alpha_pattern too), and the adapter_config.json it saves gives the same logits in a fresh PEFT load."""
    config = lora_config(tiny_gpt2, lora_target_preset="all-linear", lora_r=4, lora_alpha=8, use_rslora=rslora)
    config.alpha_pattern = {"c_fc": 3}  # one module family with its own alpha
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2), config).eval()
    randomize_lora(model)
    layers = {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    torch.manual_seed(2)
    inputs = {
        name: torch.randn(3, m.base_layer.weight.shape[0 if m.fan_in_fan_out else 1]) for name, m in layers.items()
    }
    with torch.no_grad():
        trained = {name: m(inputs[name]) - m.base_layer(inputs[name]) for name, m in layers.items()}
        assert scale_adapter(model, 0.25) == (8, 2)
        for name, m in layers.items():
            torch.testing.assert_close(m(inputs[name]) - m.base_layer(inputs[name]), 0.25 * trained[name], msg=name)
    assert model.peft_config["default"].alpha_pattern == {"c_fc": 0.75}
    assert len(layers) == 8 and all(trained[n].abs().max() > 1e-3 for n in layers)  # every update is really there

    batch = gpt2_tokenizer(["Patient presents with fever and a persistent cough."], return_tensors="pt")
    with torch.no_grad():
        scaled = model(**batch).logits
        with model.disable_adapter():
            base_logits = model(**batch).logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_gpt2), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, scaled)
    assert (scaled - base_logits).abs().max() > 1e-3


def test_adapter_strength_one_changes_nothing_and_a_model_without_adapter_is_refused(tiny_gpt2):
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2), lora_config(tiny_gpt2))
    scaling = [dict(m.scaling) for m in model.modules() if isinstance(m, LoraLayer)]
    assert len(scaling) == 6 and scale_adapter(model, 1) == (model.peft_config["default"].lora_alpha,) * 2
    assert [dict(m.scaling) for m in model.modules() if isinstance(m, LoraLayer)] == scaling
    with pytest.raises(MedsftError, match="use_peft"):
        scale_adapter(AutoModelForCausalLM.from_pretrained(tiny_gpt2), 0.5)
