"""Evaluate a base model and its LoRA adapters: perplexity on held-out medical text, PubMedQA, and the Open
Medical-LLM Leaderboard's letter-choice tasks (MedQA, MedMCQA, MMLU's six medical subjects), scored as
lm-evaluation-harness scores them.

Usage:

```bash
# base vs an adapter, both tasks (Hub model and data)
python -m medsft.evaluate --model_name_or_path gpt2 --adapters runs/wikidoc_qlora --tasks perplexity,pubmedqa

# offline, SmolLM2 from the GGUF file, two adapters, local data
python -m medsft.evaluate \\
    --model_name_or_path ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --adapters runs/wikidoc_qlora_smollm2 runs/pubmedqa_lora_smollm2 \\
    --perplexity_dataset ../shared/data/wikidoc_patient_information \\
    --pubmedqa_dataset ../shared/data/pubmedqa --pubmedqa_mode loglikelihood

# the medical benchmark suite offline: PubMedQA, MedQA and MMLU's medical subjects from their official releases
python -m medsft.evaluate \\
    --model_name_or_path ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --adapters runs/wikidoc_qlora_smollm2 --tasks pubmedqa,medqa,mmlu \\
    --pubmedqa_dataset ../shared/data/pubmedqa --medqa_dataset ../shared/data/medqa --mmlu_dataset ../shared/data/mmlu

# the same numbers, data-parallel
accelerate launch --num_processes 4 -m medsft.evaluate ...

# a YAML file of these arguments, like a training recipe (flags override it)
python -m medsft.evaluate --config recipes/eval_medical.yaml

# an evaluation that stopped (a failure, Ctrl-C, kill): the same command with --resume true scores only the rest
python -m medsft.evaluate ... --resume true
```

The base model is always evaluated, then each adapter on it (a full fine-tune's run directory, ``use_peft: false``,
may be given among the adapters: it is loaded in place of the base and compared with it the same way; one trained
from another full fine-tune, when that first stage is given too); each
adapter's answers on every question-answering task are compared with the base's on the same questions (paired
bootstrap interval of the accuracy difference, fixed/broken answers, McNemar's exact test). The report directory
(default ``<first adapter>/eval``, or ``evals/<model>``) gets ``report.json``, ``pubmedqa_predictions_<model>.json``
(``{PMID: label}``, the format PubMedQA's official ``evaluation.py`` scores), ``<task>_predictions_<model>.json`` for
MedQA/MedMCQA/MMLU (``{row index in the official file, or SUBJECT/index: letter}``), ``pubmedqa_confusion_<model>.png``
and ``comparison.png`` (every task, base vs each adapter, with intervals). An existing report is never overwritten
by another evaluation. The report is written after each model, so a command that stops (a failure, Ctrl-C, SIGTERM,
a kill) keeps the models that finished; ``--resume true`` checks that it is the same evaluation and scores the rest.
"""

from __future__ import annotations

import logging

import torch
from accelerate import PartialState
from rich.console import Console
from transformers import set_seed

from medsft.configs import EvalArguments, parse_args
from medsft.configs.commands import EvalModelArguments
from medsft.core.environment import now, warn_if_one_cpu_thread
from medsft.core.errors import MedsftError, run_cli, sigterm_as_interrupt
from medsft.core.hub_access import require_hub_for
from medsft.core.memory import return_freed_memory
from medsft.data.io import check_writable_dir
from medsft.evaluation import resume, runner
from medsft.evaluation.report import REPORT_FILE, choose_output_dir
from medsft.evaluation.task_multiple_choice import BENCHMARKS
from medsft.modeling.loading import load_tokenizer
from medsft.modeling.sharding import refuse_sharded_evaluation
from medsft.modeling.source import resolve_model_source

logger = logging.getLogger("medsft.evaluate")


def main(argv: list[str] | None = None, console: Console | None = None) -> dict:
    args, model_args, _ = parse_args((EvalArguments, EvalModelArguments), argv, prog="medsft.evaluate", doc=__doc__)
    refuse_sharded_evaluation()
    # Without cpu=True, accelerate starts no process group on a machine without GPUs (the Trainer passes it for
    # training); with it, `accelerate launch` on CPU shards over gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    logging.basicConfig(
        format="%(asctime)s %(name)s: %(message)s", level=logging.INFO if state.is_main_process else logging.WARNING
    )
    warn_if_one_cpu_thread(state.num_processes, logger)
    return_freed_memory()  # freed tensor memory back to the system (glibc on Linux): half the CPU peak
    set_seed(args.seed)
    started = now()

    ###############
    # Models and adapters: every adapter checked (base, config, weights, shapes) before any model is evaluated
    ###############
    require_hub_for([model_args.model_name_or_path, *args.adapters, *args.task_datasets()])
    source = resolve_model_source(model_args.model_name_or_path, args.gguf_cache_dir)
    adapters, labels = runner.check_adapters(args, source, model_args)
    default_out = runner.default_output_dir(args, source)
    out = (
        resume.resume_dir(args.output_dir, default_out)
        if args.resume
        else choose_output_dir(args.output_dir, default_out)
    )
    previous = resume.read_report(out) if args.resume else None
    check_writable_dir(out, "--output_dir")  # not after an hour of scoring

    ###############
    # Load tokenizer and data
    ###############
    chat = (
        ("pubmedqa" in args.task_list and args.pubmedqa_mode != "loglikelihood")
        or ("perplexity" in args.task_list and args.perplexity_format in ("auto", "chat"))
        or (args.choice_mode == "chat" and any(task in BENCHMARKS for task in args.task_list))
    )
    tokenizer = load_tokenizer(source, model_args.model_revision, need_chat_template=chat)
    data = runner.load_data(args, tokenizer)
    logger.info(
        "evaluating %s (+%d adapters) on %s: %s; report in %s",
        source.name, len(adapters), ", ".join(args.task_list), data.summary(), out,
    )  # fmt: skip

    ###############
    # Resume: the same evaluation's finished models, checked and kept
    ###############
    done, earlier = runner.Evaluation(), None
    if previous is not None:
        resume.reuse(previous, out, data, args.pubmedqa_mode, done)
        current = runner.build_report(args, model_args, source, adapters, labels, data, done, started)
        resume.check_same(previous, current, out)
        if previous.incomplete is None:
            logger.info("%s is complete: nothing to resume", out / REPORT_FILE)
            return {**previous.to_dict(), "output_dir": str(out)}
        earlier = resume.earlier_commands(previous, current)
        logger.info("resuming %s: %s kept from it", out / REPORT_FILE, ", ".join(done.results))

    ###############
    # Evaluate the base model, then each adapter on a fresh copy of it; each adapter paired with the base; the report
    # written after each model, so a kill keeps the finished ones
    ###############
    def write_finished(done: runner.Evaluation) -> None:
        runner.compare_with_base(done, data, args)
        if state.is_main_process:
            report = runner.build_report(args, model_args, source, adapters, labels, data, done, started, earlier)
            # a failed write (disk full) does not stop the scoring: the report is written again after the next
            # model, and at the end
            try:
                runner.write_outputs(out, report, data, done, console=None)
            except MedsftError as e:
                logger.warning("%s", e)

    with sigterm_as_interrupt():
        runner.evaluate_models(source, model_args, adapters, labels, data, tokenizer, args, done, write_finished)
    runner.compare_with_base(done, data, args)

    ###############
    # Report: table, JSON, predictions, plots (main process only)
    ###############
    report = runner.build_report(args, model_args, source, adapters, labels, data, done, started, earlier)
    unwritten = None
    if state.is_main_process and done.results:
        try:
            runner.write_outputs(out, report, data, done, console or Console())
        except MedsftError as e:
            unwritten = e  # raised after the other ranks are released
    state.wait_for_everyone()
    if unwritten:
        raise unwritten
    if done.failure:
        kept = f"the models that finished ({', '.join(done.results)}) are in {out / REPORT_FILE}; {resume.RESUME_HINT}"
        raise MedsftError(
            f"evaluating {done.failure['model']} failed: {done.failure['error']}; "
            + (kept if done.results else "no model finished, nothing was written")
        )
    return {**report.to_dict(), "output_dir": str(out)}


def cli() -> None:
    run_cli(main, "medsft.evaluate")


if __name__ == "__main__":
    cli()
