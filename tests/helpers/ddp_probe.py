"""Run ``medsft.train`` and record, per rank, the examples each training step saw (for tests/test_multiprocess.py).

accelerate launch --config_file accelerate_configs/multi_cpu.yaml tests/helpers/ddp_probe.py RECORD_DIR <train args>
"""

import hashlib
import json
import sys
from pathlib import Path

from accelerate import PartialState
from trl import SFTTrainer

from medsft.core.errors import destroy_process_group
from medsft.train import main

record_dir = Path(sys.argv[1])
seen: list[str] = []
original_step = SFTTrainer.training_step


def recording_step(self, model, inputs, *args, **kwargs):
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


SFTTrainer.training_step = recording_step
trainer = main(sys.argv[2:])
state = PartialState()
record_dir.mkdir(parents=True, exist_ok=True)
(record_dir / f"rank{state.process_index}.json").write_text(
    json.dumps({"world_size": state.num_processes, "examples": seen, "steps": trainer.state.global_step})
)
destroy_process_group()  # as medsft.train's CLI does: without it gloo can abort at interpreter exit
