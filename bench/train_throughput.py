"""Training throughput in real (non-pad) tokens per second: packed vs padded to max_length vs dynamic padding.

Three short runs of the same recipe (WikiDoc, SmolLM2 LoRA by default) through ``medsft.train``, differing only in
how examples become batches:

- ``packed``: the recipe as shipped, TRL's best-fit-decreasing packing in the layout ``--packed_layout auto``
  picks for the machine (``medsft.modeling.packing``: per-example SDPA on CPU, one row per bin on a GPU without
  flash-attn);
- ``packed_segments``, ``packed_rows``, ``packed_padding_free``: the same packing in each layout by name
  (``packed_padding_free`` is TRL's one concatenated row with a dense block-diagonal attention);
- ``packed_fused``: the recipe as shipped with TRL's chunked fused LM head forced (``--loss_head fused``; on CPU
  ``auto`` computes the loss from the model's full logits instead, ``medsft.modeling.trainer``);
- ``padded``: the seed notebooks' ``padding="max_length"`` (``--packing false --pad_to_multiple_of max_length``);
- ``dynamic``: padding to the longest example of each batch (``--packing false``).

Every step's real tokens (attention-mask ones, or every token when padding-free) and its wall time are recorded by a
Trainer callback; the first ``--warmup`` steps are left out. Ratios are from one run of this script.

On CUDA the callback synchronizes at each step's start and end (kernels run asynchronously, so wall time would
otherwise drift between steps), and the script also reports model FLOPs utilisation (MFU): the FLOPs the model needs
for the real tokens, divided by time and by the GPU's dense peak for the training dtype. Model FLOPs are counted, per
real token, as 2 (forward) + 2 (gradient of the input) per frozen matmul weight, 6 per trainable (LoRA) weight, plus
attention's 12 x layers x hidden x sequence length (PaLM's accounting, Chowdhery et al. 2022, appendix B; a frozen
weight needs no weight gradient, hence 4 rather than 6). Gradient checkpointing's recomputed forward is not counted:
this is MFU, not hardware FLOPs utilisation. Pad tokens count for nothing.

```bash
python bench/train_throughput.py --recipe recipes/wikidoc_qlora_smollm2.yaml \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --data ../shared/data/wikidoc_patient_information --steps 4 --max_length 512 --batch_size 4 \\
    --override="--load_in_4bit false"   # plain LoRA (the recipe is QLoRA)
```
GPT-2-size LoRA in bf16 on a GPU (MFU):

```bash
python bench/train_throughput.py --recipe recipes/wikidoc_qlora.yaml --model gpt2 \\
    --data medalpaca/medical_meadow_wikidoc_patient_information --steps 20 --warmup 3 --max_length 1024 \\
    --batch_size 16 --override="--load_in_4bit false --dtype bfloat16 --bf16 true" \\
    --out bench/results/gpu_throughput_gpt2_lora_bf16.json      # what `make gpu-bench` runs, with local paths
```
Each variant runs in a fresh process (the allocator setting holds for a whole process); the table divides every
variant by ``--baseline`` (default: the first). CPU precision and host memory, e.g. the MedQuAD recipe before and
after 2026-12-06 (``packed_fp32_return`` is the float32 recipe that returned freed memory):

```bash
python bench/train_throughput.py --recipe recipes/medquad_smollm2.yaml \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --data ../shared/data/medquad \\
    --steps 4 --warmup 1 --max_length 1024 --batch_size 4 \\
    --variants packed_fp32_return,packed_fp32_keep,packed_bf16_return,packed_bf16_keep \\
    --out bench/results/cpu_precision_medquad.json   # `make cpu-precision`
```
Writes ``bench/results/train_throughput.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shlex
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.pytorch_utils import Conv1D

# Dense (no sparsity) peak TFLOP/s by GPU and compute dtype, from NVIDIA's H100/H200 SXM datasheets; float32 is the
# non-tensor-core peak (PyTorch does not use TF32 for float32 matmuls unless asked to).
PEAK_TFLOPS = {"H100 80GB HBM3": {"bfloat16": 989.4, "float32": 66.9}, "H200": {"bfloat16": 989.4, "float32": 66.9}}

VARIANTS = {
    "packed": [],
    "packed_segments": ["--packed_layout", "segments"],
    "packed_rows": ["--packed_layout", "rows"],
    "packed_padding_free": ["--packed_layout", "padding_free"],
    "packed_fused": ["--loss_head", "fused"],
    "padded": ["--packing", "false", "--padding_free", "false", "--pad_to_multiple_of", "{max_length}"],
    "dynamic": ["--packing", "false", "--padding_free", "false"],
    # compute precision and what happens to freed host memory, each way whatever the recipe says (CPU speed)
    "packed_fp32_return": ["--bf16", "false", "--return_freed_memory", "true"],
    "packed_fp32_keep": ["--bf16", "false", "--return_freed_memory", "false"],
    "packed_bf16_return": ["--bf16", "true", "--return_freed_memory", "true"],
    "packed_bf16_keep": ["--bf16", "true", "--return_freed_memory", "false"],
}


class TokenMeter(TrainerCallback):
    """Real tokens and wall time per optimizer step, from the batches the trainer actually trains on."""

    def __init__(self):
        self.steps: list[dict] = []
        self._tokens = self._padded = self._square_lengths = 0
        self._start = None
        self.flops_per_token = self.attention_flops_per_square_token = 0
        self.dtype = "float32"

    def count(self, inputs) -> None:
        lengths = sequence_lengths(inputs)
        self._tokens += sum(lengths)
        self._padded += inputs["input_ids"].numel()
        self._square_lengths += sum(n * n for n in lengths)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        frozen = trainable = 0
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                size = module.in_features * module.out_features  # not weight.numel(): 4-bit weights are packed
            elif isinstance(module, Conv1D):  # GPT-2's transposed linear layers
                size = module.weight.shape[0] * module.weight.shape[1]
            else:
                continue
            if module.weight.requires_grad:
                trainable += size
            else:
                frozen += size
        config = model.config
        self.dtype = "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
        self.flops_per_token = 4 * frozen + 6 * trainable
        self.attention_flops_per_square_token = 12 * config.num_hidden_layers * config.hidden_size

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._tokens = self._padded = self._square_lengths = 0
        self._start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        seconds = self._now() - self._start
        flops = self._tokens * self.flops_per_token + self._square_lengths * self.attention_flops_per_square_token
        self.steps.append(
            {"seconds": seconds, "real_tokens": self._tokens, "batch_tokens": self._padded, "model_flops": flops}
        )


def sequence_lengths(inputs) -> list[int]:
    """Real lengths of the sequences in a batch: rows of the attention mask, or, packed, the runs of
    ``position_ids`` that restart at 0 (one per packed example). Row-end padding of a packed batch has position 0 at
    every token: runs of one token, which no example is (it has at least its text and EOS), are not counted."""
    mask = inputs.get("attention_mask")
    if mask is not None:
        return mask.sum(dim=1).tolist()
    lengths = []
    for positions in inputs["position_ids"]:
        starts = (positions == 0).nonzero().flatten().tolist() + [positions.numel()]
        lengths += [b - a for a, b in zip(starts, starts[1:]) if b - a > 1]
    return lengths


def run_variant(name: str, args) -> dict:
    """One variant's short run, in the process that calls it (``main`` gives each its own)."""
    from trl import SFTTrainer

    from medsft.train import main as train

    original = SFTTrainer.training_step

    def counting_step(self, model, inputs, *a, **kw):
        meter.count(inputs)
        return original(self, model, inputs, *a, **kw)

    meter = TokenMeter()
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
                    "--load_best_model_at_end", "false", "--early_stopping_patience", "0", "--logging_steps", "1000",
                    "--disable_tqdm", "true",
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
    flops = sum(s["model_flops"] for s in measured)
    return {
        "compute_dtype": meter.dtype,
        "peak_resident_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # Linux: KiB
        "steps": len(measured),
        "seconds": seconds,
        "real_tokens": real,
        "batch_tokens": batch,
        "real_token_share": real / batch,
        "real_tokens_per_second": real / seconds,
        "model_tflops_per_second": flops / seconds / 1e12,
    }


def peak_tflops(dtype: str) -> float | None:
    """The GPU's dense peak TFLOP/s for the training dtype (None on CPU or a GPU missing from PEAK_TFLOPS)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peaks.get(dtype) for gpu, peaks in PEAK_TFLOPS.items() if gpu in name), None)


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from medsft.core.environment import cpu_has_bf16, library_versions

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
    parser.add_argument("--baseline", default=None, help="the variant the 'vs' column divides by (default: the first)")
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    args = parser.parse_args()

    names = args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    baseline_name = args.baseline or names[0]
    if baseline_name not in names:
        parser.error(f"--baseline {baseline_name} is not one of --variants")
    # Each variant in a fresh process: the allocator setting (return_freed_memory) holds for a whole process, and
    # a variant should not start with the heap, caches or peak memory the one before it left.
    results = {}
    for name in names:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results[name] = pool.submit(run_variant, name, args).result()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    for r in results.values():
        peak = peak_tflops(r["compute_dtype"])
        r["mfu"] = r["model_tflops_per_second"] / peak if peak else None
        r["vs_baseline"] = r["real_tokens_per_second"] / results[baseline_name]["real_tokens_per_second"]
    report = {
        "machine": f"{platform.machine()}, {device}",
        "cpu_bf16_instructions": cpu_has_bf16() if not torch.cuda.is_available() else None,
        "versions": library_versions(),
        "command_settings": vars(args),
        # what the variants' processes inherit that changes CPU speed (threads, allocator, huge pages)
        "environment": {
            name: os.environ.get(name)
            for name in ("OMP_NUM_THREADS", "THP_MEM_ALLOC_ENABLE", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
        },
        "baseline": baseline_name,
        "results": results,
    }
    for baseline in ("padded", "dynamic"):
        if baseline in results and "packed" in results:
            report[f"packed_vs_{baseline}"] = (
                results["packed"]["real_tokens_per_second"] / results[baseline]["real_tokens_per_second"]
            )
        for r in results.values():
            r[f"vs_{baseline}"] = (
                r["real_tokens_per_second"] / results[baseline]["real_tokens_per_second"]
                if baseline in results
                else None
            )
    for r in results.values():
        # Time per position the model computed (pads included): the per-token cost of a layout's attention
        r["seconds_per_1k_positions"] = 1000 * r["seconds"] / r["batch_tokens"]
    table = Table(title=f"Training real tokens/s, {Path(args.recipe).stem}, {report['machine']}")
    columns = ("variant", "dtype", "real tokens/s", "real-token share", "steps", "seconds", "s/1k positions",
               f"vs {baseline_name}", "vs padded", "vs dynamic", "TFLOP/s", "MFU", "peak RSS GiB")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")

    def ratio(value: float | None) -> str:
        return f"{value:.2f}×" if value is not None else "n/a"

    for name, r in results.items():
        table.add_row(
            name, r["compute_dtype"], f"{r['real_tokens_per_second']:.1f}", f"{r['real_token_share']:.2f}",
            str(r["steps"]), f"{r['seconds']:.1f}", f"{r['seconds_per_1k_positions']:.2f}", ratio(r["vs_baseline"]),
            ratio(r["vs_padded"]), ratio(r["vs_dynamic"]), f"{r['model_tflops_per_second']:.2f}",
            f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a", f"{r['peak_resident_gib']:.2f}",
        )  # fmt: skip
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
