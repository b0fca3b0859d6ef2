"""FSDP2 and DeepSpeed ZeRO-3 really run: two CPU processes (gloo) train a QLoRA (4-bit) or LoRA recipe sharded, save
a normal peft adapter, match the DDP run of the same recipe and seed, and resume from their own checkpoints;
checkpoints of one engine are refused, in one line, by a launch of another; evaluation refuses a sharded launch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import RECIPE_FOR, RUN_FLAGS, cpu_launch_config, launch_training, probe_records, recipe_argv

# The sharded engines average the same gradients as DDP's all-reduce; measured: FSDP2 identical adapters (difference
# 0), ZeRO-3 within 8e-7 (adapter values around 0.1: a few float32 roundings)
ADAPTER_ATOL = 1e-5


def assert_same_adapter(run: Path, reference: Path) -> None:
    """The run's adapter equals the reference's within ADAPTER_ATOL, and training moved it (LoRA B starts at 0)."""
    ours, theirs = load_file(run / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert tensor.shape == theirs[name].shape, name
        assert torch.allclose(tensor, theirs[name], rtol=0, atol=ADAPTER_ATOL), name
    assert all(tensor.abs().max() > 1e-4 for name, tensor in ours.items() if "lora_B" in name)


def assert_sharded(ranks: list[dict], engine: str) -> None:
    """Both ranks trained 4 steps with ``engine`` on, every parameter sharded, each rank holding half the adapter."""
    for r in ranks:
        assert r["world_size"] == 2 and r["steps"] == 4
        assert r["distributed_type"] == f"DistributedType.{engine}"
        assert r["sharded_params"] == r["params"] > 0
        assert r["local_trainable_elements"] * 2 == r["full_trainable_elements"]
    assert not set(ranks[0]["examples"]) & set(ranks[1]["examples"])


def resume_and_compare(config: Path, tmp_path: Path, kind: str, model: str, data: str, run: Path) -> None:
    """Resume the run's first checkpoint into a new directory: the result is the uninterrupted run's adapter."""
    resumed = tmp_path / "resumed"
    proc = launch_training(
        config, tmp_path / "record-resumed", RECIPE_FOR[kind], model, data, resumed, *RUN_FLAGS[kind],
        "--resume_from_checkpoint", str(run / "checkpoint-2"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((resumed / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["resumed_at_step"] == 2
    assert_same_adapter(resumed, run)


@pytest.mark.multiprocess
@pytest.mark.parametrize(
    ("kind", "state_dict_type"),
    [("gpt2", "FULL_STATE_DICT"), ("llama", "SHARDED_STATE_DICT")],
    ids=["gpt2-qlora-full-state-dict", "llama-lora-sharded-state-dict"],
)
def test_fsdp2_trains_sharded_saves_a_peft_adapter_matches_ddp_and_resumes(
    kind, state_dict_type, ddp_reference, tiny_gpt2, tiny_llama, wikidoc_small, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from medsft.core.errors import MedsftError
    from medsft.run_dir.resume import check_checkpoint_layout

    model = {"gpt2": tiny_gpt2, "llama": tiny_llama}[kind]
    config = cpu_launch_config("fsdp", tmp_path, fsdp_config={"fsdp_state_dict_type": state_dict_type})
    run = tmp_path / "run"
    proc = launch_training(config, tmp_path / "record", RECIPE_FOR[kind], model, wikidoc_small, run, *RUN_FLAGS[kind])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_sharded(probe_records(tmp_path / "record"), "FSDP")
    reference, _ = ddp_reference(kind)
    assert_same_adapter(run, reference)

    # a normal peft adapter: loads on one process, without FSDP, with every saved weight in place
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), str(run))
    saved = load_file(run / "adapter_model.safetensors")
    state = {k.replace(".default", ""): v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)

    resume_and_compare(config, tmp_path, kind, model, wikidoc_small, run)
    with pytest.raises(MedsftError, match=rf"saved by an FSDP \({state_dict_type}\) run and this launch is a run "):
        check_checkpoint_layout(run / "checkpoint-2", "plain")


@pytest.mark.multiprocess
def test_deepspeed_zero3_trains_sharded_matches_ddp_and_resumes(ddp_reference, tiny_llama, wikidoc_small, tmp_path):
    """The shipped ZeRO-3 config (not for 4-bit: the Llama-type model's LoRA run)."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install -e '.[deepspeed]'")
    config = cpu_launch_config("deepspeed_zero3", tmp_path)
    run = tmp_path / "run"
    proc = launch_training(
        config, tmp_path / "record", RECIPE_FOR["llama"], tiny_llama, wikidoc_small, run, *RUN_FLAGS["llama"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_sharded(probe_records(tmp_path / "record"), "DEEPSPEED")
    assert_same_adapter(run, ddp_reference("llama")[0])
    assert (run / "checkpoint-2" / "global_step2").is_dir()
    resume_and_compare(config, tmp_path, "llama", tiny_llama, wikidoc_small, run)


def test_a_sharding_launch_that_did_not_engage_is_refused_before_training(
    tiny_gpt2, wikidoc_small, tmp_path, monkeypatch
):
    """One process with an FSDP launch config (accelerate enables FSDP only for a process group): refused, in one line,
    with nothing written, instead of training an unsharded copy."""
    from medsft.core.errors import MedsftError
    from medsft.train import main as train

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    out = tmp_path / "run"
    with pytest.raises(MedsftError, match="the launch config asks for FSDP, but accelerate did not enable it here"):
        train(recipe_argv("wikidoc_qlora", tiny_gpt2, out, "--dataset_name", wikidoc_small, "--max_steps", "1"))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_evaluate_refuses_a_sharded_launch(engine, tiny_gpt2, monkeypatch):
    from medsft.core.errors import MedsftError
    from medsft.evaluate import main as evaluate

    monkeypatch.setenv(f"ACCELERATE_USE_{engine}", "true")
    with pytest.raises(MedsftError, match="medsft.evaluate is data-parallel .* accelerate_configs/multi_gpu.yaml"):
        evaluate(["--model_name_or_path", tiny_gpt2, "--tasks", "pubmedqa"])


def _checkpoint(path: Path, files: dict[str, bool], dirs: dict[str, bool] | None = None) -> Path:
    """A checkpoint folder: ``files`` torch-saved (truncated where False), ``dirs`` with or without ``.metadata``."""
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name.split("-")[1])}))
    for name, complete in files.items():
        torch.save({"x": torch.zeros(64)}, path / name)
        if not complete:
            (path / name).write_bytes((path / name).read_bytes()[:100])
    for name, complete in (dirs or {}).items():
        (path / name).mkdir()
        (path / name / "__0_0.distcp").write_bytes(b"shard")
        if complete:
            (path / name / ".metadata").write_bytes(b"written last")
    return path


def test_checkpoint_layouts_and_their_completeness(tmp_path):
    from medsft.run_dir.checkpoints import checkpoint_layout, checkpoint_problem

    full = _checkpoint(tmp_path / "a/checkpoint-2", {"pytorch_model_fsdp.bin": True, "optimizer.bin": True})
    assert checkpoint_layout(full) == "FSDP (FULL_STATE_DICT)" and checkpoint_problem(full) is None
    cut = _checkpoint(tmp_path / "b/checkpoint-2", {"pytorch_model_fsdp.bin": True, "optimizer.bin": False})
    assert checkpoint_problem(cut) == "optimizer.bin is truncated"
    no_optimizer = _checkpoint(tmp_path / "c/checkpoint-2", {"pytorch_model_fsdp.bin": True})
    assert checkpoint_problem(no_optimizer) == "no optimizer state (optimizer.pt)"
    sharded = _checkpoint(tmp_path / "d/checkpoint-2", {}, {"pytorch_model_fsdp_0": True, "optimizer_0": True})
    assert checkpoint_layout(sharded) == "FSDP (SHARDED_STATE_DICT)" and checkpoint_problem(sharded) is None
    half = _checkpoint(tmp_path / "e/checkpoint-2", {}, {"pytorch_model_fsdp_0": True, "optimizer_0": False})
    assert checkpoint_problem(half) == "optimizer_0/ has no .metadata"
    plain = _checkpoint(tmp_path / "f/checkpoint-2", {"pytorch_model.bin": True, "optimizer.pt": True})
    assert checkpoint_layout(plain) == "plain" and checkpoint_problem(plain) is None
    deepspeed = _checkpoint(tmp_path / "g/checkpoint-2", {"adapter_model.bin": True}, {"global_step2": True})
    assert checkpoint_layout(deepspeed) == "DeepSpeed"


@pytest.mark.parametrize(
    ("env", "layout"),
    [
        ({}, "plain"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"}, "FSDP (FULL_STATE_DICT)"),
        ({"ACCELERATE_USE_FSDP": "true"}, "FSDP (SHARDED_STATE_DICT)"),  # FSDP2's default
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed"),
    ],
)
def test_the_layout_a_launch_resumes_from(env, layout, monkeypatch, tmp_path):
    from transformers import TrainingArguments

    from medsft.modeling.sharding import launch_checkpoint_layout

    for name in ("ACCELERATE_USE_FSDP", "FSDP_STATE_DICT_TYPE", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launch_checkpoint_layout(args) == layout
