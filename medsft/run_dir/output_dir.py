"""The output directory of a training run: every refusal decided before anything loads, deletion deferred."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from medsft.core.errors import MedsftError
from medsft.data.io import check_writable_dir
from medsft.run_dir.checkpoints import (
    CHECKPOINT_DIR,
    TRAINER_STATE_FILE,
    checkpoint_problem,
    checkpoint_state,
    checkpoints,
    early_stopping_counter,
    last_complete_checkpoint,
    resumed_from_label,
)
from medsft.run_dir.record import MANIFEST_FILE, RECIPE_FILE, read_manifest, read_recipe, run_finished

# Files that make a directory recognisably a medsft run (besides checkpoint-* directories): only such a directory is
# ever deleted by --overwrite_output_dir.
RUN_MARKERS = (MANIFEST_FILE, RECIPE_FILE)


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
        resume_early_stopping_counter: evaluations in a row without improvement up to that checkpoint (carried on,
            so a resumed run stops early where the uninterrupted one would).
        delete: entries of ``output_dir`` that ``--overwrite_output_dir`` deletes, right before training starts.
        finished_step: set when there is nothing to resume: the run already finished at this step.
        previous_recipe / previous_manifest: the settings and manifest of the run the checkpoint belongs to.
    """

    output_dir: Path
    resume_from: str | None = None
    resume_step: int | None = None
    resume_max_steps: int | None = None
    resume_early_stopping_counter: int = 0
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


def _resume_plan(out: Path, checkpoint: Path, run: Path) -> OutputPlan:
    """Resume ``checkpoint``, a checkpoint of the run in ``run``, into ``out``."""
    state = checkpoint_state(checkpoint)
    return OutputPlan(
        out,
        str(checkpoint),
        state.global_step,
        state.max_steps,
        early_stopping_counter(state),
        previous_recipe=read_recipe(run),
        previous_manifest=read_manifest(run),
    )


def plan_output_dir(
    output_dir: str, resume_from_checkpoint, overwrite: bool, logger: logging.Logger | None = None
) -> OutputPlan:
    """Decide what to do with ``output_dir``; every refusal happens here, before data or models are loaded.

    - empty or missing: a new run.
    - ``resume_from_checkpoint`` true: resume from the newest complete ``checkpoint-*`` in it (incomplete ones are
      skipped with a warning); if the run already finished, there is nothing to resume.
    - ``resume_from_checkpoint`` a path: resume from that checkpoint, into ``output_dir`` only if that is empty, the
      unfinished run the checkpoint belongs to, or this same resume cut short before its first checkpoint (the
      output-directory guard applies whatever the source).
    - ``overwrite``: the directory is deleted right before training (``clear_output_dir``), and only if it is
      recognisably a medsft run; anything else is refused.
    - otherwise a non-empty directory is refused, saying how to resume or overwrite.
    """
    out = Path(output_dir)
    check_writable_dir(out, "--output_dir")
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
            raise MedsftError(
                f"--resume_from_checkpoint true, but {output_dir} holds no{why} checkpoint-* directory: start over "
                "with --overwrite_output_dir true instead"
            )
        return _resume_plan(out, last, out)
    if resume:
        checkpoint = Path(resume)
        if not checkpoint.is_dir():
            raise MedsftError(f"checkpoint to resume from not found: {resume}")
        if not (checkpoint / TRAINER_STATE_FILE).is_file() and not CHECKPOINT_DIR.fullmatch(checkpoint.name):
            raise MedsftError(
                f"{resume} is not a training checkpoint (no trainer_state.json); resume from a checkpoint-* directory "
                "of a run, or pass an adapter to evaluate/generate instead"
            )
        problem = checkpoint_problem(checkpoint)
        if problem:
            raise MedsftError(f"checkpoint {resume} is incomplete ({problem}): resume from an earlier checkpoint")
        inside = checkpoint.resolve().parent == out.resolve()
        # this same resume, cut short before its first checkpoint: only medsft's records of it are there
        retried = (manifest or {}).get("resumed_from") == resumed_from_label(checkpoint, out)
        if non_empty and (finished or not (inside or (retried and not checkpoints(out)))):
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


@contextmanager
def readme_left_as_it_was(output_dir: str | Path, main_process: bool = True) -> Iterator[None]:
    """Keep a run folder's ``README.md`` what it was before the adapter is saved: the user's, or none.

    PEFT's ``save_pretrained`` drafts a model card there — a template with every field "[More Information Needed]"
    and the base named by its local path — or, when the folder has a README.md (the user's notes on a run between
    pieces), adds that metadata to it. medsft.push writes the run's card from its records instead.
    """
    readme = Path(output_dir) / "README.md"
    before = readme.read_bytes() if main_process and readme.is_file() else None
    try:
        yield
    finally:
        if main_process:
            if before is None:
                readme.unlink(missing_ok=True)
            else:
                readme.write_bytes(before)
