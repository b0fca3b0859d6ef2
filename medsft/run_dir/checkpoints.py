"""Checkpoints of a run: which exist, which are complete enough to resume from, and the state they record."""

from __future__ import annotations

import json
import logging
import re
import struct
import zipfile
from pathlib import Path

from transformers.trainer_callback import TrainerState

TRAINER_STATE_FILE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME (that module is slow to import)


CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


# Checkpoint files the Trainer resumes from; each must be complete (a half-written one is skipped)
_WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


_TORCH_ZIP_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")


def checkpoint_state(checkpoint: str | Path) -> TrainerState:
    """The Trainer state a checkpoint was saved with (``global_step``, ``max_steps``, the log)."""
    return TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_FILE))


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
    weights = [*(path / name for name in _WEIGHT_FILES if (path / name).is_file()), *path.glob("model-*.safetensors")]
    # FSDP's sharded state and DeepSpeed's global_step* folders hold weights and optimizer in their own layout
    sharded = any(p.is_dir() and p.name.startswith(("pytorch_model_fsdp", "global_step")) for p in path.iterdir())
    needs_optimizer = needs_optimizer and not sharded
    if not weights and not sharded:
        return "no model or adapter weights"
    for file in weights:
        if file.suffix == ".safetensors":
            problem = _safetensors_problem(file)
        else:  # a torch zip (pytorch_model.bin) or the index of sharded weights
            problem = None if file.suffix == ".json" or zipfile.is_zipfile(file) else f"{file.name} is truncated"
        if problem:
            return problem
    for name in _TORCH_ZIP_FILES:
        file = path / name
        if name == "optimizer.pt" and needs_optimizer and not file.is_file():
            # without it the Trainer silently resumes with a fresh optimizer
            return "no optimizer.pt"
        if file.is_file() and not zipfile.is_zipfile(file):
            return f"{name} is truncated"
    return None


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
