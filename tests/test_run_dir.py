"""The run directory is never lost or left broken: each case replayed with a user's command line.

Every refusal is checked for exit code 2, one line naming the file or setting, no traceback, and, where an earlier
run was at stake, every one of its files byte-for-byte unchanged. Tiny GPT-2 (the real tokenizer), the shipped
QLoRA recipe (``save_total_limit: 2``), a few steps. A fresh ``python -m medsft.<command>`` (seconds of imports
each) runs where the process itself is the point: the first run, the kill -9 and its resume, evaluation and dry-run
publishing, the STOP file's exit status 3 and SIGTERM; the other cases call the same entry points in this process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.conftest import ROOT, recipe_argv, small_disk
from tests.test_bad_input import run_entry

FAKE_TOKEN = "hf_medsftFakeToken0123456789abcdefXYZ"
STEPS = 12


def cli(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m medsft.<module> ARGS`` from the project root, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", f"medsft.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(proc: subprocess.CompletedProcess, prog: str) -> str:
    """The one-line error of a refused command (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"medsft.{prog}: error: "), line
    return line


def refused(module: str, *args: str) -> str:
    """The one-line error of a refused ``medsft.<module>`` command, run through its console entry point in this
    process (as tests/test_bad_input.py runs its matrix: seconds instead of a fresh interpreter's imports; the real
    subprocess path is covered there and by the runs in this file that finish)."""
    code, err = run_entry(module, list(args))
    return error_line(subprocess.CompletedProcess([module, *args], code, "", err), module)


def snapshot(path: Path) -> dict[str, str]:
    """Every file below ``path`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()
    }


def train_args(model: str, data: str, out: Path, *extra: str) -> list[str]:
    """The shipped recipe on the tiny model: 12 steps, a checkpoint every 2 (the recipe keeps the last 2)."""
    return recipe_argv(
        "wikidoc_qlora", model, out, "--dataset_name", data, "--max_length", "128", "--max_steps", str(STEPS),
        "--save_steps", "2", "--logging_steps", "1", "--learning_rate", "1e-2", *extra, quick=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_gpt2, wikidoc_small) -> Path:
    """An uninterrupted run, through the command line."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = cli("train", *train_args(tiny_gpt2, wikidoc_small, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, tiny_gpt2, wikidoc_small) -> Path:
    """The same run killed with SIGKILL as soon as its second checkpoint starts being written (so that checkpoint
    may be half-written), with a Hub token on the command line."""
    out = tmp_path_factory.mktemp("killed") / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = train_args(tiny_gpt2, wikidoc_small, out, "--hub_token", FAKE_TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "medsft.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "checkpoint-4").exists():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "adapter_model.safetensors").exists()
    assert json.loads((out / "run_manifest.json").read_text())["status"] == "training"
    return out


@pytest.fixture
def texts(tmp_path) -> Path:
    """A two-paragraph text file for perplexity."""
    path = tmp_path / "texts.txt"
    path.write_text("Asthma narrows the airways.\n\nInsulin lowers blood sugar.\n")
    return path


def assert_same_adapter(expected: Path, run: Path, atol: float = 0.0) -> None:
    """The run's adapter weights are ``expected``'s, tensor by tensor (exactly, or within ``atol``)."""
    a, b = load_file(expected / "adapter_model.safetensors"), load_file(run / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=atol, rtol=0, msg=key)


def copy_of(run: Path, tmp_path: Path, name: str = "run") -> Path:
    shutil.copytree(run, tmp_path / name)
    return tmp_path / name


# 1. --overwrite_output_dir checks everything before deleting, and deletes only medsft runs
def test_overwrite_with_a_mistyped_dataset_deletes_nothing(finished_run, tiny_gpt2, tmp_path):
    run = copy_of(finished_run, tmp_path)
    before = snapshot(run)
    line = refused("train", *train_args(tiny_gpt2, str(tmp_path / "typo.json"), run, "--overwrite_output_dir", "true"))
    assert "typo.json" in line
    assert snapshot(run) == before


def test_overwrite_refuses_a_folder_that_is_not_a_medsft_run(tiny_gpt2, wikidoc_small, tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\documentclass{article}")
    line = refused("train", *train_args(tiny_gpt2, wikidoc_small, thesis, "--overwrite_output_dir", "true"))
    assert str(thesis) in line and "not a medsft run" in line and "thesis.tex" in line
    assert (thesis / "thesis.tex").read_text() == "\\documentclass{article}"


# 2. resuming another run's checkpoint never writes into a finished run
def test_resume_into_a_finished_run_is_refused(finished_run, killed_run, tiny_gpt2, wikidoc_small, tmp_path):
    run_b = copy_of(finished_run, tmp_path, "run_b")
    before = snapshot(run_b)
    checkpoint = next(killed_run.glob("checkpoint-*"))
    line = refused("train", *train_args(tiny_gpt2, wikidoc_small, run_b, "--resume_from_checkpoint", str(checkpoint)))
    assert str(run_b) in line and "finished run" in line
    assert snapshot(run_b) == before


# 3 and 7. the README's resume after kill -9, with the shipped recipe's save_total_limit; no token on disk
def test_resume_after_kill_finishes_evaluates_and_pushes(
    finished_run, killed_run, tiny_gpt2, wikidoc_small, tmp_path, texts
):
    run = copy_of(killed_run, tmp_path)
    proc = cli("train", *train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == STEPS
    resumed_at = manifest["resumed_at_step"]
    assert manifest["resumed_from"] == f"checkpoint-{resumed_at}" and resumed_at in (2, 4)
    assert manifest["train_loss_mean_steps"] == [resumed_at + 1, STEPS]
    # the checkpoint it resumed from was rotated away by save_total_limit: 2 while the resumed run saved
    assert not (run / f"checkpoint-{resumed_at}").exists()
    # the resumed adapter is the uninterrupted run's
    assert_same_adapter(finished_run, run, atol=1e-6)

    # the token given as --hub_token is in no file of the run or its checkpoints (training_args.bin included)
    for file in [*killed_run.rglob("*"), *run.rglob("*")]:
        assert not file.is_file() or FAKE_TOKEN.encode() not in file.read_bytes(), file

    # the resumed run evaluates and publishes (dry run)
    proc = cli(
        "evaluate", "--model_name_or_path", tiny_gpt2, "--adapters", str(run), "--tasks", "perplexity",
        "--perplexity_dataset", str(texts), "--load_in_4bit", "true", "--use_bnb_nested_quant", "true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "eval/report.json").is_file()
    proc = cli(
        "push", str(run), "--repo_id", "me/tiny-wikidoc", "--base_model", "gpt2", "--dry_run", str(tmp_path / "card")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "card/adapter_model.safetensors").is_file() and (tmp_path / "card/eval/report.json").is_file()


# 4. a half-written checkpoint is skipped (named), the newest complete one is used; named explicitly, it is refused
def test_half_written_checkpoint_is_skipped(finished_run, tiny_gpt2, wikidoc_small, tmp_path, caplog):
    from medsft.train import main as train

    run = copy_of(finished_run, tmp_path)
    for name in ("adapter_model.safetensors", "adapter_config.json", "run_manifest.json"):
        (run / name).unlink()  # as if it stopped while writing its last checkpoint
    newest = run / f"checkpoint-{STEPS}"
    optimizer = newest / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])  # what a full disk leaves
    (newest / "trainer_state.json").unlink()

    line = refused("train", *train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", str(newest)))
    assert f"checkpoint {newest} is incomplete" in line

    with caplog.at_level(logging.WARNING, logger="medsft.train"):
        train(train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert f"skipping incomplete checkpoint {newest}" in caplog.text
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["resumed_from"] == f"checkpoint-{STEPS - 2}" and manifest["global_step"] == STEPS


# 5. a setting the checkpoint's weights depend on differs: one line naming it, nothing changed
def test_resume_with_another_lora_rank_is_refused(killed_run, tiny_gpt2, wikidoc_small, tmp_path):
    run = copy_of(killed_run, tmp_path)
    before = snapshot(run)
    line = refused(
        "train", *train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true", "--lora_r", "4")
    )
    assert "lora_r: 16 in the run, 4 now" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("optim", ["sgd", "adafactor"])
def test_resume_with_another_optimizer_is_refused(killed_run, tiny_gpt2, wikidoc_small, tmp_path, optim):
    # the checkpoint's AdamW state loaded into another optimizer failed at its first step (KeyError: 'momentum',
    # KeyError: 'beta1'); AdamW's fused and unfused forms share one state (allowed: the test below)
    run = copy_of(killed_run, tmp_path)
    before = snapshot(run)
    args = train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true", "--optim", optim)
    line = refused("train", *args)
    assert (
        f"optimizer state depend on differ from the run's (optim: 'adamw_torch_fused' in the run, '{optim}' now)"
        in line
    )
    assert snapshot(run) == before


def test_resume_that_ends_the_run_at_or_before_its_checkpoint(killed_run, tiny_gpt2, wikidoc_small, tmp_path):
    # the Trainer trained one step past a --max_steps already reached (step 3 of 1) and called the run finished
    from medsft.run_dir.checkpoints import last_complete_checkpoint
    from medsft.train import main as train

    run = copy_of(killed_run, tmp_path)
    before, at = snapshot(run), last_complete_checkpoint(run)  # checkpoint-2, or -4 when the kill came late
    step = int(at.name.removeprefix("checkpoint-"))
    resume = ("--resume_from_checkpoint", "true")
    line = refused("train", *train_args(tiny_gpt2, wikidoc_small, run, *resume, "--max_steps", "1"))
    assert (
        f"{at}: it is at step {step}, past this run's last step (1, from --max_steps 1); pass --max_steps {step}"
        in line
    )
    fewer_epochs = ("--max_steps", "-1", "--num_train_epochs", "0.01")  # one step: epochs counted as the Trainer does
    line = refused("train", *train_args(tiny_gpt2, wikidoc_small, run, *resume, *fewer_epochs))
    found = re.search(r"past this run's last step \(1, from --num_train_epochs 0.01 of (\d+) steps\)", line)
    assert found, line
    assert snapshot(run) == before

    # the epochs' step count is the Trainer's: a resume for half an epoch ends where that count says
    steps_per_epoch, other = int(found.group(1)), copy_of(killed_run, tmp_path, "other")
    train(train_args(tiny_gpt2, wikidoc_small, other, *resume, "--max_steps", "-1", "--num_train_epochs", "0.5"))
    last = json.loads((other / "run_manifest.json").read_text())["global_step"]
    assert last == math.ceil(0.5 * steps_per_epoch) > step

    train(
        train_args(tiny_gpt2, wikidoc_small, run, *resume, "--max_steps", str(step))
    )  # ends the run there, untrained
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == step
    assert_same_adapter(at, run)


# 6. resuming a finished run: nothing to do, exit 0, nothing changed
def test_resume_of_a_finished_run_changes_nothing(finished_run, tiny_gpt2, wikidoc_small, tmp_path, caplog):
    run = copy_of(finished_run, tmp_path)
    before = snapshot(run)
    with caplog.at_level(logging.WARNING, logger="medsft.train"):
        code, err = run_entry("train", train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert code == 0, err[-3000:]
    assert f"nothing to resume: the run in {run} finished at step {STEPS}" in caplog.text
    assert snapshot(run) == before


def test_run_stopped_after_its_last_checkpoint_is_not_trained_further(
    finished_run, tiny_gpt2, wikidoc_small, tmp_path
):
    run = copy_of(finished_run, tmp_path)
    for name in ("adapter_model.safetensors", "adapter_config.json", "run_manifest.json"):
        (run / name).unlink()  # stopped between its last checkpoint and its final save
    code, err = run_entry("train", train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert code == 0, err[-3000:]
    assert json.loads((run / "run_manifest.json").read_text())["global_step"] == STEPS  # not STEPS + 1
    assert_same_adapter(finished_run, run)


# 8. an output_dir that is a file is refused before anything is loaded
def test_output_dir_that_is_a_file_is_refused(tiny_gpt2, wikidoc_small, tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    line = refused("train", *train_args(tiny_gpt2, wikidoc_small, file))
    assert f"output_dir {file} is a file" in line
    assert file.read_text() == "mine"


# 9. evaluate checks every adapter before evaluating any model
def test_corrupt_adapter_is_found_before_any_model_is_evaluated(finished_run, tiny_gpt2, tmp_path, texts, caplog):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(finished_run, corrupt, ignore=shutil.ignore_patterns("checkpoint-*"))
    weights = corrupt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    argv = ["--model_name_or_path", tiny_gpt2, "--adapters", str(finished_run), str(corrupt), "--tasks", "perplexity",
            "--perplexity_dataset", str(texts), "--output_dir", str(tmp_path / "ev")]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="medsft.evaluate"):
        line = refused("evaluate", *argv)
    assert f"adapter {corrupt} does not load onto" in line
    assert "evaluating" not in caplog.text  # the log line that starts the evaluation
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize(
    "failure, said",
    [
        (OSError("disk read error"), "disk read error"),
        (KeyboardInterrupt(), r"interrupted \(Ctrl-C\)"),
        (KeyboardInterrupt("SIGTERM"), r"interrupted \(SIGTERM\)"),  # what sigterm_as_interrupt raises
    ],
    ids=["disk", "ctrl-c", "sigterm"],
)
def test_results_of_finished_models_are_kept_when_one_fails(
    finished_run, tiny_gpt2, tmp_path, texts, monkeypatch, failure, said
):
    import medsft.evaluate as evaluate
    import medsft.evaluation.runner as runner  # the per-model loop loads the adapters
    from medsft.core.errors import MedsftError

    second = copy_of(finished_run, tmp_path, "second")
    real = runner.load_adapter

    def fail_on_second(model, path):
        if Path(path) == second:
            raise failure  # as if the disk failed after the checks, or the user pressed Ctrl-C
        return real(model, path)

    monkeypatch.setattr(runner, "load_adapter", fail_on_second)
    out = tmp_path / "ev"
    with pytest.raises(MedsftError, match=rf"evaluating second failed: {said}; .*\(base, run\).*{out}"):
        try:
            evaluate.main([
                "--model_name_or_path", tiny_gpt2, "--adapters", str(finished_run), str(second), "--tasks",
                "perplexity", "--perplexity_dataset", str(texts), "--load_in_4bit", "true", "--output_dir", str(out),
            ])  # fmt: skip
        except KeyboardInterrupt:  # would end the whole test session
            pytest.fail("the Ctrl-C escaped the evaluation: the finished models were not written")
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"base", "run"} and report["incomplete"]["model"] == "second"


# 10. a local base is identified by its weights, not its folder name
@pytest.fixture
def run_on_replaced_base(tiny_gpt2, wikidoc_small, tmp_path) -> tuple[Path, Path]:
    """A run trained on a local base whose folder then got other weights under the same name."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from medsft.train import main as train

    base = tmp_path / "bases/tiny"
    shutil.copytree(tiny_gpt2, base)
    run = tmp_path / "run"
    train(train_args(str(base), wikidoc_small, run, "--max_steps", "1", "--save_strategy", "no"))
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base)).save_pretrained(
        base
    )  # same name, other weights
    return run, base


def test_base_with_other_weights_under_the_same_name_is_refused(run_on_replaced_base, tmp_path, texts):
    run, base = run_on_replaced_base
    line = refused(
        "evaluate", "--model_name_or_path", str(base), "--adapters", str(run), "--tasks", "perplexity",
        "--perplexity_dataset", str(texts), "--load_in_4bit", "true",
    )  # fmt: skip
    assert f"adapter {run} was trained on base model 'tiny'" in line and "holds other weights" in line
    line = refused("generate", str(run), "--prompt", "Asthma is")
    assert "holds other weights" in line
    line = refused("push", str(run), "--repo_id", "me/x", "--base_model", "gpt2", "--dry_run", str(tmp_path / "card"))
    assert "holds other weights" in line and not (tmp_path / "card").exists()


def test_same_weights_under_another_name_are_accepted(finished_run, tiny_gpt2, tmp_path):
    from medsft.modeling.adapters import check_adapter_base, read_adapter
    from medsft.modeling.source import resolve_model_source

    renamed = tmp_path / "renamed-copy"
    shutil.copytree(tiny_gpt2, renamed)
    check_adapter_base(read_adapter(str(finished_run)), resolve_model_source(str(renamed)))


def test_interrupted_run_is_not_published_or_evaluated_as_finished(killed_run, tmp_path):
    from medsft.core.errors import MedsftError
    from medsft.modeling.adapters import read_adapter

    line = refused("push", str(killed_run), "--repo_id", "me/x", "--dry_run", str(tmp_path / "card"))
    assert f"{killed_run} is a run that has not finished" in line and "--resume_from_checkpoint true" in line
    with pytest.raises(MedsftError, match="has not finished"):
        read_adapter(str(killed_run))
    checkpoint = read_adapter(str(next(killed_run.glob("checkpoint-2"))))  # its checkpoints still evaluate
    assert checkpoint.base_fingerprint is not None  # from the manifest written when the run started


# 10. touch OUTPUT_DIR/STOP: the step the run is on is saved as a checkpoint, the run ends (status 3 from the command
# line) and resumes to the uninterrupted run's adapter
class TouchStopAt(TrainerCallback):
    """Create the run's STOP file while step ``step`` trains, as a user's ``touch`` would."""

    def __init__(self, output_dir: Path, step: int):
        self.path, self.step = output_dir / "STOP", step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            self.path.touch()


def logged_tokens(run: Path) -> list[int]:
    """The ``num_tokens`` logged with each training loss, as the last checkpoint's Trainer state records them."""
    state = json.loads((run / f"checkpoint-{STEPS}/trainer_state.json").read_text())
    return [entry["num_tokens"] for entry in state["log_history"] if "loss" in entry]


def test_stop_file_saves_a_checkpoint_and_the_run_resumes_to_the_same_adapter(
    finished_run, tiny_gpt2, wikidoc_small, tmp_path
):
    from medsft.core.errors import MedsftError, RunStopped
    from medsft.run_dir.record import check_finished
    from medsft.train import main as train

    run = tmp_path / "run"
    with pytest.raises(RunStopped) as stopped:
        train(train_args(tiny_gpt2, wikidoc_small, run), callbacks=[TouchStopAt(run, 5)])
    assert stopped.value.exit_code == 3
    assert f"stopped at step 5 of {STEPS}" in str(stopped.value) and str(run / "checkpoint-5") in str(stopped.value)
    assert "--resume_from_checkpoint true" in str(stopped.value)
    # step 5 is not a save step (--save_steps 2): saved because of the request; the request is gone
    assert (run / "checkpoint-5/adapter_model.safetensors").is_file() and not (run / "STOP").exists()
    assert not (run / "adapter_model.safetensors").exists() and (run / "loss_curve.png").is_file()
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["global_step"] == 5
    assert [s["step"] for s in manifest["stops"]] == [5]
    with pytest.raises(MedsftError, match="has not finished"):
        check_finished(run)

    train(train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == STEPS
    assert manifest["resumed_from"] == "checkpoint-5" and [s["step"] for s in manifest["stops"]] == [5]
    assert_same_adapter(finished_run, run, atol=1e-6)
    # TRL's count of training tokens goes on from the checkpoint (it restarted at 0)
    assert logged_tokens(run) == logged_tokens(finished_run) and len(logged_tokens(run)) == STEPS


def test_stop_file_on_the_command_line_exits_3_with_one_line(killed_run, tiny_gpt2, wikidoc_small, tmp_path):
    run = copy_of(killed_run, tmp_path)
    (run / "STOP").touch()  # left there before the resume: it stops after one step
    proc = cli("train", *train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "is already there (a stop request)" in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    step = json.loads((run / "run_manifest.json").read_text())["global_step"]
    assert line.startswith(f"medsft.train: stopped at step {step} of {STEPS}"), line
    assert (run / f"checkpoint-{step}").is_dir() and not (run / "STOP").exists()


def test_stop_file_at_the_last_step_lets_the_run_finish(finished_run, tiny_gpt2, wikidoc_small, tmp_path):
    from medsft.train import main as train

    run = tmp_path / "run"
    train(train_args(tiny_gpt2, wikidoc_small, run), callbacks=[TouchStopAt(run, STEPS)])
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == STEPS and "stops" not in manifest
    assert not (run / "STOP").exists()
    assert_same_adapter(finished_run, run)


# 11. early stopping across a resume: the count of evaluations without improvement is carried on, so a resumed run
# stops where the uninterrupted one does; a run early-stopped before its final save is saved (its best checkpoint),
# not trained further. greater_is_better on the loss makes every evaluation after the first "no improvement": the
# run stops early at a known step, with its best checkpoint (the first) not its last.
def early_stopping_args(model: str, data: str, out: Path, *extra: str) -> list[str]:
    return train_args(
        model, data, out, "--eval_strategy", "steps", "--eval_steps", "2", "--load_best_model_at_end", "true",
        "--metric_for_best_model", "eval_loss", "--greater_is_better", "true", "--early_stopping_patience", "2",
        *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def early_stopped_run(tmp_path_factory, tiny_gpt2, wikidoc_small) -> Path:
    from medsft.train import main as train

    out = tmp_path_factory.mktemp("early") / "run"
    train(early_stopping_args(tiny_gpt2, wikidoc_small, out))
    return out


def test_early_stopping_counts_across_a_resume(early_stopped_run, tiny_gpt2, wikidoc_small, tmp_path):
    from medsft.core.errors import RunStopped
    from medsft.train import main as train

    finished = json.loads((early_stopped_run / "run_manifest.json").read_text())
    assert finished["status"] == "finished" and finished["global_step"] == 6 < STEPS  # evaluations at 2, 4, 6
    run = tmp_path / "run"
    with pytest.raises(RunStopped):
        train(early_stopping_args(tiny_gpt2, wikidoc_small, run), callbacks=[TouchStopAt(run, 4)])
    state = json.loads((run / "checkpoint-4/trainer_state.json").read_text())
    assert state["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["early_stopping_patience_counter"] == 1

    train(early_stopping_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == 6  # not 8: the count went on from 1
    assert_same_adapter(early_stopped_run, run, atol=1e-6)


def test_early_stopping_and_other_steps_at_a_resume_take_effect(tiny_gpt2, wikidoc_small, tmp_path):
    # transformers resumed with the checkpoint's eval/save steps (no evaluation ran: the run went on to step 12), and
    # its state had no entry for a callback the run started without (KeyError: 'EarlyStoppingCallback' at the next
    # save, leaving that checkpoint incomplete). The unfused AdamW also resumes the fused one's state (the default).
    from medsft.core.errors import RunStopped
    from medsft.train import main as train

    run = tmp_path / "run"
    with pytest.raises(RunStopped):
        train(train_args(tiny_gpt2, wikidoc_small, run), callbacks=[TouchStopAt(run, 3)])
    more = ("--resume_from_checkpoint", "true", "--optim", "adamw_torch", "--save_steps", "4")
    train(early_stopping_args(tiny_gpt2, wikidoc_small, run, *more))
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == 8  # evaluations at 4, 6, 8: stopped early
    assert (run / "checkpoint-8").is_dir() and not (run / "checkpoint-6").exists()  # saved every 4 steps, not 2
    state = json.loads((run / "checkpoint-8/trainer_state.json").read_text())
    assert state["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["early_stopping_patience_counter"] == 2


def test_early_stopped_run_cut_before_its_final_save_saves_its_best_checkpoint(
    early_stopped_run, tiny_gpt2, wikidoc_small, tmp_path, caplog
):
    run = copy_of(early_stopped_run, tmp_path)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-6"]
    last = load_file(run / "checkpoint-6/adapter_model.safetensors")
    assert any(not torch.equal(t, last[k]) for k, t in load_file(run / "adapter_model.safetensors").items())
    for name in ("adapter_model.safetensors", "adapter_config.json", "run_manifest.json"):
        (run / name).unlink()  # stopped between its last checkpoint and its final save
    with caplog.at_level(logging.INFO, logger="medsft.train"):
        code, err = run_entry(
            "train", early_stopping_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true")
        )
    assert code == 0, err[-3000:]
    assert "checkpoint-6 is where early stopping stopped it (6): saving it as the run's result" in caplog.text
    assert json.loads((run / "run_manifest.json").read_text())["global_step"] == 6  # not trained further
    assert_same_adapter(early_stopped_run, run)  # the best checkpoint's weights (the first), as uninterrupted

    shutil.rmtree(run / "checkpoint-2")  # the best checkpoint gone: refused, not saved from another
    for name in ("adapter_model.safetensors", "adapter_config.json", "run_manifest.json"):
        (run / name).unlink()
    line = refused("train", *early_stopping_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert "records checkpoint-2 as the run's best checkpoint" in line and "is missing" in line


# 12. the disk fills while the run writes: one line naming the folder and its free space, no traceback, whichever
# library was writing (tokenizers' tokenizer.json, torch's optimizer.pt); nothing complete is lost, and once there
# is room the run resumes to the uninterrupted run's adapter
@pytest.mark.parametrize(
    ("size", "writer"), [("5m", "tokenizers"), ("3660k", "torch")], ids=["tokenizer-json", "optimizer-pt"]
)
def test_full_disk_while_training_is_one_line_and_the_run_resumes(
    finished_run, tiny_gpt2, wikidoc_small, tmp_path, caplog, size, writer
):
    from medsft.train import main as train

    with small_disk(tmp_path / "small", size) as disk:
        line = refused("train", *train_args(tiny_gpt2, wikidoc_small, disk / "run"))
        assert f"writing to {disk / 'run'} failed: " in line and "MiB free on its disk now" in line, line
        assert ("No space left on device" in line) == (writer == "tokenizers"), line
        run = copy_of(disk / "run", tmp_path)  # the user frees space: here, the run moves to a larger disk
    assert not list(run.rglob(".*.tmp"))  # no half-written record left behind
    if writer == "torch":  # the first checkpoint was the one cut short: nothing to resume, so the line says start over
        assert "--overwrite_output_dir true (no checkpoint was complete" in line
        train(train_args(tiny_gpt2, wikidoc_small, run, "--overwrite_output_dir", "true"))
        assert_same_adapter(finished_run, run)
        return
    assert "--resume_from_checkpoint true (from the last complete checkpoint" in line
    with caplog.at_level(logging.WARNING, logger="medsft.train"):
        train(train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true"))
    assert f"skipping incomplete checkpoint {run / 'checkpoint-4'}" in caplog.text
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["resumed_from"] == "checkpoint-2"
    assert_same_adapter(finished_run, run, atol=1e-6)


# 13. Ctrl-C or SIGTERM without accelerate's launcher (python -m medsft.train): one line saying which checkpoint a
# resume continues from, exit 128 + the signal, the manifest says "interrupted"; the resume ends as uninterrupted
class InterruptAt(TrainerCallback):
    """Ctrl-C while step ``step`` trains."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_and_sigterm_end_in_one_line_and_the_run_resumes(finished_run, tiny_gpt2, wikidoc_small, tmp_path):
    from medsft.core.errors import RunStopped
    from medsft.train import main as train

    run = tmp_path / "run"
    with pytest.raises(RunStopped) as interrupted:
        train(train_args(tiny_gpt2, wikidoc_small, run), callbacks=[InterruptAt(6)])
    assert interrupted.value.exit_code == 130
    assert str(interrupted.value).startswith(f"interrupted by Ctrl-C after step 5 of {STEPS}: continue from ")
    assert str(run / "checkpoint-4") in str(interrupted.value) and f"touch {run / 'STOP'}" in str(interrupted.value)
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["interruptions"][0]["step"] == 5

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", "true")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medsft.train", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not (run / "checkpoint-6").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and "medsft.train: interrupted by SIGTERM after step" in stderr.splitlines()[-1]
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "interrupted" and [i["by"] for i in manifest["interruptions"]] == [
        "Ctrl-C",
        "SIGTERM",
    ]

    train(args)
    assert json.loads((run / "run_manifest.json").read_text())["status"] == "finished"
    assert_same_adapter(finished_run, run, atol=1e-6)


def test_resume_from_another_run_cut_short_before_its_first_checkpoint_runs_again(
    finished_run, tiny_gpt2, wikidoc_small, tmp_path
):
    # the new folder then held only the records of that same resume, and the line said to start over (losing the
    # resume) while the same command was refused ("holds another run's files")
    from medsft.core.errors import RunStopped
    from medsft.train import main as train

    run, checkpoint = tmp_path / "run", finished_run / "checkpoint-10"
    args = train_args(tiny_gpt2, wikidoc_small, run, "--resume_from_checkpoint", str(checkpoint))
    with pytest.raises(RunStopped) as interrupted:
        train(args, callbacks=[InterruptAt(11)])
    assert f"run the same command again (--resume_from_checkpoint {checkpoint}; " in str(interrupted.value)
    assert not list(run.glob("checkpoint-*"))
    train(args)
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["resumed_from"] == f"{finished_run.name}/checkpoint-10"
    assert_same_adapter(finished_run, run, atol=1e-6)

    other = tmp_path / "other"  # another resume's records are still not written into
    shutil.copytree(run, other)
    shutil.rmtree(other / "checkpoint-12")
    shutil.rmtree(other / "checkpoint-11", ignore_errors=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (other / name).unlink()
    manifest["status"] = "interrupted"
    (other / "run_manifest.json").write_text(json.dumps(manifest))
    line = refused(
        "train",
        *train_args(tiny_gpt2, wikidoc_small, other, "--resume_from_checkpoint", str(finished_run / "checkpoint-12")),
    )
    assert "holds another run's files" in line
