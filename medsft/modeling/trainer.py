"""The one trainer change medsft needs on top of TRL's ``SFTTrainer``, and the callback that logs a run's last step."""

from __future__ import annotations

from transformers import Trainer, TrainerCallback
from trl import SFTTrainer


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
