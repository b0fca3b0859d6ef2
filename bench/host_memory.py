"""Peak host memory of one CPU training step of a recipe, with glibc's default allocator settings and with medsft's
(``medsft.core.memory.return_freed_memory``): each variant trains in its own fresh process.

```bash
python bench/host_memory.py --recipe recipes/wikidoc_qlora_smollm2.yaml \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --data ../shared/data/wikidoc_patient_information --out bench/results/host_memory_smollm2.json
```
One optimizer step of one micro-batch (the recipe's batch and max_length unless given), checkpoints off. Reports the
peak resident set (``ru_maxrss``) and the peak of anonymous memory (``RssAnon`` sampled every 10 ms) of each.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.qlora_memory import AnonymousPeak  # noqa: E402

VARIANTS = ("glibc_default", "medsft")


def child(variant: str, args) -> dict:
    """Runs in the child process: one training step, with or without medsft's allocator setting."""
    import medsft.train

    if variant == "glibc_default":
        medsft.train.return_freed_memory = lambda: False
    anonymous = AnonymousPeak().__enter__()
    with tempfile.TemporaryDirectory() as out:
        argv = [
            args.recipe, "--model_name_or_path", args.model, "--dataset_name", args.data, "--output_dir", out,
            "--max_steps", "1", "--warmup_steps", "0", "--gradient_accumulation_steps", "1",
            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--disable_tqdm", "true", "--report_to", "none", *args.extra,
        ]  # fmt: skip
        medsft.train.main(argv)
    anonymous.__exit__()
    return {
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anonymous_bytes": anonymous.peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/wikidoc_qlora_smollm2.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="bench/results/host_memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    args.extra = extra  # any further medsft.train flags, e.g. --gradient_checkpointing false
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return

    from medsft.core.environment import library_versions

    results = {}
    for variant in VARIANTS:
        argv = [sys.executable, __file__, *sys.argv[1:], "--child", variant]
        proc = subprocess.run(argv, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(lines[-1][len("RESULT ") :])
    gib = 1024**3
    report = {
        "machine": f"{platform.machine()}, CPU",
        "versions": library_versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "child"},
        "results": results,
        "peak_rss_ratio": results["medsft"]["peak_rss_bytes"] / results["glibc_default"]["peak_rss_bytes"],
    }
    for variant, result in results.items():
        print(
            f"{variant:14s} peak RSS {result['peak_rss_bytes'] / gib:.2f} GiB, "
            f"peak anonymous {result['peak_anonymous_bytes'] / gib:.2f} GiB"
        )
    print(f"medsft / glibc default, peak RSS: {report['peak_rss_ratio']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
