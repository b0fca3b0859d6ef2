"""The one trainer change medsft needs on top of TRL's ``SFTTrainer``, the callback that logs a run's last step, and
the check that a sharding config the launcher was given is really in effect."""

from __future__ import annotations

import os

from transformers import Trainer, TrainerCallback
from trl import SFTTrainer

from medsft.core.errors import MedsftError


class FullLogitsSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss comes from the model's own forward (full logits), used only with added tokens.

    Why: TRL 1.x computes the loss with a fused LM head that multiplies the hidden states by ``lm_head.weight``
    directly. With added special tokens, peft trains the new rows through ``trainable_token_indices``, which wraps the
    (tied) output embedding; the fused head bypasses that wrapper (TRL 1.16 fails on ``lm_head.bias``, and would
    otherwise score the new tokens with their untrained rows). The model's forward goes through the wrapper. TRL's
    labels (answer-only, packed ``position_ids``) are unchanged; only TRL's entropy/accuracy metrics are not logged.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs["use_cache"] = False  # the packed-sequence mask is only built without a KV cache
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


class LogFinalStep(TrainerCallback):
    """Log the loss at a run's last optimizer step, whatever ``logging_steps`` is.

    Without it a run shorter than ``logging_steps`` (or ending between two logs) records no loss for its last steps:
    ``run_manifest.json`` had ``final_train_loss: null`` for every CPU-sized run of a GPU-sized recipe.
    """

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            control.should_log = True
        return control


def check_sharding_engaged(trainer: Trainer) -> None:
    """Refuse a run whose launcher asked for FSDP or DeepSpeed when the Trainer did not engage it.

    Measured (accelerate 1.16, transformers 5.25, a machine without GPUs): ``accelerate launch --config_file
    accelerate_configs/fsdp.yaml`` with ``use_cpu: true`` starts the processes and sets ``ACCELERATE_USE_FSDP``, but
    accelerate enables FSDP only for GPU/accelerator process groups; on CPU it silently trains data-parallel, a full
    copy of the model in every process (tests/helpers/ddp_probe.py showed no sharded parameter). Someone who chose
    a sharding config because the model does not fit one device must hear it before training, not after.
    """
    asked = {
        "FSDP": os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true",
        "DeepSpeed": os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true",
    }
    engaged = {"FSDP": trainer.is_fsdp_enabled, "DeepSpeed": trainer.is_deepspeed_enabled}
    missing = [name for name, wanted in asked.items() if wanted and not engaged[name]]
    if missing:
        device = "CPU" if trainer.args.use_cpu or trainer.args.device.type == "cpu" else trainer.args.device.type
        raise MedsftError(
            f"the launch config asks for {missing[0]}, but accelerate did not enable it here (device: {device}; "
            f"accelerate shards with {missing[0]} only on GPUs/accelerators), so every process would train a full "
            "copy of the model; on CPU use accelerate_configs/multi_cpu.yaml (data-parallel), see "
            "accelerate_configs/README.md"
        )
