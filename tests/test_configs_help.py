"""``--help`` of every command: short, named as the command, medsft's own arguments first, every flag still reachable;
and the console scripts exist."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

COMMANDS = ["train", "evaluate", "generate", "push", "preview"]


def help_text(command: str, flag: str, capsys) -> str:
    module = __import__(f"medsft.{command}", fromlist=["main"])
    with pytest.raises(SystemExit) as exit_:
        module.main([flag])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_short_and_leads_with_medsft_arguments(command, capsys):
    text = help_text(command, "--help", capsys)
    lines = text.splitlines()
    assert lines[0].startswith(f"usage: medsft.{command} ") and "train.py" not in text
    assert len(lines) < 160, f"{command} --help is {len(lines)} lines"
    assert "medsft's arguments:" in text and "examples:" in text
    if command in ("train", "preview"):  # recipe-reading commands document the positional recipe and --config
        assert "RECIPE.yaml (positional, or --config RECIPE.yaml)" in text
        # medsft's own flags come before TRL's, the rest is counted and reachable
        listed = text.split("medsft's arguments:", 1)[1]
        assert listed.index("--dataset_type") < listed.index("--learning_rate")
        assert f"medsft.{command} --help-all" in text


def test_help_all_lists_every_trl_flag(capsys):
    text = help_text("train", "--help-all", capsys)
    assert "--adam_beta1" in text and "--dataset_type" in text and len(text.splitlines()) > 500


def test_evaluate_help_shows_only_what_evaluation_reads(capsys):
    text = help_text("evaluate", "--help", capsys)
    for training_only in ("--use_dora", "--lora_task_type", "--lora_r", "--use_peft", "--learning_rate"):
        assert training_only not in text
    assert "--load_in_4bit" in text and "--model_name_or_path" in text and "--help-all" not in text


def test_evaluate_refuses_training_flags_with_one_line():
    from medsft.core.errors import MedsftError
    from medsft.evaluate import main

    with pytest.raises(MedsftError, match=r"unknown argument\(s\): --use_dora"):
        main(["--model_name_or_path", "gpt2", "--use_dora", "true"])


def test_console_scripts_exist_and_answer_help():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.name.startswith("medsft-")}
    for name in ("medsft-train", "medsft-evaluate", "medsft-push", "medsft-generate", "medsft-data"):
        assert name in scripts, name
    # one of them run as the installed script, as a user would
    script = Path(sys.executable).parent / "medsft-data"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: medsft-data COMMAND") and "preview" in done.stdout
