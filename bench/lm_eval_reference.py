"""medsft's PubMedQA ``loglikelihood`` mode against lm-evaluation-harness's own ``pubmedqa`` task, same model, same
questions: per-question predictions must be equal and choice log-likelihoods equal to float precision.

```bash
pip install lm_eval   # (in the dev extras)
python bench/lm_eval_reference.py \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --pubmedqa ../shared/data/pubmedqa --limit 500
```

The harness's task reads ``bigbio/pubmed_qa`` from the Hub; here its task file is included unchanged (same prompt
function, choices and metric) with only the data pointed at a local JSONL of the same questions, so it runs
offline. Prints a table and writes ``bench/results/lm_eval_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def harness_loglikelihoods(model, tokenizer, rows: list[dict], batch_size: int = 8) -> tuple[list[list[float]], float]:
    """lm-evaluation-harness's pubmedqa loglikelihoods (one list of 3 per question: yes, no, maybe) and its
    accuracy, for an already-loaded model and tokenizer."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "test.jsonl"
        with open(data, "w") as f:
            for r in rows:
                doc = {"QUESTION": r["question"], "CONTEXTS": r["contexts"], "final_decision": r["final_decision"]}
                f.write(json.dumps(doc) + "\n")
        task_file = Path(lm_eval.__file__).parent / "tasks/pubmedqa/pubmedqa.yaml"
        (Path(tmp) / "pubmedqa_local.yaml").write_text(
            f"include: {task_file}\ntask: pubmedqa_local\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
            "training_split: null\nvalidation_split: null\ntest_split: test\n"
        )
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
        result = lm_eval.simple_evaluate(
            model=lm,
            tasks=["pubmedqa_local"],
            task_manager=TaskManager(include_path=tmp),
            log_samples=True,
            verbosity="ERROR",
        )
    samples = sorted(result["samples"]["pubmedqa_local"], key=lambda s: s["doc_id"])
    scores = [[float(resp[0]) for resp in s["filtered_resps"]] for s in samples]
    return scores, result["results"]["pubmedqa_local"]["acc,none"]


def _harness_docs(task: str, rows: list[dict]) -> list[dict]:
    """The rows in the layout the harness's own task reads from the Hub (its prompt functions index these fields)."""
    if task == "medqa":  # GBaker/MedQA-USMLE-4-options-hf
        return [{"sent1": r["question"], **{f"ending{i}": o for i, o in enumerate(r["options"])}, "label": r["answer"]}
                for r in rows]  # fmt: skip
    if task == "medmcqa":  # openlifescienceai/medmcqa: cop 0..3
        keys = ("opa", "opb", "opc", "opd")
        return [{"question": r["question"], **dict(zip(keys, r["options"])), "cop": r["answer"]} for r in rows]
    return [{"question": r["question"], "subject": r["subject"], "choices": r["options"], "answer": r["answer"]}
            for r in rows]  # fmt: skip  # cais/mmlu


def harness_choice_loglikelihoods(
    model, tokenizer, runs: dict[str, tuple[str, list[dict], int, list[dict]]], batch_size: int = 8
) -> dict[str, tuple[list[list[float]], float]]:
    """lm-evaluation-harness's own ``medqa_4options`` / ``medmcqa`` / ``mmlu_SUBJECT`` tasks (their YAML included
    unchanged, only the data pointed at local JSONL files of the same questions and the few-shot count set), all in
    one harness run. ``runs``: name -> ``(task, rows, num_fewshot, dev_rows)``, where for MMLU ``rows`` are one
    subject's and ``dev_rows`` its dev split. Returns name -> (each question's four letter log-likelihoods, the
    harness's accuracy)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    with tempfile.TemporaryDirectory() as tmp:
        for name, (task, rows, num_fewshot, dev_rows) in runs.items():
            files = {"test": Path(tmp) / f"{name}_test.jsonl"}
            if task == "mmlu":
                files["dev"] = Path(tmp) / f"{name}_dev.jsonl"
            for split, path in files.items():
                with open(path, "w") as f:
                    for doc in _harness_docs(task, rows if split == "test" else list(dev_rows)):
                        f.write(json.dumps(doc) + "\n")
            if task == "mmlu":
                include = tasks_dir / f"mmlu/default/mmlu_{rows[0]['subject']}.yaml"
                splits = "test_split: test\nfewshot_split: dev\n"
            else:
                include = tasks_dir / {"medqa": "medqa/medqa.yaml", "medmcqa": "medmcqa/medmcqa.yaml"}[task]
                splits = "training_split: null\nvalidation_split: null\ntest_split: test\n"
            data_files = "".join(f"    {split}: {path}\n" for split, path in files.items())
            (Path(tmp) / f"{name}.yaml").write_text(
                f"include: {include}\ntask: {name}_local\ndataset_path: json\ndataset_name: null\n"
                f"dataset_kwargs:\n  data_files:\n{data_files}{splits}num_fewshot: {num_fewshot}\n"
            )
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
        result = lm_eval.simple_evaluate(
            model=lm,
            tasks=[f"{name}_local" for name in runs],
            task_manager=TaskManager(include_path=tmp),
            log_samples=True,
            verbosity="ERROR",
        )
    out = {}
    for name in runs:
        samples = sorted(result["samples"][f"{name}_local"], key=lambda s: s["doc_id"])
        scores = [[float(resp[0]) for resp in s["filtered_resps"]] for s in samples]
        out[name] = (scores, result["results"][f"{name}_local"]["acc,none"])
    return out


def lm_eval_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM

    from medsft.data.pubmedqa import load_pubmedqa
    from medsft.evaluation.metrics import LABELS
    from medsft.evaluation.task_pubmedqa import build_requests, score_choices
    from medsft.modeling.loading import load_tokenizer
    from medsft.modeling.source import resolve_model_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pubmedqa", required=True)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--out", default="bench/results/lm_eval_agreement.json")
    args = parser.parse_args()

    source = resolve_model_source(args.model)
    tokenizer = load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32).eval()
    rows = list(load_pubmedqa(args.pubmedqa)[0]["test"])[: args.limit]

    start = time.perf_counter()
    ours = score_choices(model, tokenizer, build_requests(rows, tokenizer, "loglikelihood"), 2048, args.batch_size)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs, their_acc = harness_loglikelihoods(model, tokenizer, rows, args.batch_size)
    theirs_s = time.perf_counter() - start

    def pick(s):
        return LABELS[max(range(3), key=s.__getitem__)]

    same = sum(pick(a) == pick(b) for a, b in zip(ours, theirs))
    diff = max(abs(x - y) for a, b in zip(ours, theirs) for x, y in zip(a, b))
    our_acc = sum(pick(s) == r["final_decision"] for s, r in zip(ours, rows)) / len(rows)
    import platform

    from medsft.core.environment import library_versions

    versions = library_versions()
    versions["lm_eval"] = lm_eval_version()
    result = {
        "machine": f"{platform.machine()}, CPU, {torch.get_num_threads()} torch threads",
        "versions": versions,
        "model": source.name,
        "questions": len(rows),
        "same_prediction": same,
        "max_abs_loglikelihood_difference": diff,
        "accuracy": {"medsft": our_acc, "lm_eval": their_acc},
        "seconds": {"medsft": ours_s, "lm_eval": theirs_s},
    }
    table = Table(title=f"PubMedQA loglikelihood: medsft vs lm-evaluation-harness ({source.name})")
    table.add_column("")
    table.add_column("medsft", justify="right")
    table.add_column("lm-eval", justify="right")
    table.add_row("accuracy", f"{our_acc:.4f}", f"{their_acc:.4f}")
    table.add_row("seconds", f"{ours_s:.1f}", f"{theirs_s:.1f}")
    table.add_row("same prediction", f"{same}/{len(rows)}", "")
    table.add_row("max |Δ loglikelihood|", f"{diff:.2e}", "")
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
