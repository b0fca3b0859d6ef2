"""Evaluation speed: medsft's batched scoring against the straightforward baseline, measured in one run.

- PubMedQA questions/second: medsft (length-sorted batches, one forward per question scoring all three choices,
  LM head on the answer positions only; ``--pubmedqa_mode chat`` scores through the chat template, where "maybe" may
  be two tokens) vs the baseline (one forward per choice, batch size 1, full log-softmax).
- Perplexity tokens/second: medsft (length-sorted batches, LM head from the first scored position) vs the
  transformers perplexity guide's loop (one text at a time, ``labels`` and the model's loss).

Both sides score the same questions/texts with the same model; the script checks that they agree (same
predictions, same perplexity) before printing the ratio.

```bash
python bench/eval_speed.py \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --pubmedqa ../shared/data/pubmedqa \\
    --wikidoc ../shared/data/wikidoc_patient_information --questions 500 --texts 100
```
Prints a table and writes ``bench/results/eval_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch


def baseline_pubmedqa(model, requests, max_length: int) -> list[list[float]]:
    """One forward per (question, choice), batch size 1 (inputs cut from the left to max_length, as medsft and
    lm-evaluation-harness do)."""
    scores = []
    for r in requests:
        row = []
        for choice in r.choices:
            whole = (r.context + choice)[-(max_length + 1) :]
            ids = torch.tensor([whole[:-1]], device=model.device)
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
            n = len(whole) - len(choice)
            row.append(sum(logp[n - 1 + i, t].item() for i, t in enumerate(choice)))
        scores.append(row)
    return scores


def baseline_perplexity(model, texts, max_length: int, stride: int) -> tuple[float, int]:
    """transformers' perplexity guide, one text at a time; only the tokens medsft scores carry labels."""
    nll, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([text.ids], device=model.device)
        scored = torch.tensor([text.scored], device=model.device)
        previous_end = 0
        for begin in range(0, ids.shape[1], stride):
            end = min(begin + max_length, ids.shape[1])
            labels = ids[:, begin:end].clone()
            keep = scored[:, begin:end].clone()
            keep[:, : max(previous_end - begin, 1)] = False
            labels[~keep] = -100
            n = int(keep.sum())
            if n:
                with torch.no_grad():
                    nll += model(ids[:, begin:end], labels=labels).loss.item() * n
                count += n
            previous_end = end
            if end == ids.shape[1]:
                break
    return nll, count


def main() -> None:
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM

    from medsft.core.environment import library_versions
    from medsft.data.pubmedqa import load_pubmedqa
    from medsft.evaluation.loglikelihood import score_choices
    from medsft.evaluation.metrics import LABELS
    from medsft.evaluation.task_perplexity import evaluate_perplexity, load_texts, prepare
    from medsft.evaluation.task_pubmedqa import build_requests
    from medsft.modeling.loading import load_tokenizer
    from medsft.modeling.source import resolve_model_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pubmedqa", required=True)
    parser.add_argument("--wikidoc", required=True)
    parser.add_argument("--pubmedqa_mode", default="loglikelihood", choices=["loglikelihood", "chat"])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--out", default="bench/results/eval_speed.json")
    args = parser.parse_args()

    source = resolve_model_source(args.model)
    tokenizer = load_tokenizer(source, need_chat_template=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32).to(device).eval()
    rows = list(load_pubmedqa(args.pubmedqa)[0]["test"])[: args.questions]
    requests = build_requests(rows, tokenizer, args.pubmedqa_mode)
    examples, _ = load_texts(args.wikidoc, "auto", "validation", "auto")
    texts = prepare(examples[: args.texts], tokenizer)
    stride = args.max_length // 2

    def timed(fn):
        start = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - start

    ours, ours_s = timed(lambda: score_choices(model, tokenizer, requests, args.max_length, args.batch_size))
    base, base_s = timed(lambda: baseline_pubmedqa(model, requests, args.max_length))
    ppl, ppl_s = timed(lambda: evaluate_perplexity(model, tokenizer, texts, args.max_length, stride, args.batch_size))
    (base_nll, base_tokens), base_ppl_s = timed(lambda: baseline_perplexity(model, texts, args.max_length, stride))

    def pick(s):
        return LABELS[max(range(3), key=s.__getitem__)]

    agree = sum(pick(a) == pick(b) for a, b in zip(ours, base))
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {device}"
        + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""),
        "versions": library_versions(),
        "model": source.name,
        "pubmedqa": {
            "mode": args.pubmedqa_mode,
            "questions": len(rows),
            "medsft_questions_per_second": len(rows) / ours_s,
            "baseline_questions_per_second": len(rows) / base_s,
            "speedup": base_s / ours_s,
            "same_prediction": agree,
            "max_abs_loglikelihood_difference": max(abs(x - y) for a, b in zip(ours, base) for x, y in zip(a, b)),
        },
        "perplexity": {
            "texts": len(texts),
            "tokens": ppl["tokens"],
            "medsft_tokens_per_second": ppl["tokens"] / ppl_s,
            "baseline_tokens_per_second": base_tokens / base_ppl_s,
            "speedup": base_ppl_s / ppl_s,
            "medsft_perplexity": ppl["perplexity"],
            "baseline_perplexity": math.exp(base_nll / base_tokens),
        },
        "batch_size": args.batch_size,
    }
    table = Table(title=f"Evaluation speed, {source.name} on {result['machine']}")
    for column in ("", "medsft", "baseline", "ratio", "agreement"):
        table.add_column(column, justify="right")
    p, q = result["pubmedqa"], result["perplexity"]
    table.add_row(
        f"PubMedQA questions/s ({len(rows)}, {args.pubmedqa_mode})",
        f"{p['medsft_questions_per_second']:.2f}",
        f"{p['baseline_questions_per_second']:.2f}",
        f"{p['speedup']:.2f}×",
        f"{agree}/{len(rows)} same answer",
    )
    table.add_row(
        f"perplexity tokens/s ({q['tokens']})",
        f"{q['medsft_tokens_per_second']:.0f}",
        f"{q['baseline_tokens_per_second']:.0f}",
        f"{q['speedup']:.2f}×",
        f"ppl {q['medsft_perplexity']:.4f} vs {q['baseline_perplexity']:.4f}",
    )
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
