"""A real 2-process CPU training through accelerate: both ranks train, on disjoint data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, recipe_argv


@pytest.mark.multiprocess
def test_two_cpu_processes_train_on_disjoint_data(tiny_gpt2, wikidoc_small, tmp_path):
    record = tmp_path / "record"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "accelerate_configs/multi_cpu.yaml"),
        str(ROOT / "tests/helpers/ddp_probe.py"), str(record),
        *recipe_argv(
            "wikidoc_qlora", tiny_gpt2, tmp_path / "run", "--dataset_name", wikidoc_small, "--max_length", "128",
            "--max_steps", "3", quick=False,
        ),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((record / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert all(r["world_size"] == 2 and r["steps"] == 3 for r in ranks)
    seen0, seen1 = set(ranks[0]["examples"]), set(ranks[1]["examples"])
    assert seen0 and seen1 and not seen0 & seen1
    assert json.loads((tmp_path / "run/run_manifest.json").read_text())["world_size"] == 2


@pytest.mark.multiprocess
def test_two_process_evaluation_equals_one_process(tiny_gpt2, tmp_path):
    from tests.conftest import MMLU_DIR, PUBMEDQA_DIR, WIKIDOC_JSON

    args = [
        "--model_name_or_path", tiny_gpt2, "--perplexity_dataset", str(WIKIDOC_JSON),
        "--pubmedqa_dataset", str(PUBMEDQA_DIR), "--limit", "22", "--batch_size", "4", "--max_length", "256",
        "--stride", "128", "--bootstrap_samples", "200", "--tasks", "perplexity,pubmedqa,mmlu",
        "--mmlu_dataset", str(MMLU_DIR), "--mmlu_subjects", "anatomy,medical_genetics",
    ]  # fmt: skip
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    runs = {
        "one": [sys.executable, "-m", "medsft.evaluate", *args],
        "two": [*launch, str(ROOT / "accelerate_configs/multi_cpu.yaml"), "-m", "medsft.evaluate", *args],
    }
    reports = {}
    for name, cmd in runs.items():
        proc = subprocess.run(
            [*cmd, "--output_dir", str(tmp_path / name)], capture_output=True, text=True, cwd=ROOT, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["one"]["world_size"] == 1 and reports["two"]["world_size"] == 2
    # bit-identical: every metric, every question's choice log-likelihoods, every prediction
    assert reports["two"]["results"] == reports["one"]["results"]
    assert reports["two"]["pubmedqa_outputs"] == reports["one"]["pubmedqa_outputs"]
    assert reports["two"]["choice_outputs"] == reports["one"]["choice_outputs"]
    assert reports["one"]["results"]["base"]["pubmedqa"]["n"] == 22
    assert reports["one"]["results"]["base"]["mmlu"]["n"] == 44  # 22 of each subject
    for name in runs:
        for task in ("pubmedqa", "mmlu"):
            assert (tmp_path / name / f"{task}_predictions_base.json").read_text() == (
                tmp_path / "one" / f"{task}_predictions_base.json"
            ).read_text()


@pytest.mark.parametrize("fails", [False, True])
def test_cli_destroys_the_process_group_however_main_ends(tmp_path, fails):
    """Left to interpreter exit, gloo can abort a finished rank (SIGABRT); the CLI wrapper tears the group down."""
    import torch.distributed as dist

    from medsft.core.errors import MedsftError, run_cli

    def main() -> None:
        assert dist.is_initialized()
        if fails:
            raise MedsftError("bad recipe")

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        if fails:
            with pytest.raises(SystemExit) as exit_info:
                run_cli(main, "medsft.train")
            assert exit_info.value.code == 2
        else:
            run_cli(main, "medsft.train")
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.multiprocess
def test_fsdp_config_on_cpu_is_refused_not_silently_data_parallel(tiny_gpt2, wikidoc_small, tmp_path):
    """accelerate enables FSDP only on GPUs/accelerators: on CPU the shipped fsdp.yaml (use_cpu) would train a full
    copy per process, silently (tests/helpers/ddp_probe.py measured it). medsft refuses before training."""
    import yaml

    config = yaml.safe_load((ROOT / "accelerate_configs/fsdp.yaml").read_text())
    config.update(use_cpu=True, num_processes=2, mixed_precision="no")
    (tmp_path / "fsdp_cpu.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(tmp_path / "fsdp_cpu.yaml"),
        "-m", "medsft.train",
        *recipe_argv(
            "wikidoc_qlora", tiny_gpt2, out, "--dataset_name", wikidoc_small, "--max_length", "128",
            "--max_steps", "2", "--load_in_4bit", "false",
        ),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode != 0
    assert "medsft.train: error: the launch config asks for FSDP, but accelerate did not enable it" in proc.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing trained, nothing written
