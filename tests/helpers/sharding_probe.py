"""Run ``medsft.train`` and record, per rank, how the trained model was distributed (for tests/test_multiprocess.py).

accelerate launch --config_file CONFIG tests/helpers/sharding_probe.py RECORD_DIR <train args>

Recorded: the accelerator's distributed type, whether FSDP was on, and whether the parameters the optimizer stepped
were sharded (FSDP2 keeps them as DTensors, each rank holding only its shard).
"""

import json
import sys
from pathlib import Path

from accelerate import PartialState
from trl import SFTTrainer

from medsft.core.errors import destroy_process_group
from medsft.train import main

record_dir = Path(sys.argv[1])
seen: dict = {}
original_step = SFTTrainer.training_step


def recording_step(self, model, inputs, *args, **kwargs):
    if not seen:
        from torch.distributed.tensor import DTensor

        params = list(self.model_wrapped.parameters())
        trainable = [p for p in params if p.requires_grad]
        seen.update(
            distributed_type=str(self.accelerator.distributed_type),
            is_fsdp_enabled=bool(self.is_fsdp_enabled),
            dtensor_params=sum(isinstance(p, DTensor) for p in params),
            params=len(params),
            trainable_sharded=all(isinstance(p, DTensor) for p in trainable),
            local_trainable_elements=sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in trainable),
            full_trainable_elements=sum(p.numel() for p in trainable),
        )
    return original_step(self, model, inputs, *args, **kwargs)


SFTTrainer.training_step = recording_step
trainer = main(sys.argv[2:])
state = PartialState()
record_dir.mkdir(parents=True, exist_ok=True)
(record_dir / f"rank{state.process_index}.json").write_text(
    json.dumps({"world_size": state.num_processes, "steps": trainer.state.global_step, **seen})
)
destroy_process_group()  # as medsft.train's CLI does: without it gloo can abort at interpreter exit
