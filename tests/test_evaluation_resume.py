"""``medsft.evaluate`` keeps every finished model when it stops (report written after each model; SIGTERM caught as
Ctrl-C) and ``--resume true`` finishes the same evaluation without scoring them again, refusing another one."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

from medsft.core.errors import MedsftError, sigterm_as_interrupt
from medsft.evaluate import main as evaluate_main
from tests.conftest import MEDQA_DIR, PUBMEDQA_DIR, WIKIDOC_JSON, train_quickly


class Killed(BaseException):
    """Stands for SIGKILL: nothing in medsft catches it, so only what was written before it survives."""


@pytest.fixture(scope="module")
def adapters(tiny_gpt2, tmp_path_factory) -> list[Path]:
    """Two adapters of the tiny model: a trained one and a copy with other weights."""
    root = tmp_path_factory.mktemp("resume")
    first = train_quickly("pubmedqa_lora", tiny_gpt2, root / "first", "--dataset_name", str(PUBMEDQA_DIR),
                          "--max_steps", "2", "--max_length", "512")  # fmt: skip
    second = root / "second"
    shutil.copytree(first, second)
    _perturb(second)
    return [first, second]


def _perturb(run: Path, seed: int = 0) -> None:
    weights = run / "adapter_model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(seed)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in tensors.items()}, weights)


def _args(model: str, adapters: list[Path], out: Path | None, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", model, "--adapters", *map(str, adapters), "--tasks", "perplexity,pubmedqa,medqa",
        "--perplexity_dataset", str(WIKIDOC_JSON), "--pubmedqa_dataset", str(PUBMEDQA_DIR),
        "--medqa_dataset", str(MEDQA_DIR), "--limit", "6", "--batch_size", "3", "--bootstrap_samples", "50",
        *(["--output_dir", str(out)] if out else []), *extra,
    ]  # fmt: skip


def _evaluate(argv: list[str]) -> dict:
    return evaluate_main(argv, console=Console(file=io.StringIO()))


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The models each evaluation loads (a model scored is a model loaded); ``killed_at`` makes loading that one
    die as a SIGKILL would."""
    import medsft.evaluation.runner as runner

    loaded, real = [], runner.load_model

    def load(source, *args, **kwargs):
        loaded.append(source.name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(runner, "load_model", load)
    return loaded


def _fail_at(monkeypatch, adapter: Path, failure: BaseException) -> None:
    """Loading ``adapter`` raises ``failure`` (after the checks, as a disk error or a kill would come)."""
    import medsft.evaluation.runner as runner

    real = runner.load_adapter

    def load_adapter(model, path):
        if Path(path) == adapter:
            raise failure
        return real(model, path)

    monkeypatch.setattr(runner, "load_adapter", load_adapter)


def _without_timings(report: dict) -> dict:
    return {key: value for key, value in report.items() if key in ("results", "pubmedqa_outputs", "choice_outputs")}


def test_a_killed_evaluation_keeps_its_finished_models_and_resumes(tiny_gpt2, adapters, tmp_path, loads):
    whole = _evaluate(_args(tiny_gpt2, adapters, tmp_path / "whole"))  # the uninterrupted evaluation
    out = tmp_path / "ev"
    loads.clear()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        _fail_at(patch, adapters[1], Killed())
        _evaluate(_args(tiny_gpt2, adapters, out))
    # the report written after the first adapter survives the kill, saying which model was not reached
    stopped = json.loads((out / "report.json").read_text())
    assert list(stopped["results"]) == ["base", "first"]
    assert stopped["incomplete"]["model"] == "second" and "not scored yet" in stopped["incomplete"]["error"]
    assert stopped["results"] == {k: v for k, v in whole["results"].items() if k != "second"}
    assert (out / "pubmedqa_predictions_first.json").is_file() and (out / "medqa_predictions_first.json").is_file()
    # the same command again is refused (never overwritten) and says how to finish it
    with pytest.raises(MedsftError, match="already holds an evaluation report.*--resume true"):
        _evaluate(_args(tiny_gpt2, adapters, out))

    # a resume that fails again keeps what it had and says how to go on
    with pytest.MonkeyPatch.context() as patch, pytest.raises(MedsftError, match="second failed: disk.*--resume true"):
        _fail_at(patch, adapters[1], OSError("disk"))
        _evaluate(_args(tiny_gpt2, adapters, out, "--resume", "true"))
    assert json.loads((out / "report.json").read_text())["results"] == stopped["results"]
    loads.clear()
    resumed = _evaluate(_args(tiny_gpt2, adapters, out, "--resume", "true"))
    assert loads == [Path(tiny_gpt2).name]  # the second adapter's copy of the base: base and first not scored again
    saved = json.loads((out / "report.json").read_text())
    assert saved["incomplete"] is None and list(saved["results"]) == ["base", "first", "second"]
    # the same numbers as the uninterrupted evaluation, paired comparisons included
    assert _without_timings(saved) == _without_timings(whole)
    assert saved["timings"]["base"] == stopped["timings"]["base"]
    assert [part["models"] for part in saved["resumed"]] == [["base", "first"]]
    assert saved["resumed"][0]["created"] == stopped["created"]
    assert resumed["output_dir"] == str(out)
    # resuming a complete report scores nothing and changes nothing
    loads.clear()
    _evaluate(_args(tiny_gpt2, adapters, out, "--resume", "true"))
    assert loads == [] and json.loads((out / "report.json").read_text()) == saved


@pytest.fixture(scope="module")
def stopped_report(tiny_gpt2, adapters, tmp_path_factory) -> Path:
    """An evaluation that failed on its second adapter (its weights unreadable), with base and first adapter kept."""
    out = tmp_path_factory.mktemp("stopped") / "ev"
    broken = out.parent / "second"
    shutil.copytree(adapters[1], broken)
    with (
        pytest.MonkeyPatch.context() as patch,
        pytest.raises(MedsftError, match=r"second failed: disk.*--resume true"),
    ):
        _fail_at(patch, broken, OSError("disk"))
        _evaluate(_args(tiny_gpt2, [adapters[0], broken], out))
    return out


@pytest.mark.parametrize(
    "change, said",
    [
        (["--limit", "5"], "not this command's"),
        (["--batch_size", "2"], "settings: batch_size 2 here, 3 in the report"),
        (["--tasks", "perplexity,pubmedqa"], "settings: tasks"),
        (["--pubmedqa_mode", "chat"], "settings: pubmedqa.mode chat here"),
        (["--adapters", "ADAPTER0"], "the adapters: first here, first, second in the report"),
        (["--load_in_4bit", "true"], "the base model: load_in_4bit True here"),
    ],
    ids=["limit", "batch", "tasks", "mode", "adapters", "precision"],
)
def test_resuming_another_evaluation_is_refused_before_scoring(
    tiny_gpt2, adapters, stopped_report, tmp_path, loads, change, said
):
    out = tmp_path / "ev"
    shutil.copytree(stopped_report, out)
    before = (out / "report.json").read_text()
    argv = _args(tiny_gpt2, [adapters[0], stopped_report.parent / "second"], out, "--resume", "true")
    argv += [str(adapters[0]) if c == "ADAPTER0" else c for c in change]
    with pytest.raises(MedsftError, match=said):
        _evaluate(argv)
    assert loads == [] and (out / "report.json").read_text() == before


def test_resuming_with_changed_adapter_weights_or_nothing_to_resume_is_refused(
    tiny_gpt2, adapters, stopped_report, tmp_path, loads
):
    out = tmp_path / "ev"
    shutil.copytree(stopped_report, out)
    first = tmp_path / "first"
    shutil.copytree(adapters[0], first)
    second = stopped_report.parent / "second"
    report = json.loads((out / "report.json").read_text())
    report["adapters"]["first"]["path"] = str(first)  # the same run, retrained in place below
    (out / "report.json").write_text(json.dumps(report))
    config = json.loads((first / "adapter_config.json").read_text())
    config["lora_alpha"] /= 2  # the same weights at half strength (what --adapter_strength 0.5 saves)
    (first / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(MedsftError, match="adapter first: fingerprint .*another --adapter_strength"):
        _evaluate(_args(tiny_gpt2, [first, second], out, "--resume", "true"))
    _perturb(first, seed=1)
    with pytest.raises(MedsftError, match="adapter first: fingerprint"):
        _evaluate(_args(tiny_gpt2, [first, second], out, "--resume", "true"))
    with pytest.raises(MedsftError, match="holds no report.json: nothing to resume"):
        _evaluate(_args(tiny_gpt2, [first, second], tmp_path / "empty", "--resume", "true"))
    assert loads == []


def test_resume_finds_the_default_report_folder(tiny_gpt2, adapters, tmp_path, loads, caplog):
    """Without --output_dir, --resume takes the newest of <first adapter>/eval, eval-2 … that holds a report."""
    first = tmp_path / "first"
    shutil.copytree(adapters[0], first)
    argv = _args(tiny_gpt2, [first, adapters[1]], None)
    (first / "eval").mkdir()
    (first / "eval" / "notes.txt").write_text("the user's")  # not a report: never resumed or written into
    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        _fail_at(patch, adapters[1], Killed())
        _evaluate(argv)
    assert (first / "eval-2" / "report.json").is_file()
    loads.clear()
    with caplog.at_level(logging.INFO, logger="medsft"):
        result = _evaluate([*argv, "--resume", "true"])
    assert result["output_dir"] == str(first / "eval-2") and len(loads) == 1
    assert [p.name for p in (first / "eval").iterdir()] == ["notes.txt"]
    assert "resuming" in caplog.text


def test_sigterm_is_an_interrupt_within_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts it
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_full_disk_loses_no_scores_silently(tiny_gpt2, adapters, tmp_path, monkeypatch, caplog):
    """A report write that fails (disk full) after a model is a warning and scoring goes on; at the end it is one
    error naming the folder, after the table with every score was printed."""
    import medsft.evaluation.report as rep

    real, calls = rep.write_report, []

    def no_space(out, report):
        raise OSError(28, "No space left on device")

    def freed_later(out, report):
        calls.append(len(report.results))
        return no_space(out, report) if len(calls) == 1 else real(out, report)  # the write after the base fails

    monkeypatch.setattr(rep, "write_report", freed_later)
    with caplog.at_level(logging.WARNING, logger="medsft"):
        report = _evaluate(_args(tiny_gpt2, adapters[:1], tmp_path / "freed"))
    assert "No space left on device" in caplog.text and calls == [1, 2]
    assert list(report["results"]) == ["base", "first"] and (tmp_path / "freed" / "report.json").is_file()
    monkeypatch.setattr(rep, "write_report", no_space)
    printed = io.StringIO()
    with pytest.raises(MedsftError, match=r"could not write the report to .*full \(No space left.*the table above"):
        evaluate_main(_args(tiny_gpt2, adapters[:1], tmp_path / "full"), console=Console(file=printed, width=150))
    assert "MedQA accuracy" in printed.getvalue() and "first" in printed.getvalue()
