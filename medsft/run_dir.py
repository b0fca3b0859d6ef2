"""The run's output directory: never overwritten unasked, resumable, and self-describing.

A finished run directory holds the LoRA adapter (safetensors), the tokenizer, ``recipe.yaml`` (every setting that
differs from the defaults, after CLI overrides; enough to rerun it) and ``run_manifest.json`` (library versions, git
commit, seed, start/end time, final train loss, data counts).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import get_last_checkpoint

from medsft.errors import MedsftError

RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = "run_manifest.json"
TRAINER_STATE_FILE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME (that module is slow to import)
# Fields never written anywhere (secrets)
_SECRET_FIELDS = {"hub_token", "push_to_hub_token"}
_LIBRARIES = ("medsft", "torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")


def checkpoint_step(checkpoint: str) -> int:
    """The optimizer step a Trainer checkpoint was saved at."""
    return TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_FILE)).global_step


def prepare_output_dir(output_dir: str, resume_from_checkpoint: str | None, overwrite: bool) -> str | None:
    """Decide what to do with ``output_dir`` before anything heavy runs; return the checkpoint to resume from.

    - empty or missing: start a new run.
    - ``resume_from_checkpoint`` true: resume from the last ``checkpoint-*`` in it (error if there is none).
    - ``resume_from_checkpoint`` a path: resume from that checkpoint.
    - ``overwrite``: delete the directory's contents (only the main process deletes) and start over.
    - otherwise: refuse, saying how to resume or overwrite.
    """
    out = Path(output_dir)
    resume = resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "false", "none", ""):
        resume = resume.lower() == "true"
    if resume and resume is not True:
        if not Path(resume).is_dir():
            raise MedsftError(f"checkpoint to resume from not found: {resume}")
        if not (Path(resume) / TRAINER_STATE_FILE).is_file():
            raise MedsftError(
                f"{resume} is not a training checkpoint (no trainer_state.json); resume from a checkpoint-* directory "
                "of a run, or pass an adapter to evaluate/generate instead"
            )
        return str(resume)
    non_empty = out.is_dir() and any(out.iterdir())
    if resume is True:
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise MedsftError(f"--resume_from_checkpoint true, but {output_dir} holds no checkpoint-* directory")
        return last
    if non_empty and overwrite:
        from accelerate import PartialState

        state = PartialState()
        if state.is_main_process:
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        state.wait_for_everyone()
        return None
    if non_empty:
        contents = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        has_checkpoint = get_last_checkpoint(str(out)) is not None
        how = "add --resume_from_checkpoint true to continue it; " if has_checkpoint else ""
        raise MedsftError(
            f"output_dir {output_dir} is not empty ({contents}); {how}add --overwrite_output_dir true to delete it "
            "and start over, or choose another --output_dir"
        )
    return None


def _plain(value):
    """A YAML-safe copy of a config value."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):  # a mixture entry: only the keys that are set
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def resolved_recipe(keys: set[str], *configs) -> dict:
    """The final value (after CLI overrides and validation) of every argument the user set, secrets excluded."""
    recipe = {}
    for config in configs:
        for f in dataclasses.fields(config):
            if f.name in keys and f.name not in _SECRET_FIELDS:
                recipe[f.name] = _plain(getattr(config, f.name))
    return recipe


def write_recipe(output_dir: str, keys: set[str], *configs) -> Path:
    path = Path(output_dir) / RECIPE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Resolved medsft recipe: the recipe's settings with the command line's overrides applied.\n"
        "# Rerun with: accelerate launch -m medsft.train recipe.yaml\n"
        + yaml.safe_dump(resolved_recipe(keys, *configs))
    )
    return path


def git_commit() -> str | None:
    """The medsft checkout's commit (``+dirty`` if it has uncommitted changes), or None outside a git checkout."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(output_dir: str, manifest: dict) -> Path:
    path = Path(output_dir) / MANIFEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
