"""FSDP and DeepSpeed as the launcher asked for them: FSDP2 on CPU process groups too, the checkpoint layout a launch
reads and writes, and the check that the sharding asked for is really in effect."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from transformers import Trainer, TrainingArguments

from medsft.core.errors import MedsftError


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


def refuse_sharded_evaluation() -> None:
    """``medsft.evaluate`` is data-parallel: refuse an FSDP or DeepSpeed launch instead of silently ignoring it.

    Every process holds the whole model and scores its share of the questions (results identical to one process);
    nothing shards it. A launch config that asks for sharding was chosen because the model does not fit one device,
    which evaluation would only discover when it runs out of memory.
    """
    engine = (
        "FSDP" if _env_flag("ACCELERATE_USE_FSDP") else "DeepSpeed" if _env_flag("ACCELERATE_USE_DEEPSPEED") else None
    )
    if engine:
        raise MedsftError(
            f"the launch config asks for {engine}, but medsft.evaluate is data-parallel (every process holds the "
            "whole model, results identical to one process): launch it with accelerate_configs/multi_gpu.yaml (or "
            "multi_cpu.yaml, or no config); a base that does not fit one GPU can be evaluated in 4-bit "
            "(--load_in_4bit true)"
        )


def fsdp_requested(args: TrainingArguments) -> bool:
    """FSDP asked for by an accelerate launch config (``accelerate_configs/fsdp.yaml``) or the Trainer's ``--fsdp``."""
    return _env_flag("ACCELERATE_USE_FSDP") or args.fsdp_plugin_args is not None


def deepspeed_requested(args: TrainingArguments) -> bool:
    return _env_flag("ACCELERATE_USE_DEEPSPEED") or bool(args.deepspeed)


def launch_checkpoint_layout(args: TrainingArguments) -> str:
    """How this launch's Trainer saves and reads checkpoints (``medsft.run_dir.checkpoints.checkpoint_layout``)."""
    if deepspeed_requested(args):
        return "DeepSpeed"
    if fsdp_requested(args):
        # accelerate's FullyShardedDataParallelPlugin: the Trainer's fsdp_config, else the launch config; FSDP2's
        # default is sharded
        state_dict_type = (args.fsdp_plugin_args or {}).get("state_dict_type") or os.environ.get(
            "FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT"
        )
        return f"FSDP ({str(state_dict_type).upper()})"
    return "plain"


@contextmanager
def fsdp_on_cpu(args: TrainingArguments) -> Iterator[None]:
    """While the Trainer builds its ``Accelerator``, let accelerate engage FSDP for a CPU (gloo) process group.

    accelerate 1.16 enables FSDP only for GPU/accelerator process groups (``AcceleratorState``: the FSDP branch is
    reached from ``MULTI_GPU``, ``MULTI_XPU``, …, never ``MULTI_CPU``); on CPU the shipped ``fsdp.yaml`` silently
    trained a full copy of the model per process. torch's FSDP2 (``fully_shard``) runs on CPU with gloo, and
    accelerate's FSDP2 code path has nothing GPU-specific that a LoRA run reaches: so the CPU group is presented as a
    device group for that one decision, after which accelerate records ``DistributedType.FSDP`` itself. This is what
    lets CI train, save and resume FSDP2 runs on CPU (tests/test_modeling_sharding.py), and a CPU user test a sharding
    config before renting GPUs. Where it does not take, ``check_sharding_engaged`` refuses the run.
    """
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    engage = fsdp_requested(args) and shared.get("distributed_type") == DistributedType.MULTI_CPU
    if engage:
        shared["distributed_type"] = DistributedType.MULTI_GPU
    try:
        yield
    finally:
        if engage and shared.get("distributed_type") == DistributedType.MULTI_GPU:  # accelerate did not take it
            shared["distributed_type"] = DistributedType.MULTI_CPU


def check_sharding_engaged(trainer: Trainer) -> None:
    """Refuse a run whose launcher asked for FSDP or DeepSpeed when the Trainer did not engage it.

    Measured (accelerate 1.16, transformers 5.25, a machine without GPUs): with an FSDP or DeepSpeed launch config
    that accelerate does not act on, every process silently trains a full copy of the model
    (tests/helpers/ddp_probe.py showed no sharded parameter). Someone who chose a sharding config because the model
    does not fit one device must hear it before training, not after.
    """
    asked = {"FSDP": fsdp_requested(trainer.args), "DeepSpeed": deepspeed_requested(trainer.args)}
    engaged = {"FSDP": trainer.is_fsdp_enabled, "DeepSpeed": trainer.is_deepspeed_enabled}
    missing = [name for name, wanted in asked.items() if wanted and not engaged[name]]
    if missing:
        device = "CPU" if trainer.args.use_cpu or trainer.args.device.type == "cpu" else trainer.args.device.type
        raise MedsftError(
            f"the launch config asks for {missing[0]}, but accelerate did not enable it here (device: {device}), so "
            "every process would train a full copy of the model; see accelerate_configs/README.md for what runs where"
        )


def gather_for_final_save(trainer: Trainer) -> None:
    """Make the final ``save_model`` write a whole adapter/model even when checkpoints are sharded.

    With ``fsdp_state_dict_type: SHARDED_STATE_DICT`` (FSDP2's default) the Trainer's ``save_model`` writes nothing
    but the tokenizer and card: measured on CPU, a LoRA run "finished" with no adapter_model.safetensors. The
    checkpoints stay sharded (cheap to write, what resume reads); the result is gathered once, as TRL and peft
    recommend for FSDP.
    """
    if trainer.is_fsdp_enabled and "FULL_STATE_DICT" not in str(trainer.accelerator.state.fsdp_plugin.state_dict_type):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
