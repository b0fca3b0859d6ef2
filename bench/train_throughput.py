"""Training throughput in real (non-pad) tokens per second: packed vs padded to max_length vs dynamic padding.

Three short runs of the same recipe (WikiDoc, SmolLM2 LoRA by default) through ``medsft.train``, differing only in
how examples become batches:

- ``packed``: the recipe as shipped, TRL's best-fit-decreasing packing, padding-free (no pad tokens at all);
- ``padded``: the seed notebooks' ``padding="max_length"`` (``--packing false --pad_to_multiple_of max_length``);
- ``dynamic``: padding to the longest example of each batch (``--packing false``).

Every step's real tokens (attention-mask ones, or every token when padding-free) and its wall time are recorded by a
Trainer callback; the first ``--warmup`` steps are left out. Ratios are from one run of this script.

```bash
python bench/train_throughput.py --recipe recipes/wikidoc_qlora_smollm2.yaml \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --data ../shared/data/wikidoc_patient_information --steps 4 --max_length 512 --batch_size 4 \\
    --override="--load_in_4bit false"   # plain LoRA (the recipe is QLoRA)
```
Writes ``bench/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

VARIANTS = {
    "packed": [],
    "padded": ["--packing", "false", "--padding_free", "false", "--pad_to_multiple_of", "{max_length}"],
    "dynamic": ["--packing", "false", "--padding_free", "false"],
}


class TokenMeter(TrainerCallback):
    """Real tokens and wall time per optimizer step, from the batches the trainer actually trains on."""

    def __init__(self):
        self.steps: list[dict] = []
        self._tokens = self._padded = 0
        self._start = None

    def count(self, inputs) -> None:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        self._tokens += int(mask.sum()) if mask is not None else ids.numel()
        self._padded += ids.numel()

    def on_step_begin(self, args, state, control, **kwargs):
        self._tokens = self._padded = 0
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self._start
        self.steps.append({"seconds": seconds, "real_tokens": self._tokens, "batch_tokens": self._padded})


def run_variant(name: str, args, meter: TokenMeter) -> dict:
    from trl import SFTTrainer

    from medsft.train import main as train

    original = SFTTrainer.training_step

    def counting_step(self, model, inputs, *a, **kw):
        meter.count(inputs)
        return original(self, model, inputs, *a, **kw)

    SFTTrainer.training_step = counting_step
    try:
        with tempfile.TemporaryDirectory() as out:
            extra = [a.format(max_length=args.max_length) for a in VARIANTS[name]]
            train(
                [
                    args.recipe, "--model_name_or_path", args.model, "--dataset_name", args.data,
                    "--output_dir", out, "--max_steps", str(args.steps + args.warmup),
                    "--max_length", str(args.max_length), "--per_device_train_batch_size", str(args.batch_size),
                    "--gradient_accumulation_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
                    "--load_best_model_at_end", "false", "--logging_steps", "1000", "--disable_tqdm", "true",
                    "--warmup_steps", "0", *extra, *shlex.split(args.override),
                ],
                callbacks=[meter],
            )  # fmt: skip
    finally:
        SFTTrainer.training_step = original
    measured = meter.steps[args.warmup :]
    seconds = sum(s["seconds"] for s in measured)
    real = sum(s["real_tokens"] for s in measured)
    batch = sum(s["batch_tokens"] for s in measured)
    return {
        "steps": len(measured),
        "seconds": seconds,
        "real_tokens": real,
        "batch_tokens": batch,
        "real_token_share": real / batch,
        "real_tokens_per_second": real / seconds,
    }


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from medsft.run_dir import library_versions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/wikidoc_qlora_smollm2.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--variants", default="packed,padded,dynamic")
    parser.add_argument("--override", default="", help='more medsft.train flags: --override="--load_in_4bit false"')
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    args = parser.parse_args()

    results = {name: run_variant(name, args, TokenMeter()) for name in args.variants.split(",")}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    report = {
        "machine": f"{platform.machine()}, {device}",
        "versions": library_versions(),
        "command_settings": vars(args),
        "results": results,
    }
    if "padded" in results:
        report["packed_vs_padded"] = (
            results["packed"]["real_tokens_per_second"] / results["padded"]["real_tokens_per_second"]
            if "packed" in results
            else None
        )
    table = Table(title=f"Training real tokens/s, {Path(args.recipe).stem}, {report['machine']}")
    for column in ("variant", "real tokens/s", "real-token share", "steps", "seconds", "vs padded"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        ratio = r["real_tokens_per_second"] / results["padded"]["real_tokens_per_second"] if "padded" in results else 0
        table.add_row(
            name, f"{r['real_tokens_per_second']:.1f}", f"{r['real_token_share']:.2f}", str(r["steps"]),
            f"{r['seconds']:.1f}", f"{ratio:.2f}×",
        )  # fmt: skip
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
