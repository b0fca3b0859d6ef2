"""Resuming a run: which changed settings a checkpoint's weights forbid, and which are only worth a warning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from medsft.core.errors import MedsftError
from medsft.data.io import read_json
from medsft.run_dir.checkpoints import checkpoint_layout
from medsft.run_dir.output_dir import OutputPlan
from medsft.run_dir.record import INVOCATION_FIELDS, SECRET_FIELDS, plain

# Settings that change nothing a resumed run computes (where logs and checkpoints go, how often, how it is shown)
_NO_EFFECT_FIELDS = {
    "output_dir", "logging_steps", "logging_first_step", "logging_dir", "logging_strategy", "report_to", "run_name",
    "disable_tqdm", "save_steps", "save_strategy", "save_total_limit", "push_to_hub", "hub_model_id",
    "hub_private_repo", "gguf_cache_dir", "dataloader_num_workers", "log_level",
}  # fmt: skip


# Settings the checkpoint's weights and optimizer state depend on: a resume that changes one is refused
WEIGHT_SETTINGS = (
    "model_name_or_path", "use_peft", "lora_r", "lora_alpha", "lora_target_modules", "lora_target_preset",
    "lora_modules_to_save", "use_dora", "use_rslora", "lora_task_type", "load_in_4bit", "load_in_8bit",
    "dataset_format", "model_revision",
)  # fmt: skip


# Optimizers whose state is the same (a checkpoint's optimizer.pt saved under one resumes under another). Any other
# change of ``optim`` is refused: the Trainer loads the old state into the new optimizer, which then fails at its first
# step deep inside (torch's SGD: ``KeyError: 'momentum'``; Adafactor: ``KeyError: 'beta1'``)
_SAME_OPTIMIZER_STATE = (
    {"adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused"},  # torch.optim.AdamW
    {"adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit"},  # bitsandbytes' 8-bit AdamW (paged or not)
)


def _same_optimizer_state(before, now) -> bool:
    before, now = str(before), str(now)
    return before == now or any(before in family and now in family for family in _SAME_OPTIMIZER_STATE)


def check_resume(plan: OutputPlan, source, peft_config, keys: set[str], *configs) -> dict[str, tuple]:
    """Refuse a resume whose settings change what the checkpoint's weights are (model, LoRA shape, format) or what its
    optimizer state is (another optimizer); return the other settings that differ from the run's ``recipe.yaml``
    (``{name: (recorded, now)}``), to warn about.

    The base model is compared by what it is (GGUF hash, weights fingerprint), not by the path it was given as.
    """
    checkpoint = Path(plan.resume_from)
    changed = changed_settings(plan.previous_recipe, keys, *configs) if plan.previous_recipe is not None else {}
    recorded = (plan.previous_manifest or {}).get("model") or {}
    model_differs = False
    if recorded.get("gguf_sha256") or recorded.get("fingerprint"):
        model_differs = (recorded.get("gguf_sha256"), recorded.get("fingerprint")) != (
            source.gguf_sha256,
            source.fingerprint,
        )
    elif recorded.get("name"):
        model_differs = Path(recorded["name"]).name != Path(source.name).name
    changed.pop("model_name_or_path", None)
    weight_changes = {k: v for k, v in changed.items() if k in WEIGHT_SETTINGS}
    if "optim" in changed and not _same_optimizer_state(*changed["optim"]):
        weight_changes["optim"] = changed["optim"]
    if model_differs:
        weight_changes = {"model_name_or_path": (recorded.get("name"), source.name), **weight_changes}
    # The checkpoint's own adapter_config.json is the last word on the adapter's shape (also for runs whose
    # recipe.yaml was not written when they stopped)
    adapter_config = checkpoint / "adapter_config.json"
    if adapter_config.is_file() and peft_config is not None:
        saved = read_json(adapter_config, what="adapter config")
        for flag, key, now_value in (
            ("lora_r", "r", peft_config.r),
            ("lora_alpha", "lora_alpha", peft_config.lora_alpha),
            ("lora_target_modules", "target_modules", peft_config.target_modules),
        ):
            if flag not in weight_changes and _comparable(plain(saved.get(key))) != _comparable(plain(now_value)):
                weight_changes[flag] = (plain(saved.get(key)), plain(now_value))
    elif checkpoint_layout(checkpoint) in ("plain", "FSDP (FULL_STATE_DICT)") and adapter_config.is_file() != (
        peft_config is not None
    ):  # (a sharded checkpoint has no adapter_config.json either way: the recipe comparison above decides)
        weight_changes.setdefault("use_peft", (adapter_config.is_file(), peft_config is not None))
    if weight_changes:
        differences = "; ".join(f"{k}: {old!r} in the run, {new!r} now" for k, (old, new) in weight_changes.items())
        raise MedsftError(
            f"cannot resume {checkpoint}: settings its weights or optimizer state depend on differ from the run's "
            f"({differences}); "
            "resume with the run's settings, or start a new run in another --output_dir"
        )
    return changed


def changed_settings(previous: dict, keys: set[str], *configs) -> dict[str, tuple]:
    """Settings of this invocation that differ from a run's ``recipe.yaml``: ``{name: (recorded, now)}``.

    A setting the recipe does not record had its default; only settings set on one side or the other are compared.
    """
    changed = {}
    for config in configs:
        for f in dataclasses.fields(config):
            name = f.name
            if name not in keys | set(previous) or name in SECRET_FIELDS | INVOCATION_FIELDS | _NO_EFFECT_FIELDS:
                continue
            now_value = plain(getattr(config, name))
            if name in previous:
                before = previous[name]
            elif f.default is not dataclasses.MISSING:
                before = plain(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                before = plain(f.default_factory())
            else:
                continue
            if _comparable(before) != _comparable(now_value):
                changed[name] = (before, now_value)
    return changed


def _comparable(value):
    # target module lists are sets to peft; one-element lists and bare strings are the same to medsft
    if isinstance(value, list):
        return sorted(map(str, value))
    if isinstance(value, str) and value not in ("all-linear",):
        return [value] if value else value
    return value


def check_checkpoint_layout(checkpoint: str | Path, launched: str) -> None:
    """Refuse to resume a checkpoint saved by another distributed engine than this launch's (``launched``: what
    ``medsft.modeling.sharding.launch_checkpoint_layout`` says).

    The Trainer reads FSDP checkpoints only under FSDP with the same state-dict type, DeepSpeed ones only under
    DeepSpeed; the other way round it failed deep inside (``FileNotFoundError: optimizer.bin``, ``ValueError:
    Checkpoint ... is only supported when using PyTorch FSDP``), after the run directory was already written.
    """
    saved = checkpoint_layout(checkpoint)
    if saved == launched:
        return
    runs = {"plain": "a run without FSDP or DeepSpeed", "DeepSpeed": "a DeepSpeed run"}
    how = {
        "plain": "without FSDP or DeepSpeed (one process, or accelerate_configs/multi_cpu.yaml or multi_gpu.yaml)",
        "DeepSpeed": "with the DeepSpeed config it was trained with",
    }
    fsdp_how = f"with accelerate_configs/fsdp.yaml (fsdp_state_dict_type: {saved.removeprefix('FSDP (')[:-1]})"
    raise MedsftError(
        f"cannot resume {checkpoint}: it was saved by {runs.get(saved, f'an {saved} run')} and this launch is "
        f"{runs.get(launched, f'an {launched} run')}; launch the resume {how.get(saved, fsdp_how)}"
    )
