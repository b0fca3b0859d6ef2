"""Stopping a training run on request, with a checkpoint: ``touch OUTPUT_DIR/STOP``.

A full recipe on CPU runs for hours (MedQuAD's: ~13 h on 2 cores); killing it loses every step since the last
checkpoint. A signal cannot stop it cleanly under ``accelerate launch``: the launcher answers Ctrl-C or SIGTERM by
terminating the training process and kills it 5 seconds later, mid-step. A file works under every launcher, on every
rank, and from a scheduler's job script: at the end of each optimizer step medsft looks for ``STOP`` in the run
directory. When it is there, that step is saved as a ``checkpoint-N`` (the loss logged, the loss curve drawn), the
file removed, the manifest says ``stopped``, and the command exits with status 3 (``STOPPED_EXIT``), so a chained
``train && evaluate`` does not go on with an unfinished run. ``--resume_from_checkpoint true`` continues it where it
stopped and ends as an uninterrupted run would.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainerCallback

STOP_FILE = "STOP"
STOPPED_EXIT = 3


class StopOnRequest(TrainerCallback):
    """Save a checkpoint and end training at the first optimizer step that finds ``output_dir/STOP``.

    Every rank looks, and the ranks agree (one all-reduce of a flag per step): all of them save and stop at the same
    step, as the Trainer's collective checkpoint needs.

    Parameters:
        output_dir: the run directory the ``STOP`` file is looked for in.
    """

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / STOP_FILE
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self._requested():
            control.should_save = True
            control.should_log = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def stopped_early(self, state) -> bool:
        """Whether training ended because of the request, before the run's last step."""
        return self.stopped_at is not None and not (0 < state.max_steps <= self.stopped_at)

    def clear(self) -> None:
        """Remove the honoured request, so that the resumed run does not stop at its first step."""
        self.path.unlink(missing_ok=True)

    def _requested(self) -> bool:
        seen = self.path.exists()
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            from accelerate import PartialState

            flag = torch.tensor([int(seen)], device=PartialState().device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            seen = bool(flag.item())
        return seen
