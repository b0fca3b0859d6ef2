"""Evaluate a base model and its LoRA adapters: perplexity on held-out medical text and PubMedQA accuracy.

Usage:

```bash
# base vs an adapter, both tasks (Hub model and data)
python -m medsft.evaluate --model_name_or_path gpt2 --adapters runs/wikidoc_qlora --tasks perplexity,pubmedqa

# offline, SmolLM2 from the GGUF file, two adapters, local data
python -m medsft.evaluate \\
    --model_name_or_path ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --adapters runs/wikidoc_qlora_smollm2 runs/pubmedqa_lora_smollm2 \\
    --perplexity_dataset ../shared/data/wikidoc_patient_information \\
    --pubmedqa_dataset ../shared/data/pubmedqa --pubmedqa_mode chat

# the same numbers, data-parallel
accelerate launch --num_processes 4 -m medsft.evaluate ...

# a YAML file of these arguments, like a training recipe (flags override it)
python -m medsft.evaluate --config recipes/eval_medical.yaml
```

The base model is always evaluated, then each adapter on it; PubMedQA answers of each adapter are compared with the
base's on the same questions (paired bootstrap interval of the accuracy difference, fixed/broken answers, McNemar's
exact test). The report directory (default ``<first adapter>/eval``,
or ``evals/<model>``) gets ``report.json``, ``pubmedqa_predictions_<model>.json`` (``{PMID: label}``, the format
PubMedQA's official ``evaluation.py`` scores), ``pubmedqa_confusion_<model>.png`` and ``comparison.png``. An existing
report is never overwritten.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import PartialState
from rich.console import Console
from transformers import set_seed
from trl import ModelConfig

from medsft.configs import EvalArguments, parse_args
from medsft.core.environment import describe_device, git_commit, library_versions, now, warn_if_one_cpu_thread
from medsft.core.errors import MedsftError, run_cli
from medsft.data import pubmedqa
from medsft.data.registry import hub_id_for
from medsft.evaluation import report as rep
from medsft.evaluation import task_perplexity as ppl
from medsft.evaluation import task_pubmedqa as pqa
from medsft.evaluation.metrics import PubMedQAScores, paired_accuracy_difference, yes_no_auc
from medsft.modeling.adapters import check_adapter_base, check_adapter_loads, load_adapter, read_adapter
from medsft.modeling.loading import load_model, load_tokenizer
from medsft.modeling.source import resolve_model_source

logger = logging.getLogger("medsft.evaluate")


def _label(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique column name for a model."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "adapter"
    candidate, n = label, 1
    while candidate in taken:
        n += 1
        candidate = f"{label}-{n}"
    return candidate


def _max_length(model, requested: int | None) -> int:
    if requested:
        return requested
    config = model.config
    native = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
    return min(native, 2048)


def main(argv: list[str] | None = None, console: Console | None = None) -> dict:
    args, model_args, _ = parse_args((EvalArguments, ModelConfig), argv, prog="medsft.evaluate")
    # Without cpu=True, accelerate starts no process group on a machine without GPUs (the Trainer passes it for
    # training); with it, `accelerate launch` on CPU shards over gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    logging.basicConfig(
        format="%(asctime)s %(name)s: %(message)s", level=logging.INFO if state.is_main_process else logging.WARNING
    )
    warn_if_one_cpu_thread(state.num_processes, logger)
    set_seed(args.seed)
    started = now()

    ###############
    # Models and adapters: every adapter checked (base, config, weights, shapes) before any model is evaluated
    ###############
    source = resolve_model_source(model_args.model_name_or_path, args.gguf_cache_dir)
    adapters = [read_adapter(a) for a in args.adapters]
    for adapter in adapters:
        if not args.allow_base_mismatch:
            check_adapter_base(adapter, source)
        check_adapter_loads(adapter, source, model_args.model_revision)
        _warn_precision(adapter, model_args.load_in_4bit)
    taken: set[str] = {"base"}
    labels = ["base"]
    for adapter in adapters:
        labels.append(_label(adapter.name, taken))
        taken.add(labels[-1])
    default_dir = Path(args.adapters[0]) / "eval" if adapters and Path(args.adapters[0]).is_dir() else None
    out = rep.choose_output_dir(args.output_dir, default_dir or Path("evals") / _label(source.name, set()))

    ###############
    # Load tokenizer and data
    ###############
    chat = args.pubmedqa_mode != "loglikelihood" or args.perplexity_format in ("auto", "chat")
    tokenizer = load_tokenizer(source, model_args.model_revision, need_chat_template=chat)
    texts, ppl_format, rows = [], None, []
    available = {}  # examples in each task's split before --limit: a subset is marked as one in reports and cards
    if "perplexity" in args.task_list:
        examples, ppl_format = ppl.load_texts(
            args.perplexity_dataset,
            args.perplexity_dataset_type,
            args.perplexity_split,
            args.perplexity_format,
            {"pubmedqa_test_file": args.pubmedqa_test_file},
        )
        texts = ppl.prepare(examples[: args.limit], tokenizer)
        available["perplexity"] = len(examples)
        if not texts:
            raise MedsftError(f"{args.perplexity_dataset}: no texts in the '{args.perplexity_split}' split")
    if "pubmedqa" in args.task_list:
        splits, _ = pubmedqa.load_pubmedqa(args.pubmedqa_dataset, test_file=args.pubmedqa_test_file)
        if args.pubmedqa_split not in splits:
            raise MedsftError(f"{args.pubmedqa_dataset}: no '{args.pubmedqa_split}' split")
        rows = list(splits[args.pubmedqa_split])[: args.limit]
        available["pubmedqa"] = len(splits[args.pubmedqa_split])
        if not rows:
            raise MedsftError(f"{args.pubmedqa_dataset}: the '{args.pubmedqa_split}' split is empty")
    logger.info(
        "evaluating %s (+%d adapters) on %s: %d texts, %d PubMedQA questions; report in %s",
        source.name, len(adapters), ", ".join(args.task_list), len(texts), len(rows), out,
    )  # fmt: skip

    ###############
    # Evaluate the base model, then each adapter on a fresh copy of it; if one fails, the finished ones are kept
    ###############
    results: dict[str, dict] = {}
    outputs: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    failure = None
    max_length = None
    for label, adapter in zip(labels, [None, *adapters]):
        try:
            model = load_model(source, model_args, for_training=False)
            if adapter is not None:
                model = load_adapter(model, adapter.path)
            if not model_args.load_in_4bit:
                model = model.to(state.device)
            model.eval()
            max_length = _max_length(model, args.max_length)
            results[label], timings[label], output = _evaluate_model(model, tokenizer, texts, rows, max_length, args)
        except (MedsftError, OSError, ValueError, RuntimeError) as e:  # RuntimeError: out of memory, for one
            failure = {"model": label, "error": _first_line(e)}
            break
        if output:
            outputs[label] = output
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # each adapter against the base on the same questions: a paired test, since separate intervals overlap easily
    truth = [r["final_decision"] for r in rows]
    if rows and "base" in outputs:
        for label in [label for label in labels[1:] if label in outputs]:
            results[label]["pubmedqa"]["vs_base"] = paired_accuracy_difference(
                truth, outputs["base"]["predicted"], outputs[label]["predicted"], samples=args.bootstrap_samples,
                seed=args.seed,
            )  # fmt: skip

    ###############
    # Report: table, JSON, predictions, plots (main process only)
    ###############
    report = {
        "created": started,
        "finished": now(),
        "medsft_git_commit": git_commit(),
        "versions": library_versions(),
        "hardware": describe_device(),
        "world_size": state.num_processes,
        "model": {
            "name": source.name,
            "gguf_sha256": source.gguf_sha256,
            "fingerprint": source.fingerprint,
            "load_in_4bit": model_args.load_in_4bit,
        },
        "adapters": {label: {**asdict(adapter), "path": adapter.path} for label, adapter in zip(labels[1:], adapters)},
        "settings": _settings(args, texts, rows, ppl_format, max_length, available),
        "results": results,
        "timings": timings,
        "incomplete": failure,
    }
    if state.is_main_process and results:
        _write_outputs(out, report, rows, outputs, console or Console())
    state.wait_for_everyone()
    if failure:
        kept = f"the models that finished ({', '.join(results)}) are in {out / rep.REPORT_FILE}"
        raise MedsftError(
            f"evaluating {failure['model']} failed: {failure['error']}; "
            + (kept if results else "no model finished, nothing was written")
        )
    report["output_dir"] = str(out)
    return report


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def _warn_precision(adapter, load_in_4bit: bool) -> None:
    if adapter.load_in_4bit is not None and adapter.load_in_4bit != load_in_4bit:
        logger.warning(
            "%s was trained on a %s base; evaluating on a %s one (--load_in_4bit %s)",
            adapter.name,
            "4-bit" if adapter.load_in_4bit else "full-precision",
            "4-bit" if load_in_4bit else "full-precision",
            load_in_4bit,
        )


def _evaluate_model(model, tokenizer, texts, rows, max_length: int, args: EvalArguments) -> tuple[dict, dict, dict]:
    """One model on every task: ``(results, timings, PubMedQA outputs)``."""
    results, timings, output = {}, {}, {}
    if texts:
        start = time.perf_counter()
        stride = args.stride or max_length // 2
        results["perplexity"] = ppl.evaluate_perplexity(model, tokenizer, texts, max_length, stride, args.batch_size)
        seconds = time.perf_counter() - start
        timings["perplexity"] = {"seconds": seconds, "tokens_per_second": results["perplexity"]["tokens"] / seconds}
    if rows:
        truth = [r["final_decision"] for r in rows]
        start = time.perf_counter()
        predicted, details = pqa.predict(
            model, tokenizer, rows, args.pubmedqa_mode, max_length, args.batch_size, args.max_new_tokens
        )
        seconds = time.perf_counter() - start
        timings["pubmedqa"] = {"seconds": seconds, "questions_per_second": len(rows) / seconds}
        scores = PubMedQAScores().compute(
            predictions=predicted, references=truth, bootstrap_samples=args.bootstrap_samples, seed=args.seed
        )
        if args.pubmedqa_mode == "generate":
            scores["unparsable"] = predicted.count(pqa.UNPARSABLE)
        else:  # choice scores exist: how well they rank yes vs no, apart from the answer prior
            scores["yes_no_auc"] = yes_no_auc(truth, details)
        results["pubmedqa"] = scores
        output = {"predicted": predicted, "details": details}
    return results, timings, output


def _settings(args: EvalArguments, texts, rows, ppl_format, max_length, available: dict) -> dict:
    return {
        "tasks": args.task_list,
        "max_length": max_length,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "seed": args.seed,
        "perplexity": {
            "dataset": Path(args.perplexity_dataset).name,
            "hub_id": hub_id_for(args.perplexity_dataset, args.perplexity_dataset_type),
            "split": args.perplexity_split,
            "format": ppl_format,
            "stride": args.stride or (max_length // 2 if max_length else None),
            "texts": len(texts),
            "texts_in_split": available.get("perplexity"),
        }
        if texts
        else None,
        "pubmedqa": {
            "dataset": Path(args.pubmedqa_dataset).name,
            "split": args.pubmedqa_split,
            "mode": args.pubmedqa_mode,
            "questions": len(rows),
            "questions_in_split": available.get("pubmedqa"),
        }
        if rows
        else None,
    }


def _write_outputs(out: Path, report: dict, rows: list[dict], outputs: dict[str, dict], console: Console) -> None:
    """report.json, the official scorer's prediction files, the plots, and the table on the console."""
    out.mkdir(parents=True, exist_ok=True)
    results = report["results"]
    for label, output in outputs.items():
        rep.write_predictions(out, label, [r["pmid"] for r in rows], output["predicted"])
        rep.plot_confusion(out, label, results[label]["pubmedqa"])
    report["pubmedqa_outputs"] = {
        label: {r["pmid"]: d for r, d in zip(rows, output["details"])} for label, output in outputs.items()
    }
    rep.plot_comparison(out, results)
    rep.write_report(out, report)
    rep.print_report(results, console)
    console.print(f"report: {out / rep.REPORT_FILE}")


def cli() -> None:
    run_cli(main, "medsft.evaluate")


if __name__ == "__main__":
    cli()
