"""Peak memory of QLoRA (4-bit NF4 base) vs LoRA on a 32-bit base: same model, recipe, batch and steps.

Each variant trains ``--steps`` steps through ``medsft.train`` in its own fresh process, so one's peak cannot hide
the other's. On CUDA the peak is ``torch.cuda.max_memory_allocated``; on CPU it is the process's peak resident set
size (``ru_maxrss``), which also counts Python, torch and the tokenizer, so the script also runs a third process that
only imports and loads the tokenizer and data (``overhead``) and reports the ratio with and without it.

```bash
python bench/qlora_memory.py --recipe recipes/wikidoc_qlora_smollm2.yaml \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --data ../shared/data/wikidoc_patient_information --steps 2 --max_length 512 --batch_size 4
```
Peak memory does not depend on the weights' values, so ``--shape tinyllama-1.1b`` measures where weights dominate:
a randomly initialised Llama with TinyLlama-1.1B's configuration (22 layers, hidden 2,048, MLP 5,632, 32 heads,
4 key/value heads, untied embeddings) and the GPT-2 tokenizer's 50,257-entry vocabulary (``--tokenizer``), saved once
in bfloat16 to a temporary folder that every variant loads. It adds ``lora_bf16`` (LoRA on a bfloat16 base):

```bash
python bench/qlora_memory.py --recipe recipes/wikidoc_qlora_smollm2.yaml --shape tinyllama-1.1b \
    --tokenizer ../shared/models/gpt2-tokenizer --data ../shared/data/wikidoc_patient_information \
    --steps 1 --max_length 256 --batch_size 2 --out bench/results/qlora_memory_1b.json
```
Writes ``bench/results/qlora_memory.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "qlora": ["--load_in_4bit", "true"],
    "lora_fp32": ["--load_in_4bit", "false", "--dtype", "float32"],
    "lora_bf16": ["--load_in_4bit", "false", "--dtype", "bfloat16"],
}
# TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T's config.json, less its vocabulary (the tokenizer's is used)
SHAPES = {
    "tinyllama-1.1b": {
        "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
        "num_key_value_heads": 4, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False,
    },
}  # fmt: skip


def build_random_model(shape: str, tokenizer_path: str, folder: Path) -> int:
    """Save a randomly initialised bfloat16 Llama of ``shape`` with the tokenizer to ``folder``; its parameters."""
    import torch
    from transformers import AutoTokenizer, GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    except (OSError, ValueError):  # a bare vocab.json + merges.txt (../shared's GPT-2 tokenizer) names no class
        tokenizer = GPT2TokenizerFast.from_pretrained(tokenizer_path)
    config = LlamaConfig(**SHAPES[shape], vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


class AnonymousPeak:
    """The peak of the process's anonymous resident memory (``RssAnon``), sampled every 10 ms in a thread.

    ``ru_maxrss`` also counts file pages mapped into the process: transformers memory-maps safetensors files, so
    while a model loads every page of its weight file it has read is resident, though the kernel can drop those
    clean pages under pressure. Anonymous memory (tensors, Python) is what must fit in RAM. Linux only.
    """

    def __init__(self):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> AnonymousPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def child(variant: str, args) -> dict:
    """Runs in the child process: train (or, for ``overhead``, only load data and tokenizer), report the peak."""
    import torch

    from medsft.train import main as train

    anonymous = AnonymousPeak().__enter__()
    with tempfile.TemporaryDirectory() as out:
        argv = [
            args.recipe, "--model_name_or_path", args.model, "--dataset_name", args.data, "--output_dir", out,
            "--max_steps", str(args.steps), "--max_length", str(args.max_length),
            "--per_device_train_batch_size", str(args.batch_size), "--gradient_accumulation_steps", "1",
            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--disable_tqdm", "true", "--report_to", "none",
        ]  # fmt: skip
        if variant == "overhead":
            from medsft.configs.parser import parse_args
            from medsft.configs.training import (
                MedDatasetMixtureConfig,
                MedModelConfig,
                MedScriptArguments,
                MedSFTConfig,
            )
            from medsft.data.mixture import load_sft_datasets
            from medsft.modeling.loading import load_tokenizer
            from medsft.modeling.source import resolve_model_source

            script_args, _, model_args, mixture, _ = parse_args(
                (MedScriptArguments, MedSFTConfig, MedModelConfig, MedDatasetMixtureConfig), argv
            )
            load_sft_datasets(script_args, mixture)
            load_tokenizer(resolve_model_source(model_args.model_name_or_path))
        else:
            train(argv + VARIANTS[variant])
    anonymous.__exit__()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    cuda = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"peak_rss_bytes": peak_rss, "peak_anonymous_bytes": anonymous.peak, "cuda_max_allocated_bytes": cuda}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/wikidoc_qlora_smollm2.yaml")
    parser.add_argument("--model", help="the model to train (or --shape)")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="a randomly initialised model of this shape")
    parser.add_argument("--tokenizer", help="with --shape: the tokenizer (and vocabulary size) it gets")
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench/results/qlora_memory.json")
    args = parser.parse_args()
    if args.child == "build":
        print("RESULT " + json.dumps({"parameters": build_random_model(args.shape, args.tokenizer, Path(args.model))}))
        return
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return

    import torch
    from rich.console import Console
    from rich.table import Table

    from medsft.core.environment import library_versions

    if bool(args.model) == bool(args.shape) or (args.shape and not args.tokenizer):
        parser.error("give --model, or --shape with --tokenizer")
    results, parameters = {}, None
    variants = ("overhead", "qlora", "lora_fp32", "lora_bf16") if args.shape else ("overhead", "qlora", "lora_fp32")

    def run_child(variant: str, argv: list[str]) -> dict:
        proc = subprocess.run([sys.executable, __file__, *argv, "--child", variant], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        return json.loads(lines[-1][len("RESULT ") :])

    with tempfile.TemporaryDirectory() as folder:
        argv = sys.argv[1:]
        if args.shape:
            # Built in a process of its own: on Linux a child's ru_maxrss starts from its parent's peak, so a parent
            # that had held the model would floor every variant's measurement at that peak
            argv += ["--model", folder]
            parameters = run_child("build", argv)["parameters"]
        for variant in variants:
            results[variant] = run_child(variant, argv)
    gib = 1024**3
    on_cuda = results["qlora"]["cuda_max_allocated_bytes"] is not None
    key = "cuda_max_allocated_bytes" if on_cuda else "peak_rss_bytes"
    q, f, o = results["qlora"][key], results["lora_fp32"][key], results["overhead"]["peak_rss_bytes"]
    report = {
        "machine": f"{platform.machine()}, "
        + (torch.cuda.get_device_name() if on_cuda else f"CPU, {torch.get_num_threads()} threads"),
        "measure": key,
        "versions": library_versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "child"},
        "model_parameters": parameters,
        "results": results,
        "qlora_vs_lora": q / f,
        "qlora_vs_lora_without_overhead": None if on_cuda else (q - o) / (f - o),
    }
    if "lora_bf16" in results:
        b = results["lora_bf16"][key]
        report["qlora_vs_lora_bf16"] = q / b
        report["qlora_vs_lora_bf16_without_overhead"] = None if on_cuda else (q - o) / (b - o)
    if not on_cuda:
        anon = {variant: result["peak_anonymous_bytes"] for variant, result in results.items()}
        report["anonymous_qlora_vs_lora"] = anon["qlora"] / anon["lora_fp32"]
        if "lora_bf16" in anon:
            report["anonymous_qlora_vs_lora_bf16"] = anon["qlora"] / anon["lora_bf16"]
    title = args.shape or Path(args.model).name
    table = Table(title=f"Peak memory ({key}), {title}, {report['machine']}")
    for column in ("variant", "peak GiB", "above overhead GiB", "anonymous peak GiB"):
        table.add_column(column, justify="right")
    names = {"overhead": "overhead (data + tokenizer)", "qlora": "QLoRA NF4", "lora_fp32": "LoRA fp32",
             "lora_bf16": "LoRA bf16"}  # fmt: skip
    for variant, result in results.items():
        value = result[key] if variant != "overhead" else o
        table.add_row(
            names[variant],
            f"{value / gib:.2f}",
            "" if on_cuda or value == o else f"{(value - o) / gib:.2f}",
            "" if on_cuda else f"{result['peak_anonymous_bytes'] / gib:.2f}",
        )
    Console().print(table)
    ratio = f"QLoRA / LoRA = {report['qlora_vs_lora']:.2f}"
    if not on_cuda:
        ratio += f" (without the shared overhead: {report['qlora_vs_lora_without_overhead']:.2f})"
    if "qlora_vs_lora_bf16" in report:
        ratio += f"; QLoRA / LoRA bf16 = {report['qlora_vs_lora_bf16']:.2f}"
    if not on_cuda:
        ratio += f"; anonymous memory: QLoRA / LoRA = {report['anonymous_qlora_vs_lora']:.2f}"
        if "anonymous_qlora_vs_lora_bf16" in report:
            ratio += f", QLoRA / LoRA bf16 = {report['anonymous_qlora_vs_lora_bf16']:.2f}"
    print(ratio)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
