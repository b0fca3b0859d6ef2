"""The run's output directory: never overwritten unasked, resumable, and self-describing.

A run directory holds the LoRA adapter (safetensors), the tokenizer, ``recipe.yaml`` (every setting the user gave,
after CLI overrides; enough to rerun it), ``run_manifest.json`` (library versions, git commit, seed, start/end time,
base model and its fingerprint, final train loss, data counts; ``status`` ``training`` from the start, ``finished``
at the end) and the Trainer's ``checkpoint-*`` directories.

Training decides everything about the directory first (``plan_output_dir``: refusals, the checkpoint to resume from,
what an overwrite would delete) and changes it only once every other check has passed (``clear_output_dir``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import platform
import re
import shutil
import struct
import subprocess
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml
from transformers.trainer_callback import TrainerState

from medsft.errors import MedsftError

RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = "run_manifest.json"
TRAINER_STATE_FILE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME (that module is slow to import)
# Fields never written anywhere (secrets)
_SECRET_FIELDS = {"hub_token", "push_to_hub_token"}
# Flags about one invocation, not the run: not recorded in recipe.yaml (a rerun of it would resume or delete)
_INVOCATION_FIELDS = {"resume_from_checkpoint", "overwrite_output_dir"}
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
_LIBRARIES = ("medsft", "torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")


# Files that make a directory recognisably a medsft run (besides checkpoint-* directories): only such a directory is
# ever deleted by --overwrite_output_dir.
RUN_MARKERS = (MANIFEST_FILE, RECIPE_FILE)
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
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
    match = _CHECKPOINT.fullmatch(path.name)
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
    found = [p for p in out.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)] if out.is_dir() else []
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


def read_manifest(run_dir: str | Path) -> dict | None:
    """The run's ``run_manifest.json`` (None when there is none), with an error naming the file if unreadable."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MedsftError(f"{path}: unreadable ({e})") from None
    if not isinstance(manifest, dict):
        raise MedsftError(f"{path}: not a run manifest (expected a JSON object)")
    return manifest


def run_finished(manifest: dict | None) -> bool:
    """Whether a manifest records a finished run (manifests from before ``status`` existed were written at the end)."""
    if not manifest:
        return False
    return manifest.get("status", "finished" if "finished" in manifest else None) == "finished"


def check_finished(run_dir: str | Path) -> None:
    """Refuse a run directory whose training has not finished (interrupted, or still running)."""
    manifest = read_manifest(run_dir)
    if manifest is not None and not run_finished(manifest):
        raise MedsftError(
            f"{run_dir} is a run that has not finished (status '{manifest.get('status')}'): continue it with "
            "medsft.train ... --resume_from_checkpoint true, or use one of its checkpoint-* directories"
        )


def is_medsft_run(path: Path) -> bool:
    """A directory medsft wrote: it holds a manifest, a recipe.yaml or checkpoint-* directories."""
    return any((path / marker).is_file() for marker in RUN_MARKERS) or bool(checkpoints(path))


@dataclass
class OutputPlan:
    """What training does with its output directory, decided before anything heavy runs; nothing is changed yet.

    Parameters:
        output_dir: the run directory.
        resume_from: the checkpoint to resume from, or None for a new run.
        resume_step: the optimizer step of that checkpoint.
        resume_max_steps: the run's last step, as that checkpoint's Trainer state records it.
        delete: entries of ``output_dir`` that ``--overwrite_output_dir`` deletes, right before training starts.
        finished_step: set when there is nothing to resume: the run already finished at this step.
        previous_recipe / previous_manifest: the settings and manifest of the run the checkpoint belongs to.
    """

    output_dir: Path
    resume_from: str | None = None
    resume_step: int | None = None
    resume_max_steps: int | None = None
    delete: list[Path] = field(default_factory=list)
    finished_step: int | None = None
    previous_recipe: dict | None = None
    previous_manifest: dict | None = None


def _parse_resume(value) -> str | bool:
    if value is None or value is False:
        return False
    if value is True or str(value).lower() == "true":
        return True
    return False if str(value).lower() in ("false", "none", "") else str(value)


def _check_writable(out: Path) -> None:
    """Refuse an output directory that is a file or cannot be created, before anything is loaded."""
    if out.exists() and not out.is_dir():
        raise MedsftError(f"output_dir {out} is a file, not a directory: choose another --output_dir")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MedsftError(f"output_dir {out} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MedsftError(f"output_dir {out} cannot be written: no write permission on {parent}")


def _read_recipe_file(run_dir: Path) -> dict | None:
    path = run_dir / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise MedsftError(f"{path}: unreadable ({e})".replace("\n", " ")) from None
    return recipe if isinstance(recipe, dict) else {}


def _resume_plan(out: Path, checkpoint: Path, run: Path) -> OutputPlan:
    """Resume ``checkpoint``, a checkpoint of the run in ``run``, into ``out``."""
    state = checkpoint_state(checkpoint)
    return OutputPlan(
        out,
        str(checkpoint),
        state.global_step,
        state.max_steps,
        previous_recipe=_read_recipe_file(run),
        previous_manifest=read_manifest(run),
    )


def plan_output_dir(
    output_dir: str, resume_from_checkpoint, overwrite: bool, logger: logging.Logger | None = None
) -> OutputPlan:
    """Decide what to do with ``output_dir``; every refusal happens here, before data or models are loaded.

    - empty or missing: a new run.
    - ``resume_from_checkpoint`` true: resume from the newest complete ``checkpoint-*`` in it (incomplete ones are
      skipped with a warning); if the run already finished, there is nothing to resume.
    - ``resume_from_checkpoint`` a path: resume from that checkpoint, into ``output_dir`` only if that is empty or
      the unfinished run the checkpoint belongs to (the output-directory guard applies whatever the source).
    - ``overwrite``: the directory is deleted right before training (``clear_output_dir``), and only if it is
      recognisably a medsft run; anything else is refused.
    - otherwise a non-empty directory is refused, saying how to resume or overwrite.
    """
    out = Path(output_dir)
    _check_writable(out)
    resume = _parse_resume(resume_from_checkpoint)
    non_empty = out.is_dir() and any(out.iterdir())
    manifest = read_manifest(out) if non_empty else None
    finished = run_finished(manifest)
    if resume and overwrite:
        raise MedsftError(
            "--resume_from_checkpoint and --overwrite_output_dir contradict each other: resume continues the run in "
            "output_dir, overwrite deletes it; pass one of them"
        )
    if resume is True:
        if finished:
            return OutputPlan(out, finished_step=manifest.get("global_step"), previous_manifest=manifest)
        last = last_complete_checkpoint(out, logger)
        if last is None:
            found = checkpoints(out)
            why = f" complete (incomplete: {', '.join(p.name for p in found)})" if found else ""
            raise MedsftError(f"--resume_from_checkpoint true, but {output_dir} holds no{why} checkpoint-* directory")
        return _resume_plan(out, last, out)
    if resume:
        checkpoint = Path(resume)
        if not checkpoint.is_dir():
            raise MedsftError(f"checkpoint to resume from not found: {resume}")
        if not (checkpoint / TRAINER_STATE_FILE).is_file() and not _CHECKPOINT.fullmatch(checkpoint.name):
            raise MedsftError(
                f"{resume} is not a training checkpoint (no trainer_state.json); resume from a checkpoint-* directory "
                "of a run, or pass an adapter to evaluate/generate instead"
            )
        problem = checkpoint_problem(checkpoint)
        if problem:
            raise MedsftError(f"checkpoint {resume} is incomplete ({problem}): resume from an earlier checkpoint")
        inside = checkpoint.resolve().parent == out.resolve()
        if non_empty and (finished or not inside):
            what = f"a finished run (step {manifest.get('global_step')})" if finished else "another run's files"
            raise MedsftError(
                f"output_dir {output_dir} holds {what}; resuming {resume} into it would overwrite them: "
                "choose a new --output_dir"
            )
        return _resume_plan(out, checkpoint, checkpoint.resolve().parent)
    if non_empty and overwrite:
        if not is_medsft_run(out):
            contents = ", ".join(sorted(p.name for p in out.iterdir())[:5])
            raise MedsftError(
                f"--overwrite_output_dir: {output_dir} is not a medsft run (no {MANIFEST_FILE}, {RECIPE_FILE} or "
                f"checkpoint-*; it holds {contents}); it is not deleted: choose another --output_dir"
            )
        return OutputPlan(out, delete=sorted(out.iterdir()))
    if non_empty:
        contents = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        if not is_medsft_run(out):
            raise MedsftError(
                f"output_dir {output_dir} is not empty ({contents}) and is not a medsft run: choose another "
                "--output_dir"
            )
        how = "add --resume_from_checkpoint true to continue it; " if checkpoints(out) and not finished else ""
        raise MedsftError(
            f"output_dir {output_dir} is not empty ({contents}); {how}add --overwrite_output_dir true to delete it "
            "and start over, or choose another --output_dir"
        )
    return OutputPlan(out)


def check_resume(plan: OutputPlan, source, peft_config, keys: set[str], *configs) -> dict[str, tuple]:
    """Refuse a resume whose settings change what the checkpoint's weights are (model, LoRA shape, format); return
    the other settings that differ from the run's ``recipe.yaml`` (``{name: (recorded, now)}``), to warn about.

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
    if model_differs:
        weight_changes = {"model_name_or_path": (recorded.get("name"), source.name), **weight_changes}
    # The checkpoint's own adapter_config.json is the last word on the adapter's shape (also for runs whose
    # recipe.yaml was not written when they stopped)
    adapter_config = checkpoint / "adapter_config.json"
    if adapter_config.is_file() and peft_config is not None:
        saved = json.loads(adapter_config.read_text())
        for flag, key, now_value in (
            ("lora_r", "r", peft_config.r),
            ("lora_alpha", "lora_alpha", peft_config.lora_alpha),
            ("lora_target_modules", "target_modules", peft_config.target_modules),
        ):
            if flag not in weight_changes and _comparable(_plain(saved.get(key))) != _comparable(_plain(now_value)):
                weight_changes[flag] = (_plain(saved.get(key)), _plain(now_value))
    elif adapter_config.is_file() != (peft_config is not None):
        weight_changes.setdefault("use_peft", (adapter_config.is_file(), peft_config is not None))
    if weight_changes:
        differences = "; ".join(f"{k}: {old!r} in the run, {new!r} now" for k, (old, new) in weight_changes.items())
        raise MedsftError(
            f"cannot resume {checkpoint}: settings its weights depend on differ from the run's ({differences}); "
            "resume with the run's settings, or start a new run in another --output_dir"
        )
    return changed


def clear_output_dir(plan: OutputPlan, logger: logging.Logger) -> None:
    """Delete what ``plan`` says (``--overwrite_output_dir``), logging each entry; only the main process deletes."""
    if not plan.delete:
        return
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        logger.warning(
            "--overwrite_output_dir: deleting %d entries of %s: %s",
            len(plan.delete),
            plan.output_dir,
            ", ".join(p.name for p in plan.delete),
        )
        for child in plan.delete:
            shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)
    state.wait_for_everyone()


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
    if isinstance(value, (set, frozenset)):  # peft keeps target_modules as a set
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def resolved_recipe(keys: set[str], *configs) -> dict:
    """The final value (after CLI overrides and validation) of every argument the user set, secrets and the
    invocation's own flags (resume, overwrite) excluded."""
    recipe = {}
    for config in configs:
        for f in dataclasses.fields(config):
            if f.name in keys and f.name not in _SECRET_FIELDS | _INVOCATION_FIELDS:
                recipe[f.name] = _plain(getattr(config, f.name))
    return recipe


def changed_settings(previous: dict, keys: set[str], *configs) -> dict[str, tuple]:
    """Settings of this invocation that differ from a run's ``recipe.yaml``: ``{name: (recorded, now)}``.

    A setting the recipe does not record had its default; only settings set on one side or the other are compared.
    """
    changed = {}
    for config in configs:
        for f in dataclasses.fields(config):
            name = f.name
            if name not in keys | set(previous) or name in _SECRET_FIELDS | _INVOCATION_FIELDS | _NO_EFFECT_FIELDS:
                continue
            now_value = _plain(getattr(config, name))
            if name in previous:
                before = previous[name]
            elif f.default is not dataclasses.MISSING:
                before = _plain(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                before = _plain(f.default_factory())
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


def _atomic_write(path: Path, text: str) -> Path:
    """Write through a temporary file and rename: a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_recipe(output_dir: str, keys: set[str], *configs) -> Path:
    return _atomic_write(
        Path(output_dir) / RECIPE_FILE,
        "# Resolved medsft recipe: the recipe's settings with the command line's overrides applied.\n"
        "# Rerun with: accelerate launch -m medsft.train recipe.yaml\n"
        + yaml.safe_dump(resolved_recipe(keys, *configs)),
    )


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
    """Write ``run_manifest.json``: at the start with ``status: training``, at the end with ``status: finished``."""
    return _atomic_write(Path(output_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
