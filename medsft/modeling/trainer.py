"""How the loss reaches the vocabulary (TRL's fused LM head, or the model's own full logits), and the callbacks that
log a run's last step and make a resumed run follow its command."""

from __future__ import annotations

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState
from trl import SFTTrainer

LOSS_HEADS = ("auto", "fused", "full_logits")


def choose_loss_head(requested: str, on_gpu: bool, added_tokens: bool) -> tuple[str, str]:
    """``fused`` (TRL's ``SFTTrainer``) or ``full_logits`` (``FullLogitsSFTTrainer``), and why, for the run log.

    Parameters:
        requested: the recipe's ``loss_head`` (``auto``, ``fused`` or ``full_logits``).
        on_gpu: whether training runs on a CUDA device.
        added_tokens: whether the run trains added special tokens through peft (only the full logits see them).
    """
    if added_tokens:
        return "full_logits", "added special tokens are trained: only the model's own forward scores them"
    if requested != "auto":
        return requested, f"loss_head: {requested} was asked for"
    if on_gpu:
        return "fused", "GPU: TRL's chunked fused LM head (never builds the batch x vocabulary logits)"
    return "full_logits", "CPU: the model's own logits (TRL's chunked fused LM head measured slower on CPU)"


# Positions per chunk when the training metrics are computed from the full logits (~100 MB of float32 at 49k tokens)
METRIC_CHUNK = 512


class MedsftSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` without its draft model card: TRL writes ``output_dir/README.md`` at every checkpoint,
    over whatever is there (a user's notes on a run between pieces too), and names no base model for a local one
    ("a fine-tuned version of [None]"). ``medsft.push`` writes the run's card from its records."""

    def create_model_card(self, *args, **kwargs) -> None:
        return None


class FullLogitsSFTTrainer(MedsftSFTTrainer):
    """``SFTTrainer`` whose loss comes from the model's own forward (full logits) instead of TRL's fused LM head.

    Why: TRL 1.x computes the loss with a chunked fused LM head that multiplies the hidden states by
    ``lm_head.weight`` tile by tile, so the batch x vocabulary logits never exist — a memory saving made for GPUs.
    - On CPU its tile loop costs more than the logits it avoids (bench/train_throughput.py, packed vs packed_fused,
      2 cores, float32, 4 x 1024 tokens): SmolLM2-135M trains 1.11x faster with the full logits as its recipe runs
      (gradient checkpointing), 1.27x without; a 50k-vocabulary 2-layer GPT-2, 9 s a step against 2 s.
    - With added special tokens, peft trains the new rows through ``trainable_token_indices``, which wraps the (tied)
      output embedding; the fused head bypasses that wrapper (TRL 1.16 fails on ``lm_head.bias``, and would
      otherwise score the new tokens with their untrained rows). The model's forward goes through the wrapper.
    TRL's labels (answer-only, packed ``position_ids``) and loss normalisation are unchanged, and TRL's training
    metrics (entropy, mean token accuracy, tokens seen) are logged from the logits.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs["use_cache"] = False  # the packed-sequence mask is only built without a KV cache
        loss, outputs = Trainer.compute_loss(self, model, inputs, True, num_items_in_batch)
        self._log_token_metrics(outputs.logits, inputs)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _log_token_metrics(self, logits: torch.Tensor, inputs: dict) -> None:
        """TRL's ``entropy``, ``mean_token_accuracy`` and ``num_tokens``, as ``SFTTrainer.compute_loss`` logs them."""
        mode = "train" if self.model.training else "eval"
        logits, labels = logits[:, :-1], inputs["labels"][:, 1:]  # position t predicts token t + 1
        mask = labels != -100
        rows, columns = mask.nonzero(as_tuple=True)
        entropy_sum = torch.zeros((), device=logits.device)
        num_correct = torch.zeros((), dtype=torch.long, device=logits.device)
        # a chunk of positions at a time: the batch's log-softmax whole would be three more batch x vocabulary
        # tensors (2.4 GB for 4 x 1,024 tokens and SmolLM2's 49,152 tokens) on top of the logits the loss keeps
        for start in range(0, rows.numel(), METRIC_CHUNK):
            at = rows[start : start + METRIC_CHUNK], columns[start : start + METRIC_CHUNK]
            log_probs = torch.log_softmax(logits[at].float(), dim=-1)
            entropy_sum -= (log_probs.exp() * log_probs).sum()
            num_correct += (log_probs.argmax(-1) == labels[at]).sum()
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(mask.sum()).sum()
        entropy_sum, num_correct = gather(entropy_sum).sum(), gather(num_correct).sum()
        self._metrics[mode]["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                local = inputs["attention_mask"].sum()
            else:  # padding-free: one row of real tokens
                local = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            self._total_train_tokens += gather(local).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


class LogFinalStep(TrainerCallback):
    """Log the loss at a run's last optimizer step, whatever ``logging_steps`` is.

    Without it a run shorter than ``logging_steps`` (or ending between two logs) records no loss for its last steps:
    ``run_manifest.json`` had ``final_train_loss: null`` for every CPU-sized run of a GPU-sized recipe.
    """

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            control.should_log = True
        return control


class ResumeWithTheseSettings(TrainerCallback):
    """Make a resumed run's Trainer state follow this command and go on from the checkpoint, where transformers 5.25
    and TRL 1.16 start afresh or keep the checkpoint's.

    - ``logging_steps``, ``eval_steps``, ``save_steps``: the Trainer resumes with the checkpoint's (a warning is all
      it says), so a resume asked to save or evaluate more often silently did not: applied from this command.
    - A stateful callback the checkpoint was saved without (early stopping added at the resume): the Trainer saves its
      state into the resumed state's entry for it, which is missing (``KeyError: 'EarlyStoppingCallback'`` at the next
      checkpoint, after its weights were written, leaving it incomplete and the steps since the resume lost).
    - TRL's count of training tokens (logged as ``num_tokens``) restarted at 0 at every resume: kept in the state's
      ``num_input_tokens_seen`` (saved with each checkpoint; the Trainer's own count of it is off unless
      ``include_num_input_tokens_seen`` is set, and then it is left to the Trainer).

    Parameters:
        callbacks: the run's callbacks; those with a state (``ExportableState``) get an entry when it is missing.
        trainer: the run's trainer (TRL keeps its token count on it).
    """

    def __init__(self, callbacks: list[TrainerCallback], trainer: Trainer):
        self.callbacks = [callback for callback in callbacks if isinstance(callback, ExportableState)]
        self.trainer = trainer

    def _keeps_tokens(self, args) -> bool:
        return args.include_num_input_tokens_seen in ("no", False) and hasattr(self.trainer, "_total_train_tokens")

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)
        for callback in [*self.callbacks, control]:  # (a checkpoint of transformers < 4.41 has no control entry)
            state.stateful_callbacks.setdefault(type(callback).__name__, callback.state())
        if self._keeps_tokens(args):
            self.trainer._total_train_tokens = state.num_input_tokens_seen  # 0 in a new run

    def on_step_end(self, args, state, control, **kwargs):
        if self._keeps_tokens(args):  # before the step's checkpoint is saved
            state.num_input_tokens_seen = self.trainer._total_train_tokens
