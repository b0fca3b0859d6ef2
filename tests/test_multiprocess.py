"""Real multi-process runs through accelerate on CPU: data-parallel training on disjoint data (one machine, and two
"machines" simulated on localhost with multi_node.yaml), data-parallel evaluation identical to one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import LAUNCH_ENV, RECIPE_FOR, ROOT, RUN_FLAGS, cpu_launch_config, launch_argv, recipe_argv


@pytest.mark.multiprocess
def test_two_cpu_processes_train_on_disjoint_data(ddp_reference):
    run, ranks = ddp_reference("gpt2")
    assert all(r["world_size"] == 2 and r["steps"] == 4 for r in ranks)
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" and r["sharded_params"] == 0 for r in ranks)
    seen0, seen1 = set(ranks[0]["examples"]), set(ranks[1]["examples"])
    assert seen0 and seen1 and not seen0 & seen1
    assert json.loads((run / "run_manifest.json").read_text())["world_size"] == 2


def test_multi_node_config_reads_as_the_readme_says():
    """accelerate's own reader: the values accelerate_configs/README.md tells users to edit, per node."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "accelerate_configs/multi_node.yaml"))
    assert config.distributed_type == "MULTI_GPU" and config.num_machines == 2
    assert config.machine_rank == 0  # the main node; every other node passes its own --machine_rank
    assert config.main_process_ip and config.main_process_port  # the main node's address, the same on every node
    assert config.num_processes == 16  # the total over all nodes (8 GPUs each)
    assert config.rdzv_backend == "c10d" and config.same_network is False


@pytest.mark.multiprocess
def test_two_machines_simulated_on_localhost_train_as_one_two_process_run(
    ddp_reference, tiny_gpt2, wikidoc_small, tmp_path
):
    """multi_node.yaml on CPU, one process per "machine": two launchers with --machine_rank 0 and 1 meeting at
    127.0.0.1 train exactly what one 2-process launch on one machine trains."""
    import socket

    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = cpu_launch_config("multi_node", tmp_path, main_process_ip="127.0.0.1", main_process_port=port)
    procs = []
    for rank in (0, 1):
        argv = launch_argv(
            config, tmp_path / f"record{rank}", RECIPE_FOR["gpt2"], tiny_gpt2, wikidoc_small, tmp_path / f"node{rank}",
            *RUN_FLAGS["gpt2"],
        )  # fmt: skip
        argv[5:5] = ["--machine_rank", str(rank)]  # after --config_file FILE
        procs.append(
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **LAUNCH_ENV},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    ranks = [json.loads((tmp_path / f"record{node}" / f"rank{node}.json").read_text()) for node in (0, 1)]
    _, reference_ranks = ddp_reference("gpt2")
    assert [r["examples"] for r in ranks] == [r["examples"] for r in reference_ranks]
    run = tmp_path / "node0"  # the main process writes the run
    assert json.loads((run / "run_manifest.json").read_text())["world_size"] == 2
    ours, theirs = (
        load_file(run / "adapter_model.safetensors"),
        load_file(ddp_reference("gpt2")[0] / "adapter_model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    assert all(torch.allclose(ours[k], theirs[k], rtol=0, atol=1e-6) for k in ours)  # measured: identical


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


CLI_RANK = """
import atexit, sys, threading, time
from pathlib import Path
import torch.distributed as dist
from medsft.core.errors import MedsftError, run_cli

out, fails = Path(sys.argv[1]), sys.argv[2] == "fails"
dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=0, world_size=1)
atexit.register(lambda: (out / "atexit").write_text(str(dist.is_initialized())))

def late_writer():
    time.sleep(0.5)
    (out / "thread").write_text("done")

def main():
    threading.Thread(target=late_writer).start()
    print("buffered, no newline", end="")
    if fails:
        raise MedsftError("bad recipe")

run_cli(main, "medsft.train")
print("not reached")
"""


@pytest.mark.parametrize("fails", [False, True])
def test_a_rank_ends_like_a_normal_exit_without_interpreter_finalization(tmp_path, fails):
    """Left to interpreter finalization, gloo's worker threads can abort a finished rank (SIGABRT): ``run_cli`` ends
    a rank with its exit status after what a normal exit does (group destroyed, threads joined, atexit handlers run,
    output flushed), then ``os._exit``."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", CLI_RANK, str(tmp_path), "fails" if fails else "ok"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == (2 if fails else 0), proc.stderr[-2000:]
    assert proc.stdout == "buffered, no newline"  # flushed, and nothing ran after run_cli
    assert (tmp_path / "thread").read_text() == "done"  # a non-daemon thread was waited for
    assert (tmp_path / "atexit").read_text() == "False"  # atexit handlers ran, after the group was destroyed
    assert ("medsft.train: error: bad recipe" in proc.stderr) == fails
    assert "Traceback" not in proc.stderr


STOP_ON_RANK_1 = """
import sys
from accelerate import PartialState
import medsft.train
from medsft.core.errors import run_cli
from medsft.run_dir.stop import StopOnRequest

class OnlyRank1(StopOnRequest):
    # rank 1 alone is asked to stop, at step 2, through a file only it looks at: only the ranks' agreement stops rank 0
    def __init__(self, output_dir):
        super().__init__(output_dir)
        if PartialState().process_index == 1:
            self.path = self.path.with_name("STOP.rank1")

    def on_step_begin(self, args, state, control, **kwargs):
        if PartialState().process_index == 1 and state.global_step + 1 == 2:
            self.path.touch()

medsft.train.StopOnRequest = OnlyRank1
run_cli(lambda: medsft.train.main(sys.argv[1:]), "medsft.train")
"""


@pytest.mark.multiprocess
def test_a_stop_request_seen_by_one_rank_stops_every_rank_at_the_same_step(tiny_gpt2, wikidoc_small, tmp_path):
    """The STOP file checked at each step is agreed on by all ranks, so they save the checkpoint together and end;
    without the agreement rank 0 would train on alone and the run would hang in its next collective."""
    script = tmp_path / "stop_on_rank_1.py"
    script.write_text(STOP_ON_RANK_1)
    out = tmp_path / "run"
    args = recipe_argv(
        RECIPE_FOR["gpt2"], tiny_gpt2, out, "--dataset_name", wikidoc_small, "--max_length", "128",
        "--max_steps", "4", "--save_steps", "4", "--logging_steps", "1", *RUN_FLAGS["gpt2"], quick=False,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(ROOT / "accelerate_configs/multi_cpu.yaml"), str(script), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **LAUNCH_ENV},
        start_new_session=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        proc.communicate()
        pytest.fail("the ranks did not stop together: the run hung")
    assert proc.returncode != 0, stderr[-3000:]
    assert "medsft.train: stopped at step 2 of 4" in stderr, stderr[-3000:]
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["global_step"] == 2 and manifest["world_size"] == 2
    assert (out / "checkpoint-2/adapter_model.safetensors").is_file() and not (out / "checkpoint-4").exists()
