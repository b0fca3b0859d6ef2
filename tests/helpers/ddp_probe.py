"""Run ``medsft.train`` and record, per rank, the examples each training step saw and how the model was distributed
(for tests/test_multiprocess.py, and to check by hand what a launch config really did).

accelerate launch --config_file accelerate_configs/multi_cpu.yaml tests/helpers/ddp_probe.py RECORD_DIR <train args>

Recorded per rank: the hashes of the examples trained on; the accelerator's distributed type, whether FSDP or
DeepSpeed was on, and whether the trained parameters were sharded (FSDP2 keeps them as DTensors, DeepSpeed ZeRO-3 as
partitioned parameters with a ``ds_tensor``; either way each rank holds only its shard).
"""

import hashlib
import json
import sys
from pathlib import Path

from accelerate import PartialState
from torch.distributed.tensor import DTensor
from trl import SFTTrainer

from medsft.core.errors import run_cli
from medsft.train import main

record_dir = Path(sys.argv[1])
seen: list[str] = []
sharding: dict = {}
original_step = SFTTrainer.training_step


def _local(p) -> int:
    """Elements of ``p`` this rank holds."""
    if isinstance(p, DTensor):
        return p.to_local().numel()
    return p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()


def _sharding(trainer) -> dict:
    params = list(trainer.model_wrapped.parameters())
    trainable = [p for p in params if p.requires_grad]
    return {
        "distributed_type": str(trainer.accelerator.distributed_type),
        "is_fsdp_enabled": bool(trainer.is_fsdp_enabled),
        "is_deepspeed_enabled": bool(trainer.is_deepspeed_enabled),
        "sharded_params": sum(isinstance(p, DTensor) or hasattr(p, "ds_tensor") for p in params),
        "params": len(params),
        "local_trainable_elements": sum(_local(p) for p in trainable),
        "full_trainable_elements": sum(getattr(p, "ds_numel", p.numel()) for p in trainable),
    }


def recording_step(self, model, inputs, *args, **kwargs):
    if not sharding:
        sharding.update(_sharding(self))
    ids = inputs["input_ids"]
    if "position_ids" in inputs:  # padding-free: one row, examples start where positions restart at 0
        row, pos = ids[0].tolist(), inputs["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(row)]
        examples = [row[s:e] for s, e in zip(starts, starts[1:])]
    else:
        mask = inputs["attention_mask"]
        examples = [r[m.bool()].tolist() for r, m in zip(ids, mask)]
    seen.extend(hashlib.sha1(json.dumps(e).encode()).hexdigest() for e in examples)
    return original_step(self, model, inputs, *args, **kwargs)


def probe() -> None:
    SFTTrainer.training_step = recording_step
    trainer = main(sys.argv[2:])
    state = PartialState()
    record_dir.mkdir(parents=True, exist_ok=True)
    record = {"world_size": state.num_processes, "examples": seen, "steps": trainer.state.global_step, **sharding}
    (record_dir / f"rank{state.process_index}.json").write_text(json.dumps(record))


run_cli(probe, "medsft.train")  # ends each rank as medsft.train's CLI does (a refusal: one line, exit status 2)
