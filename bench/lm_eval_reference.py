"""medsft's scoring against lm-evaluation-harness's own tasks, same model, same questions, one after the other on
the same machine: per-question predictions must be equal and choice log-likelihoods equal to float precision; the
wall time of each and their ratio are printed.

```bash
pip install lm_eval   # (in the dev extras)
python bench/lm_eval_reference.py \\
    --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --tasks pubmedqa,medqa,mmlu --pubmedqa ../shared/data/pubmedqa --medqa ../shared/data/medqa \\
    --mmlu ../shared/data/mmlu
# 5-shot MMLU (its first 5 dev rows before each question, computed once per subject by medsft):
python bench/lm_eval_reference.py --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
    --tasks mmlu --mmlu ../shared/data/mmlu --num_fewshot 5 --limit 30
```

Tasks: ``pubmedqa`` (the harness's ``pubmedqa``), ``medqa`` (``medqa_4options``), ``medmcqa`` (``medmcqa``),
``mmlu`` (``mmlu_SUBJECT`` for the six medical subjects). The harness's tasks read the Hub; here their task files are
included unchanged (same prompt functions, choices and metrics) with only the data pointed at local JSONL files of
the same questions, so they run offline. The harness's time is its ``simple_evaluate`` call (its task indexing,
about 20 s here, excluded); medsft's is building the requests and scoring them. Writes
``bench/results/lm_eval_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def harness_loglikelihoods(
    model, tokenizer, rows: list[dict], batch_size: int = 8, timing: dict | None = None
) -> tuple[list[list[float]], float]:
    """lm-evaluation-harness's pubmedqa loglikelihoods (one list of 3 per question: yes, no, maybe) and its
    accuracy, for an already-loaded model and tokenizer. ``timing["seconds"]``, when given, gets the
    ``simple_evaluate`` call's wall time."""
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
        manager = TaskManager(include_path=tmp)
        start = time.perf_counter()
        result = lm_eval.simple_evaluate(
            model=lm, tasks=["pubmedqa_local"], task_manager=manager, log_samples=True, verbosity="ERROR"
        )
        if timing is not None:
            timing["seconds"] = time.perf_counter() - start
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
    model,
    tokenizer,
    runs: dict[str, tuple[str, list[dict], int, list[dict]]],
    batch_size: int = 8,
    timing: dict | None = None,
) -> dict[str, tuple[list[list[float]], float]]:
    """lm-evaluation-harness's own ``medqa_4options`` / ``medmcqa`` / ``mmlu_SUBJECT`` tasks (their YAML included
    unchanged, only the data pointed at local JSONL files of the same questions and the few-shot count set), all in
    one harness run. ``runs``: name -> ``(task, rows, num_fewshot, dev_rows)``, where for MMLU ``rows`` are one
    subject's and ``dev_rows`` its dev split. Returns name -> (each question's four letter log-likelihoods, the
    harness's accuracy). ``timing["seconds"]``, when given, gets the ``simple_evaluate`` call's wall time."""
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
        manager = TaskManager(include_path=tmp)  # indexes every task file the harness ships: start-up, not scoring
        start = time.perf_counter()
        result = lm_eval.simple_evaluate(
            model=lm,
            tasks=[f"{name}_local" for name in runs],
            task_manager=manager,
            log_samples=True,
            verbosity="ERROR",
        )
        if timing is not None:
            timing["seconds"] = time.perf_counter() - start
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


def _medsft(model, tokenizer, task: str, source: str, limit: int | None, batch_size: int, num_fewshot: int = 0):
    """medsft's rows, per-question choice scores and seconds for one task (the same path as ``medsft.evaluate``)."""
    from medsft.data.pubmedqa import load_pubmedqa
    from medsft.evaluation import task_multiple_choice as mc
    from medsft.evaluation import task_pubmedqa as pqa
    from medsft.evaluation.loglikelihood import score_choices

    if task == "pubmedqa":
        rows = list(load_pubmedqa(source)[0]["test"])[:limit]
        start = time.perf_counter()
        scores = score_choices(
            model, tokenizer, pqa.build_requests(rows, tokenizer, "loglikelihood"), 2048, batch_size
        )
        return rows, scores, time.perf_counter() - start
    benchmark = mc.load_benchmark(task, source, num_fewshot=num_fewshot, limit=limit)
    start = time.perf_counter()
    _, scores = mc.predict(model, tokenizer, benchmark, "loglikelihood", 2048, batch_size)
    return benchmark.rows, scores, time.perf_counter() - start


def main() -> None:
    import platform

    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM

    from medsft.core.environment import library_versions
    from medsft.data import mmlu
    from medsft.modeling.loading import load_tokenizer
    from medsft.modeling.source import resolve_model_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", default="pubmedqa", help="comma-separated: pubmedqa, medqa, medmcqa, mmlu")
    for task in ("pubmedqa", "medqa", "medmcqa", "mmlu"):
        parser.add_argument(f"--{task}", help=f"{task} data (local release or Hub id)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions (of each MMLU subject)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_fewshot", type=int, default=0, help="MMLU's first K dev rows before each question")
    parser.add_argument("--out", default="bench/results/lm_eval_agreement.json")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    missing = [t for t in tasks if not getattr(args, t, None)]
    if missing:
        parser.error(f"give the data of {', '.join(missing)} (--{missing[0]} PATH)")
    if args.num_fewshot and tasks != ["mmlu"]:
        parser.error("--num_fewshot: only with --tasks mmlu (the other tasks are scored zero-shot)")

    source = resolve_model_source(args.model)
    tokenizer = load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32).eval()
    versions = library_versions()
    versions["lm_eval"] = lm_eval_version()
    result = {
        "machine": f"{platform.machine()}, CPU, {torch.get_num_threads()} torch threads",
        "versions": versions,
        "model": source.name,
        "batch_size": args.batch_size,
        "num_fewshot": args.num_fewshot,
        "tasks": {},
    }
    shots = f"{args.num_fewshot}-shot" if args.num_fewshot else "zero-shot"
    table = Table(title=f"medsft vs lm-evaluation-harness ({source.name}), loglikelihood scoring, {shots}")
    for column in ("task", "questions", "same prediction", "max |Δ loglik|", "accuracy medsft / harness",
                   "seconds medsft", "seconds harness", "speed-up"):  # fmt: skip
        table.add_column(column, justify="right")
    totals = {"medsft": 0.0, "harness": 0.0}
    for task in tasks:
        rows, ours, ours_s = _medsft(
            model, tokenizer, task, getattr(args, task), args.limit, args.batch_size, args.num_fewshot
        )
        timing = {}
        if task == "pubmedqa":
            theirs, their_acc = harness_loglikelihoods(model, tokenizer, rows, args.batch_size, timing)
            truth = [r["final_decision"] for r in rows]
            labels = ("yes", "no", "maybe")
        else:
            subjects = mmlu.SUBJECTS if task == "mmlu" else (None,)
            runs = {}
            for subject in subjects:
                mine = [r for r in rows if r.get("subject") == subject] if task == "mmlu" else rows
                # the harness's MMLU tasks declare a dev split (few-shot exemplars) even when zero-shot
                dev = mmlu.load_mmlu(args.mmlu, (subject,), "dev")[0] if task == "mmlu" else []
                runs[subject or task] = (task, mine, args.num_fewshot, dev)
            harness = harness_choice_loglikelihoods(model, tokenizer, runs, args.batch_size, timing)
            theirs = [s for name in runs for s in harness[name][0]]
            their_acc = None
            truth = ["ABCD"[r["answer"]] for r in rows]
            labels = ("A", "B", "C", "D")

        def pick(scores, labels=labels):
            return labels[max(range(len(labels)), key=scores.__getitem__)]

        same = sum(pick(a) == pick(b) for a, b in zip(ours, theirs))
        diff = max(abs(x - y) for a, b in zip(ours, theirs) for x, y in zip(a, b))
        our_acc = sum(pick(s) == t for s, t in zip(ours, truth)) / len(rows)
        their_acc = sum(pick(s) == t for s, t in zip(theirs, truth)) / len(rows) if their_acc is None else their_acc
        theirs_s = timing["seconds"]
        totals["medsft"] += ours_s
        totals["harness"] += theirs_s
        result["tasks"][task] = {
            "questions": len(rows),
            "same_prediction": same,
            "max_abs_loglikelihood_difference": diff,
            "accuracy": {"medsft": our_acc, "lm_eval": their_acc},
            "seconds": {"medsft": ours_s, "lm_eval": theirs_s},
            "speed_up": theirs_s / ours_s,
        }
        table.add_row(task, str(len(rows)), f"{same}/{len(rows)}", f"{diff:.2e}", f"{our_acc:.4f} / {their_acc:.4f}",
                      f"{ours_s:.1f}", f"{theirs_s:.1f}", f"{theirs_s / ours_s:.2f}×")  # fmt: skip
    result["seconds_total"] = totals
    result["speed_up_total"] = totals["harness"] / totals["medsft"]
    table.add_row("all", "", "", "", "", f"{totals['medsft']:.1f}", f"{totals['harness']:.1f}",
                  f"{result['speed_up_total']:.2f}×")  # fmt: skip
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
