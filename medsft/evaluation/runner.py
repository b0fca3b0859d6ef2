"""The steps of ``medsft.evaluate``: check the adapters, load each task's data, evaluate the base and each adapter on
it, compare each adapter with the base on the same questions, and assemble the report.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from rich.console import Console
from transformers import AutoTokenizer

from medsft.configs import EvalArguments
from medsft.core.environment import describe_device, git_commit, library_versions, now
from medsft.core.errors import MedsftError
from medsft.core.paths import is_hub_id
from medsft.data import pubmedqa
from medsft.data.registry import hub_id_for
from medsft.evaluation import report as rep
from medsft.evaluation import task_multiple_choice as mc
from medsft.evaluation import task_perplexity as ppl
from medsft.evaluation import task_pubmedqa as pqa
from medsft.evaluation.loglikelihood import new_evaluation
from medsft.evaluation.metrics import PubMedQAScores, paired_accuracy_difference, yes_no_auc
from medsft.evaluation.schema import (
    CHOICE_TASKS,
    EvalReport,
    EvalSettings,
    ModelResults,
    MultipleChoiceResult,
    MultipleChoiceSettings,
    PairedComparison,
    PerplexityResult,
    PerplexitySettings,
    PubMedQAResult,
    PubMedQASettings,
)
from medsft.evaluation.scoring import scoring_model
from medsft.modeling.adapters import (
    AdapterInfo,
    base_precision,
    check_adapter_base,
    check_adapter_loads,
    load_adapter,
    read_adapter,
)
from medsft.modeling.loading import load_model
from medsft.modeling.source import ModelSource

logger = logging.getLogger("medsft.evaluate")


def check_adapters(args: EvalArguments, source: ModelSource, model_args) -> tuple[list[AdapterInfo], list[str]]:
    """Every adapter checked (its base, config, weights and shapes) before any model is evaluated; returns them and
    the report's column labels (``base`` first, then one unique, file-name-safe label per adapter)."""
    adapters = [read_adapter(a, full_model_ok=True) for a in args.adapters]
    for adapter in adapters:
        if adapter.full_model and not adapter.base_name:
            # without it there is no base to check it against (below) or to pair it with
            raise MedsftError(
                f"{adapter.path} holds a full model with no medsft run record of the base it was fine-tuned from: "
                f"evaluate it alone with --model_name_or_path {adapter.path}"
            )
        if not args.allow_base_mismatch:
            try:
                check_adapter_base(adapter, source)
            except MedsftError as e:
                stage = first_stage(adapter, adapters)
                if stage is None and adapter.full_model and adapter.base_fingerprint:
                    raise MedsftError(
                        f"{e}; or, if it was fine-tuned from another medsft run, give that run among --adapters too"
                    ) from None
                if stage is None:
                    raise
                # trained from another full fine-tune given here (itself checked against the base in its turn)
                adapter.fine_tuned_from = stage.path
        if adapter.full_model:
            check_same_vocabulary(adapter, source, model_args.model_revision)
        else:
            check_adapter_loads(adapter, source, model_args.model_revision)
    choose_base_precision(model_args, adapters)
    labels = ["base"]
    for adapter in adapters:
        labels.append(file_label(adapter.name, set(labels)))
    return adapters, labels


def first_stage(run: AdapterInfo, adapters: list[AdapterInfo]) -> AdapterInfo | None:
    """For a full fine-tune trained from another full fine-tune (a two-stage run, e.g. PubMedQA PQA-A then PQA-L):
    that first stage, when it is among ``adapters`` — the weights its run record says it started from. Evaluated
    together, base, first stage and second stage are all paired on the same questions."""
    if not (run.full_model and run.base_fingerprint):
        return None
    return next(
        (
            other
            for other in adapters
            if other is not run and other.full_model and other.fingerprint == run.base_fingerprint
        ),
        None,
    )


def check_same_vocabulary(run: AdapterInfo, source: ModelSource, revision: str = "main") -> None:
    """A full fine-tune is scored with the base's tokenizer, beside the base: its own tokenizer must be the same."""
    if not (Path(run.path) / "tokenizer_config.json").is_file():
        return
    if (
        AutoTokenizer.from_pretrained(run.path).get_vocab()
        != AutoTokenizer.from_pretrained(source.path, revision=revision).get_vocab()
    ):
        raise MedsftError(
            f"{run.path} has another vocabulary than {source.name} (tokens added in training?): its questions "
            f"would be tokenized differently, so evaluate it alone with --model_name_or_path {run.path}"
        )


def choose_base_precision(model_args, adapters: list[AdapterInfo]) -> str:
    """Settle ``--load_in_4bit`` (and the 4-bit type) by the rule ``medsft.generate`` follows too: the base the
    adapters were trained on, unless the flag was given; adapters trained on different bases need the flag. Returns
    the precision's description, which the log and the report's table state."""
    precision = {True: "4-bit", False: "full-precision"}
    trained = {a.load_in_4bit for a in adapters if a.load_in_4bit is not None}
    given = model_args.load_in_4bit is not None
    if not given:
        if len(trained) > 1:
            names = ", ".join(
                f"{a.name} ({precision[a.load_in_4bit]})" for a in adapters if a.load_in_4bit is not None
            )
            raise MedsftError(
                f"the adapters were trained on different bases: {names}; evaluate them in separate runs, or pass "
                "--load_in_4bit true or false to evaluate every one on the same base"
            )
        model_args.load_in_4bit = next(iter(trained)) if trained else False
    quantized = next((a for a in adapters if a.load_in_4bit), None)
    if model_args.bnb_4bit_quant_type is None:
        model_args.bnb_4bit_quant_type = (quantized and quantized.bnb_4bit_quant_type) or "nf4"
    if model_args.use_bnb_nested_quant is None:
        model_args.use_bnb_nested_quant = bool(quantized and quantized.use_bnb_nested_quant)
    described = base_precision(
        model_args.load_in_4bit, model_args.bnb_4bit_quant_type, model_args.use_bnb_nested_quant, model_args.dtype
    )
    why = "as --load_in_4bit asked" if given else ("as the adapters were trained" if trained else "no adapter asks")
    for adapter in adapters:
        if adapter.load_in_4bit is not None and adapter.load_in_4bit != model_args.load_in_4bit:
            logger.warning(
                "%s was trained on a %s base; evaluating it on a %s one (--load_in_4bit %s)", adapter.name,
                precision[adapter.load_in_4bit], precision[model_args.load_in_4bit], model_args.load_in_4bit,
            )  # fmt: skip
    logger.info("base model in %s (%s; --load_in_4bit true/false chooses)", described, why)
    return described


def file_label(name: str, taken: set[str]) -> str:
    """A file-name-safe name for a model, unique among ``taken``."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "adapter"
    candidate, n = label, 1
    while candidate in taken:
        n += 1
        candidate = f"{label}-{n}"
    return candidate


def default_output_dir(args: EvalArguments, source: ModelSource) -> Path:
    """``<first adapter>/eval`` for a local adapter, else ``evals/<base model>``."""
    if args.adapters and Path(args.adapters[0]).is_dir():
        return Path(args.adapters[0]) / "eval"
    return Path("evals") / file_label(source.name, set())


@dataclass
class EvalData:
    """Each task's examples, and how many its split held before ``--limit`` (a subset is marked as one)."""

    texts: list = field(default_factory=list)
    perplexity_format: str | None = None
    rows: list[dict] = field(default_factory=list)
    available: dict[str, int] = field(default_factory=dict)
    benchmarks: dict[str, mc.Benchmark] = field(default_factory=dict)  # MedQA, MedMCQA, MMLU

    def summary(self) -> str:
        parts = [f"{len(self.texts)} texts"] if self.texts else []
        parts += [f"{len(self.rows)} PubMedQA questions"] if self.rows else []
        parts += [f"{len(b.rows)} {mc.TITLES[name]} questions" for name, b in self.benchmarks.items()]
        return ", ".join(parts)


def load_data(args: EvalArguments, tokenizer) -> EvalData:
    data = EvalData()
    if "perplexity" in args.task_list:
        examples, data.perplexity_format = ppl.load_texts(
            args.perplexity_dataset, args.perplexity_dataset_type, args.perplexity_split, args.perplexity_format,
            {"pubmedqa_test_file": args.pubmedqa_test_file},
        )  # fmt: skip
        data.texts = ppl.prepare(examples[: args.limit], tokenizer)
        data.available["perplexity"] = len(examples)
        if not data.texts:
            raise MedsftError(f"{args.perplexity_dataset}: no texts in the '{args.perplexity_split}' split")
    if "pubmedqa" in args.task_list:
        splits, _ = pubmedqa.load_pubmedqa(args.pubmedqa_dataset, test_file=args.pubmedqa_test_file)
        if args.pubmedqa_split not in splits:
            raise MedsftError(f"{args.pubmedqa_dataset}: no '{args.pubmedqa_split}' split")
        data.rows = list(splits[args.pubmedqa_split])[: args.limit]
        data.available["pubmedqa"] = len(splits[args.pubmedqa_split])
        if not data.rows:
            raise MedsftError(f"{args.pubmedqa_dataset}: the '{args.pubmedqa_split}' split is empty")
    for task in [t for t in args.task_list if t in CHOICE_TASKS]:
        source = getattr(args, f"{task}_dataset")
        split = getattr(args, f"{task}_split")
        benchmark = mc.load_benchmark(task, source, split, args.num_fewshot, args.limit, args.subject_list)
        for report in benchmark.reports:
            if report.dropped:
                logger.warning("%s: %s", task, report.summary())
        if not benchmark.rows:
            raise MedsftError(f"{source}: no scorable {task} questions in the '{benchmark.split}' split")
        data.benchmarks[task] = benchmark
    return data


@dataclass
class Evaluation:
    """What the per-model loop produced: results, timings and PubMedQA outputs per column, and the failure that
    stopped it (the models before it are kept)."""

    results: dict[str, ModelResults] = field(default_factory=dict)
    timings: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)  # PubMedQA, per column
    choice_outputs: dict[str, dict[str, dict]] = field(default_factory=dict)  # task -> column -> outputs
    failure: dict | None = None
    max_length: int | None = None
    adapters_merged: bool | None = None


def mergeable(model, model_args) -> bool:
    """Whether an adapter can be merged into its base without changing what is scored beyond float32 rounding: a
    32-bit base (a 4-bit or 16-bit one would round the adapter's update into its own precision)."""
    return not model_args.load_in_4bit and all(
        p.dtype == torch.float32 for p in model.parameters() if p.is_floating_point()
    )


def evaluate_models(
    source, model_args, adapters, labels, data: EvalData, tokenizer, args,
    done: Evaluation | None = None, after_each: Callable[[Evaluation], None] | None = None,
) -> Evaluation:  # fmt: skip
    """The base model, then each adapter on a fresh copy of it (a full fine-tune: its own weights, loaded as the base
    is); if one fails or Ctrl-C interrupts it, the finished ones are kept.

    Parameters:
        done: the models a resumed report already holds (``resume.reuse``); they are not scored again.
        after_each: called after each model but the last (``medsft.evaluate`` writes the report, so a kill keeps it).
    """
    state, done = PartialState(), done or Evaluation()
    new_evaluation()
    pending = [(label, adapter) for label, adapter in zip(labels, [None, *adapters]) if label not in done.results]
    for i, (label, adapter) in enumerate(pending):
        try:
            full_model = adapter is not None and adapter.full_model  # its own weights, held as the base is
            model = load_model(
                ModelSource(adapter.path, label) if full_model else source, model_args, for_training=False
            )
            if adapter is not None and not full_model:
                model = load_adapter(model, adapter.path)
                merged = args.merge_adapters and mergeable(model, model_args)
                if done.adapters_merged is not None and merged != done.adapters_merged:  # only when resuming
                    flag = "false" if merged else "true"
                    raise MedsftError(
                        f"the report's adapters were scored {'un' * merged}merged: --merge_adapters {flag}"
                    )
                done.adapters_merged = merged
                if done.adapters_merged:
                    # the same model at float32 rounding, without the adapter's extra matmuls in every layer
                    model = model.merge_and_unload()
                    logger.info(
                        "%s merged into the float32 base for scoring (--merge_adapters false: unmerged)", label
                    )
            if not model_args.load_in_4bit:
                model = model.to(state.device)
            model.eval()
            max_length = _max_length(model, args.max_length)
            if done.max_length is not None and max_length != done.max_length:  # only when resuming
                raise MedsftError(f"{label} scores at most {max_length} tokens, the report's models {done.max_length}")
            done.max_length = max_length
            with scoring_model(rep.display_name(label, source.name)):
                done.results[label], done.timings[label], output, choices = _evaluate_model(
                    model, tokenizer, data, done.max_length, args
                )
            for task, choice_output in choices.items():
                done.choice_outputs.setdefault(task, {})[label] = choice_output
        except (MedsftError, OSError, ValueError, RuntimeError) as e:  # RuntimeError: out of memory, for one
            done.failure = {"model": label, "error": _first_line(e)}
            break
        except KeyboardInterrupt as e:  # Ctrl-C (or SIGTERM) an hour into a CPU suite: the finished models are kept
            done.failure = {"model": label, "error": f"interrupted ({str(e) or 'Ctrl-C'})"}
            break
        if output:
            done.outputs[label] = output
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if after_each and i + 1 < len(pending):
            after_each(done)
    return done


def next_model(labels: list[str], done: Evaluation) -> str | None:
    return next((label for label in labels if label not in done.results), None)


def compare_with_base(done: Evaluation, data: EvalData, args: EvalArguments) -> None:
    """Each adapter against the base on the same questions, task by task: a paired test, since separate intervals
    overlap easily."""

    def paired(truth: list[str], base: list[str], other: list[str]) -> PairedComparison:
        return PairedComparison(
            **paired_accuracy_difference(truth, base, other, samples=args.bootstrap_samples, seed=args.seed)
        )

    if data.rows and "base" in done.outputs:
        truth = [r["final_decision"] for r in data.rows]
        for label in [label for label in done.outputs if label != "base"]:
            done.results[label].pubmedqa.vs_base = paired(
                truth, done.outputs["base"]["predicted"], done.outputs[label]["predicted"]
            )
    for task, outputs in done.choice_outputs.items():
        if "base" not in outputs:
            continue
        rows = data.benchmarks[task].rows
        truth = [mc.LETTERS[r["answer"]] for r in rows]
        base_centred = mc.centred_letters(rows, outputs["base"]["details"])
        for label in [label for label in outputs if label != "base"]:
            result = getattr(done.results[label], task)
            result.vs_base = paired(truth, outputs["base"]["predicted"], outputs[label]["predicted"])
            # the same comparison with the letter prior removed: a small model's letter accuracy moves mostly with it
            result.centred_vs_base = paired(truth, base_centred, mc.centred_letters(rows, outputs[label]["details"]))


def build_report(
    args, model_args, source, adapters, labels, data: EvalData, done: Evaluation, started: str,
    resumed: list[dict] | None = None,
) -> EvalReport:  # fmt: skip
    """The report of what ``done`` holds; while models remain to be scored (the report written after each model),
    ``incomplete`` names the next one."""
    incomplete = done.failure
    if incomplete is None and (waiting := next_model(labels, done)):
        incomplete = {
            "model": waiting,
            "error": "not scored yet: the evaluation was still running, or was stopped, when this report was written",
        }
    return EvalReport(
        created=started,
        finished=now(),
        medsft_git_commit=git_commit(),
        versions=library_versions(),
        hardware=describe_device(),
        world_size=PartialState().num_processes,
        model={
            "name": source.name,
            "gguf_sha256": source.gguf_sha256,
            "fingerprint": source.fingerprint,
            "load_in_4bit": model_args.load_in_4bit,
            "precision": base_precision(
                model_args.load_in_4bit,
                model_args.bnb_4bit_quant_type,
                model_args.use_bnb_nested_quant,
                model_args.dtype,
            ),
        },
        adapters={label: {**asdict(adapter), "path": adapter.path} for label, adapter in zip(labels[1:], adapters)},
        settings=_settings(args, data, done.max_length, done.adapters_merged),
        results=done.results,
        timings=done.timings,
        incomplete=incomplete,
        resumed=resumed,
    )


def write_outputs(out: Path, report: EvalReport, data: EvalData, done: Evaluation, console: Console | None) -> None:
    """report.json, the official scorer's prediction files, the plots, and (with a console) the table, printed first:
    a disk that fills during an hour of scoring still leaves the numbers on screen, and one error naming the folder."""
    if console:
        rep.print_report(report, console)
    try:
        _write_files(out, report, data, done)
    except OSError as e:
        raise MedsftError(
            f"could not write the report to {out} ({e.strerror or e})"
            + ("; the table above has the scores" if console else "")
        ) from None
    if console:
        console.print(f"report: {out / rep.REPORT_FILE}")


def _write_files(out: Path, report: EvalReport, data: EvalData, done: Evaluation) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pmids = [r["pmid"] for r in data.rows]
    for label, output in done.outputs.items():
        rep.write_predictions(out, label, pmids, output["predicted"])
        rep.plot_confusion(
            out, label, report.results[label].pubmedqa, rep.display_names(report)[label],
            rep.task_caption(report, "pubmedqa"),
        )  # fmt: skip
    if done.outputs:
        report.pubmedqa_outputs = {
            label: dict(zip(pmids, output["details"])) for label, output in done.outputs.items()
        }
    for task, outputs in done.choice_outputs.items():
        ids = [r["id"] for r in data.benchmarks[task].rows]
        for label, output in outputs.items():
            rep.write_predictions(out, label, ids, output["predicted"], task=task)
        report.choice_outputs = report.choice_outputs or {}
        report.choice_outputs[task] = {
            label: dict(zip(ids, output["details"], strict=True)) for label, output in outputs.items()
        }
    rep.plot_comparison(out, report)
    rep.write_report(out, report)


def _max_length(model, requested: int | None) -> int:
    """``--max_length``, or the model's context capped at 2048; more than the model's positions is an error (GPT-2's
    learned positions end there, rotary models were not trained beyond it)."""
    config = model.config
    native = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if requested:
        if native and requested > native:
            raise MedsftError(f"--max_length {requested} is more than the model's {native} positions")
        return requested
    return min(native or 2048, 2048)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def _evaluate_model(model, tokenizer, data: EvalData, max_length: int, args):
    """One model on every task: ``(results, timings, PubMedQA outputs, {benchmark: outputs})``."""
    results, timings, output, choices = ModelResults(), {}, {}, {}
    if data.texts:
        start = time.perf_counter()
        stride = args.stride or max_length // 2
        scores = ppl.evaluate_perplexity(model, tokenizer, data.texts, max_length, stride, args.batch_size)
        results.perplexity = PerplexityResult(**scores)
        seconds = time.perf_counter() - start
        timings["perplexity"] = {"seconds": seconds, "tokens_per_second": scores["tokens"] / seconds}
    if data.rows:
        truth = [r["final_decision"] for r in data.rows]
        start = time.perf_counter()
        predicted, details = pqa.predict(
            model, tokenizer, data.rows, args.pubmedqa_mode, max_length, args.batch_size, args.max_new_tokens
        )
        seconds = time.perf_counter() - start
        timings["pubmedqa"] = {"seconds": seconds, "questions_per_second": len(data.rows) / seconds}
        scores = PubMedQAScores().compute(
            predictions=predicted, references=truth, bootstrap_samples=args.bootstrap_samples, seed=args.seed
        )
        if args.pubmedqa_mode == "generate":
            scores["unparsable"] = predicted.count(pqa.UNPARSABLE)
        else:  # choice scores exist: how well they rank yes vs no, apart from the answer prior
            scores["yes_no_auc"] = yes_no_auc(truth, details)
        results.pubmedqa = PubMedQAResult.from_dict(scores)
        output = {"predicted": predicted, "details": details}
    for task, benchmark in data.benchmarks.items():
        start = time.perf_counter()
        predicted, details = mc.predict(model, tokenizer, benchmark, args.choice_mode, max_length, args.batch_size)
        seconds = time.perf_counter() - start
        timings[task] = {"seconds": seconds, "questions_per_second": len(benchmark.rows) / seconds}
        scored = mc.scores(
            benchmark.rows, predicted, details, args.bootstrap_samples, args.seed, per_subject=task == "mmlu"
        )
        setattr(results, task, MultipleChoiceResult.from_dict(scored))
        choices[task] = {"predicted": predicted, "details": details}
    return results, timings, output, choices


def _settings(
    args: EvalArguments, data: EvalData, max_length: int | None, adapters_merged: bool | None
) -> EvalSettings:
    return EvalSettings(
        adapters_merged=adapters_merged,
        tasks=args.task_list,
        max_length=max_length,
        batch_size=args.batch_size,
        limit=args.limit,
        seed=args.seed,
        perplexity=PerplexitySettings(
            dataset=Path(args.perplexity_dataset).name,
            hub_id=hub_id_for(args.perplexity_dataset, args.perplexity_dataset_type),
            split=args.perplexity_split,
            format=data.perplexity_format,
            stride=args.stride or (max_length // 2 if max_length else None),
            texts=len(data.texts),
            texts_in_split=data.available.get("perplexity"),
        )
        if data.texts
        else None,
        pubmedqa=PubMedQASettings(
            dataset=Path(args.pubmedqa_dataset).name,
            split=args.pubmedqa_split,
            mode=args.pubmedqa_mode,
            questions=len(data.rows),
            questions_in_split=data.available.get("pubmedqa"),
        )
        if data.rows
        else None,
        **{task: _choice_settings(b, args) for task, b in data.benchmarks.items()},
    )


def _choice_settings(benchmark: mc.Benchmark, args: EvalArguments) -> MultipleChoiceSettings:
    dropped: dict[str, int] = {}
    for report in benchmark.reports:
        for reason, n in report.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    return MultipleChoiceSettings(
        dataset=Path(benchmark.source).name,
        hub_id=hub_id_for_benchmark(benchmark),
        split=benchmark.split,
        mode=args.choice_mode,
        num_fewshot=benchmark.num_fewshot,
        harness_task=mc.HARNESS_TASKS[benchmark.name],
        questions=len(benchmark.rows),
        questions_in_split=benchmark.available,
        dropped=dropped,
        subjects=benchmark.subjects or None,
    )


def hub_id_for_benchmark(benchmark: mc.Benchmark) -> str:
    """The Hub id a local copy stands for (the model card's dataset), or the id that was loaded."""
    return benchmark.source if is_hub_id(benchmark.source) else mc.HUB_IDS[benchmark.name]
