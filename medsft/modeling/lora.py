"""LoRA targets: per-architecture defaults, presets, and a check of user-named targets before training starts.

GPT-2 keeps its projections in ``Conv1D`` layers with names of its own (``c_attn`` = fused q/k/v, ``c_proj`` =
attention output *and* MLP output, ``c_fc`` = MLP input), so the Llama names many notebooks copy (``q_proj``,
``v_proj``) match nothing on it. peft would only say so after the model is loaded; medsft checks the names against the
model's real modules (built on the meta device, no weights) and fails in one line listing the valid names.
"""

from __future__ import annotations

import dataclasses

import torch
from peft import LoraConfig
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D
from trl import get_peft_config

from medsft.core.errors import MedsftError, hub_errors

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "granite")
_LLAMA_ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]

# model_type -> preset -> peft target_modules (a list of module-name suffixes, a regex string, or "all-linear")
TARGET_PRESETS: dict[str, dict[str, list[str] | str]] = {
    "gpt2": {
        "default": ["c_attn", "c_proj"],  # c_proj matches both attn.c_proj and mlp.c_proj
        "attention": r".*\.attn\.(c_attn|c_proj)",
        "all-linear": "all-linear",  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    },
    **{
        model_type: {"default": _LLAMA_ATTENTION, "attention": _LLAMA_ATTENTION, "all-linear": "all-linear"}
        for model_type in LLAMA_LIKE
    },
}

_LORA_LAYER_TYPES: tuple[type, ...] = (torch.nn.Linear, Conv1D, torch.nn.Embedding)


def meta_model(model_path: str, revision: str = "main") -> torch.nn.Module:
    """The model's module tree without weights (instant, no memory), for checking names before loading."""
    with hub_errors("model config", model_path):
        config = AutoConfig.from_pretrained(model_path, revision=revision)
    # Under a DeepSpeed ZeRO-3 launch transformers builds models inside deepspeed.zero.Init and re-initialises their
    # weights, which fails on the meta device (Llama's rotary inv_freq: "Cannot copy out of meta tensor"); this tree
    # is only read, never trained, so it is built as without DeepSpeed.
    from transformers.integrations import deepspeed as hf_deepspeed

    zero3, hf_deepspeed._hf_deepspeed_config_weak_ref = hf_deepspeed._hf_deepspeed_config_weak_ref, None
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = zero3


def lora_layer_names(model: torch.nn.Module) -> dict[str, type]:
    """Full names of the layers LoRA can adapt (Linear, Conv1D, Embedding; quantized Linear4bit is a Linear), minus
    the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        name: type(module)
        for name, module in model.named_modules()
        if isinstance(module, _LORA_LAYER_TYPES) and module is not head and name
    }


def resolve_targets(model: torch.nn.Module, target_modules: list[str] | str | None, preset: str) -> list[str] | str:
    """Return peft ``target_modules``: the user's names after checking them, or the architecture's preset."""
    model_type = model.config.model_type
    layers = lora_layer_names(model)
    if target_modules is None:
        if model_type not in TARGET_PRESETS:
            if preset == "all-linear":
                return "all-linear"
            raise MedsftError(
                f"no default LoRA targets for model_type '{model_type}': set --lora_target_modules (valid names: "
                f"{', '.join(sorted({n.rsplit('.', 1)[-1] for n in layers}))}) or --lora_target_preset all-linear"
            )
        return TARGET_PRESETS[model_type][preset]
    if isinstance(target_modules, str):  # "all-linear" or a regex: peft's own semantics, nothing to check by name
        return target_modules
    # peft matches a name when a module's full name equals it or ends with "." + name
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in layers)]
    if missing:
        # Embeddings are accepted as targets but not suggested: the names users mean are the projections
        valid = sorted({n.rsplit(".", 1)[-1] for n, t in layers.items() if not issubclass(t, torch.nn.Embedding)})
        raise MedsftError(
            f"LoRA target module(s) {', '.join(missing)} not found in {type(model).__name__} "
            f"(model_type '{model_type}'); valid names: {', '.join(valid)}"
        )
    return list(target_modules)


def targets_conv1d(model: torch.nn.Module, target_modules: list[str] | str) -> bool:
    """Whether any targeted layer is a GPT-2 ``Conv1D`` (weights stored transposed, i.e. fan_in x fan_out)."""
    layers = lora_layer_names(model)
    if target_modules == "all-linear":
        return any(t is Conv1D for t in layers.values())
    if isinstance(target_modules, str):
        import re

        return any(t is Conv1D and re.fullmatch(target_modules, n) for n, t in layers.items())
    return any(t is Conv1D and any(n == s or n.endswith("." + s) for s in target_modules) for n, t in layers.items())


def build_lora_config(model_args, model_path: str) -> LoraConfig | None:
    """TRL's ``get_peft_config`` (every ``--lora_*`` flag, ``--lora_target_parameters`` too), with medsft's checked
    targets (or the architecture's preset) and the right ``fan_in_fan_out``.

    ``fan_in_fan_out`` must be True for GPT-2's ``Conv1D`` in full/half precision, but False under 4-bit: when it
    quantizes, transformers replaces Conv1D with a transposed ``Linear4bit``, which peft's bnb layers treat as an
    ordinary Linear. A wrong value only shows when the adapter is merged (tests/test_modeling_lora.py checks that).
    """
    config = get_peft_config(model_args)  # TRL's own mapping of ModelConfig to LoraConfig
    if config is None:
        return None
    model = meta_model(model_path, model_args.model_revision)
    targets = resolve_targets(model, model_args.lora_target_modules, model_args.lora_target_preset)
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    # replace() reruns LoraConfig's own checks on the checked targets
    return dataclasses.replace(
        config, target_modules=targets, fan_in_fan_out=targets_conv1d(model, targets) and not quantized
    )


def scale_adapter(model: torch.nn.Module, strength: float) -> tuple[float, float]:
    """Multiply a PEFT model's LoRA update by ``strength``, in memory and in the config it saves.

    The layers' scaling (alpha/r, or alpha/sqrt(r) with rsLoRA) is multiplied, and so are ``lora_alpha`` and every
    ``alpha_pattern`` entry of the adapter's config, so the ``adapter_config.json`` it saves gives the same model in
    any PEFT loader, with the trained weights untouched. Rows trained through ``trainable_token_indices`` (added
    tokens) are new embeddings with no base value to move towards: they stay as trained.

    Parameters:
        model: a ``PeftModel`` (or a wrapper of one) with one LoRA adapter.
        strength: the factor; 1 changes nothing.

    Returns:
        ``lora_alpha`` before and after.
    """
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    peft_model = next((module for module in model.modules() if isinstance(module, PeftModel)), None)
    if peft_model is None:
        raise MedsftError("adapter_strength needs a LoRA adapter (use_peft), but the model has none")
    config = peft_model.peft_config[peft_model.active_adapter]
    before = config.lora_alpha
    if strength == 1:
        return before, before
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            module.scale_layer(strength)
    config.lora_alpha = _times(before, strength)
    config.alpha_pattern = {name: _times(alpha, strength) for name, alpha in (config.alpha_pattern or {}).items()}
    return before, config.lora_alpha


def _times(alpha: float, strength: float) -> float:
    scaled = alpha * strength
    return int(scaled) if float(scaled).is_integer() else scaled  # 128 x 0.5 is saved as 64, as a user would write it
