"""Checkpoints of a run: which exist, which are complete enough to resume from, and the state they record."""

from __future__ import annotations

import json
import logging
import re
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from medsft.core.errors import MedsftError

if TYPE_CHECKING:
    from transformers.trainer_callback import TrainerState

TRAINER_STATE_FILE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME (that module is slow to import)


CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


# Checkpoint files the Trainer resumes from; each must be complete (a half-written one is skipped)
_WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# accelerate's FSDP layouts (accelerate/utils/fsdp_utils.py): FULL_STATE_DICT writes pytorch_model_fsdp.bin and
# optimizer.bin; SHARDED_STATE_DICT writes torch.distributed.checkpoint folders pytorch_model_fsdp_0/ and optimizer_0/,
# whose .metadata file is written last. DeepSpeed writes global_step*/ folders with weights and optimizer inside.
_FSDP_WEIGHTS = "pytorch_model_fsdp*"
_OPTIMIZER = ("optimizer.pt", "optimizer*.bin", "optimizer_*")
_DCP_METADATA = ".metadata"
_TORCH_ZIP_FILES = ("scheduler.pt", "rng_state.pth", "scaler.pt")


def checkpoint_state(checkpoint: str | Path) -> TrainerState:
    """The Trainer state a checkpoint was saved with (``global_step``, ``max_steps``, the log)."""
    # imported here: transformers' Trainer modules bring peft and bitsandbytes (seconds), and reading which
    # checkpoints a run has (bench/plot_training.py, publishing) needs none of them
    from transformers.trainer_callback import TrainerState

    return TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_FILE))


def early_stopping_counter(state: TrainerState) -> int:
    """How many evaluations in a row had not improved the metric when the checkpoint was saved (the state
    ``EarlyStoppingCallback`` records in it; 0 without early stopping). The Trainer restores it only with
    ``restore_callback_states_from_checkpoint``, and then with the checkpoint's patience, not the command's."""
    saved = (state.stateful_callbacks or {}).get("EarlyStoppingCallback") or {}
    saved = saved[0] if isinstance(saved, list) and saved else saved
    return int(((saved or {}).get("attributes") or {}).get("early_stopping_patience_counter") or 0)


def resumed_from_label(checkpoint: str | Path, output_dir: str | Path) -> str:
    """How a run's manifest names the checkpoint it resumed from: ``checkpoint-N``, or ``run/checkpoint-N`` for a
    checkpoint of another run (never an absolute path: manifests are published with the model)."""
    checkpoint = Path(checkpoint).resolve()
    return (
        checkpoint.name
        if checkpoint.parent == Path(output_dir).resolve()
        else f"{checkpoint.parent.name}/{checkpoint.name}"
    )


def best_checkpoint(checkpoint: str | Path) -> Path | None:
    """The best checkpoint ``checkpoint``'s state records (``load_best_model_at_end``), found beside it (the recorded
    path is relative to where training was launched), or None when it records none. Refused when that checkpoint is
    gone or incomplete, rather than saving another as the run's result."""
    recorded = checkpoint_state(checkpoint).best_model_checkpoint
    if not recorded:
        return None
    best = Path(checkpoint).parent / Path(recorded).name
    problem = "missing" if not best.is_dir() else checkpoint_problem(best, needs_optimizer=False)
    if problem:
        raise MedsftError(
            f"{checkpoint} records {Path(recorded).name} as the run's best checkpoint (load_best_model_at_end), but "
            f"{best} is {problem if problem == 'missing' else f'incomplete ({problem})'}: restore it from a copy, "
            f"or evaluate {checkpoint} itself (a checkpoint's weights evaluate and generate as they are)"
        )
    return best


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is not complete (header unreadable, or shorter than its header says), or None."""
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            header_len = struct.unpack("<Q", f.read(8))[0]
            if 8 + header_len > size:
                return f"{path.name} is truncated"
            header = json.loads(f.read(header_len))
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return f"{path.name} is unreadable"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return f"{path.name} is truncated" if 8 + header_len + end > size else None


def checkpoint_problem(checkpoint: str | Path, needs_optimizer: bool = True) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (missing or half-written files), or None when it is complete.

    Cheap: the Trainer writes ``trainer_state.json`` last, safetensors headers give the expected sizes, and torch's
    zip files end with a directory that a truncated file lacks; no weights are read.
    """
    path = Path(checkpoint)
    try:
        state = json.loads((path / TRAINER_STATE_FILE).read_text())
        step = int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"no complete {TRAINER_STATE_FILE}"
    match = CHECKPOINT_DIR.fullmatch(path.name)
    if match and int(match.group(1)) != step:
        return f"{TRAINER_STATE_FILE} says step {step}"
    weights = [
        *(path / name for name in _WEIGHT_FILES if (path / name).is_file()),
        *path.glob("model-*.safetensors"),
        *path.glob(_FSDP_WEIGHTS),
    ]
    deepspeed = [p for p in path.glob("global_step*") if p.is_dir()]
    if not weights and not deepspeed:
        return "no model or adapter weights"
    for file in weights:
        if file.is_dir():  # a sharded (torch.distributed.checkpoint) folder
            problem = None if (file / _DCP_METADATA).is_file() else f"{file.name}/ has no {_DCP_METADATA}"
        elif file.suffix == ".safetensors":
            problem = _safetensors_problem(file)
        else:  # a torch zip (pytorch_model.bin) or the index of sharded weights
            problem = None if file.suffix == ".json" or zipfile.is_zipfile(file) else f"{file.name} is truncated"
        if problem:
            return problem
    optimizer = [p for pattern in _OPTIMIZER for p in path.glob(pattern)]
    if needs_optimizer and not optimizer and not deepspeed:
        # without it the Trainer silently resumes with a fresh optimizer
        return "no optimizer state (optimizer.pt)"
    for file in optimizer:
        if file.is_dir() and not (file / _DCP_METADATA).is_file():
            return f"{file.name}/ has no {_DCP_METADATA}"
    for file in [*(path / name for name in _TORCH_ZIP_FILES), *optimizer, *path.glob("rng_state_*.pth")]:
        if file.is_file() and not zipfile.is_zipfile(file):
            return f"{file.name} is truncated"
    return None


def checkpoint_layout(checkpoint: str | Path) -> str:
    """How a checkpoint's weights and optimizer were saved: ``"FSDP (SHARDED_STATE_DICT)"``, ``"FSDP
    (FULL_STATE_DICT)"``, ``"DeepSpeed"`` or ``"plain"`` (one process or DDP); a resume is launched the same way."""
    path = Path(checkpoint)
    if any(p.is_dir() for p in path.glob("global_step*")):
        return "DeepSpeed"
    fsdp = list(path.glob(_FSDP_WEIGHTS))
    if any(p.is_dir() for p in fsdp):
        return "FSDP (SHARDED_STATE_DICT)"
    return "FSDP (FULL_STATE_DICT)" if fsdp else "plain"


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` directories of a run, newest (highest step) first."""
    out = Path(run_dir)
    found = [p for p in out.iterdir() if p.is_dir() and CHECKPOINT_DIR.fullmatch(p.name)] if out.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)


def last_complete_checkpoint(run_dir: str | Path, logger: logging.Logger | None = None) -> Path | None:
    """The newest checkpoint that can be resumed from; each newer, incomplete one is skipped with a warning."""
    for checkpoint in checkpoints(run_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        if logger:
            logger.warning(
                "skipping incomplete checkpoint %s (%s): it was being written when the run stopped",
                checkpoint,
                problem,
            )
    return None
