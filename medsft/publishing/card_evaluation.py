"""The model card's evaluation: ``model-index`` entries and the base-vs-model table, from the evaluation report only
(nothing invented; a subset scored with ``--limit`` is marked as one)."""

from __future__ import annotations

from huggingface_hub import EvalResult

from medsft.evaluation.schema import CHOICE_TASKS, EvalReport

# The model-index description of each letter-choice benchmark (dataset as the Open Medical-LLM Leaderboard names it)
_CHOICE_CARD = {
    "medqa": ("MedQA (USMLE, 4 options)", "GBaker/MedQA-USMLE-4-options"),
    "medmcqa": ("MedMCQA", "openlifescienceai/medmcqa"),
    "mmlu": ("MMLU medical subjects", "cais/mmlu"),
}


def _split_name(split: str, part: tuple[int, int] | None) -> str:
    return f"{split}[:{part[0]}]" if part else split


def _of(part: tuple[int, int] | None, what: str) -> str:
    return f" (subset: first {part[0]} of {part[1]} {what})" if part else ""


def eval_results(report: EvalReport | None, label: str | None) -> list[EvalResult]:
    """``model-index`` entries for the model ``label`` of an evaluation report (none without a report). A subset
    (``--limit``) is marked in the split (``test[:100]``) and the metric name; values are rounded to 4 digits."""
    if not report or label not in report.results:
        return []
    results, settings = report.results[label], report.settings
    out = []
    if results.pubmedqa:
        task = settings.pubmedqa
        part = task.subset if task else None
        common = {
            "task_type": "question-answering",
            "task_name": f"PubMedQA yes/no/maybe ({task.mode if task else 'loglikelihood'} scoring)",
            "dataset_type": "qiaojin/PubMedQA",
            "dataset_name": "PubMedQA (PQA-L)",
            "dataset_config": "pqa_labeled",
            "dataset_split": _split_name(task.split if task else "test", part),
        }
        questions = _of(part, "questions")
        for metric_type, name, value in (
            ("accuracy", "Accuracy", results.pubmedqa.accuracy),
            ("f1", "Macro-F1", results.pubmedqa.macro_f1),
        ):
            out.append(
                EvalResult(
                    metric_type=metric_type, metric_name=f"{name}{questions}", metric_value=round(value, 4), **common
                )
            )
    for name in CHOICE_TASKS:
        result, task = getattr(results, name), getattr(settings, name)
        if not result or not task:
            continue
        title, hub_id = _CHOICE_CARD[name]
        shots = f"{task.num_fewshot}-shot" if task.num_fewshot else "zero-shot"
        common = {
            "task_type": "multiple-choice",
            "task_name": f"{title} ({shots}, {task.mode} scoring as lm-evaluation-harness {task.harness_task})",
            "dataset_type": task.hub_id or hub_id,
            "dataset_name": title,
            "dataset_split": _split_name(task.split, task.subset),
        }
        if name == "mmlu":
            common["dataset_config"] = ",".join(task.subjects or [])
        out.append(
            EvalResult(
                metric_type="accuracy",
                metric_name=f"Accuracy{' (micro)' if name == 'mmlu' else ''}{_of(task.subset, 'questions')}",
                metric_value=round(result.accuracy, 4),
                **common,
            )
        )
    if results.perplexity:
        task = settings.perplexity
        part = task.subset if task else None
        dataset = (task.hub_id or task.dataset if task else None) or "local"
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name=f"Perplexity ({task.format if task else ''} format)",
                dataset_type=dataset,
                dataset_name=dataset.split("/")[-1],
                dataset_split=_split_name(task.split if task else "validation", part),
                metric_type="perplexity",
                metric_name=f"Perplexity{_of(part, 'texts')}",
                metric_value=round(results.perplexity.perplexity, 4),
            )
        )
    return out


def _row(name: str, values) -> str:
    return f"| {name} | " + " | ".join(values) + " |"


def _paired_row(name: str, d, fixed_word: str | None = None) -> str:
    """The adapter-only row of a paired comparison: the difference, its interval, the answers it fixed and broke
    (named ``fixed_word``; left out when None) and McNemar's p."""
    counts = f"{d.fixed} {fixed_word}, {d.broken} broken, " if fixed_word else ""
    return (
        f"| {name}, paired 95% CI | | {d.accuracy_difference:+.3f} "
        f"({d.difference_ci95[0]:+.3f} to {d.difference_ci95[1]:+.3f}); {counts}McNemar p = {d.mcnemar_p:.2g} |"
    )


def evaluation_section(report: EvalReport | None, label: str | None) -> str:
    if not report or label not in report.results:
        return (
            "No evaluation report was published with this model. To measure it against its base model:\n\n"
            "```bash\npython -m medsft.evaluate --model_name_or_path BASE --adapters THIS_ADAPTER\n```\n"
        )
    results, settings = report.results, report.settings
    columns = [results["base"], results[label]]
    lines = ["| metric | base model | this model |", "|---|---|---|"]
    pubmedqa = settings.pubmedqa
    if pubmedqa and all(c.pubmedqa for c in columns):
        p = [c.pubmedqa for c in columns]
        lines.append(_row(f"PubMedQA accuracy{_of(pubmedqa.subset, 'questions')}", (f"{s.accuracy:.3f}" for s in p)))
        lines.append(_row("95% bootstrap CI", (f"{s.accuracy_ci95[0]:.3f}–{s.accuracy_ci95[1]:.3f}" for s in p)))
        lines.append(_row("PubMedQA macro-F1", (f"{s.macro_f1:.3f}" for s in p)))
        if all(s.yes_no_auc is not None for s in p):  # older reports and generate mode lack it
            lines.append(_row("yes-vs-no ranking AUC (0.5 = chance)", (f"{s.yes_no_auc:.3f}" for s in p)))
        if p[1].vs_base:  # older reports lack it
            lines.append(_paired_row("accuracy change vs base", p[1].vs_base, "answers fixed"))
        distributions = (" / ".join(str(v) for v in s.prediction_distribution.values()) for s in p)
        lines.append(_row("predicted yes / no / maybe", distributions))
    prior_removed = False
    for name in CHOICE_TASKS:
        task = getattr(settings, name)
        if not task or not all(getattr(c, name) for c in columns):
            continue
        m = [getattr(c, name) for c in columns]
        title = _CHOICE_CARD[name][0]
        lines.append(_row(f"{title} accuracy{_of(task.subset, 'questions')}", (f"{s.accuracy:.3f}" for s in m)))
        lines.append(_row("95% bootstrap CI", (f"{s.accuracy_ci95[0]:.3f}–{s.accuracy_ci95[1]:.3f}" for s in m)))
        if m[1].vs_base:
            lines.append(_paired_row("accuracy change vs base", m[1].vs_base, "fixed"))
        if all(s.centred_accuracy is not None for s in m):  # reports from before 2026-12-06 lack it
            prior_removed = True
            lines.append(
                _row("accuracy with the answer-letter prior removed", (f"{s.centred_accuracy:.3f}" for s in m))
            )
            if m[1].centred_vs_base:
                lines.append(_paired_row("its change vs base", m[1].centred_vs_base))
        if name == "mmlu" and all(s.subjects for s in m):
            lines.append(_row("MMLU macro (mean of subjects)", (f"{s.macro_accuracy:.3f}" for s in m)))
            for subject in m[0].subjects:
                lines.append(_row(f"MMLU {subject}", (f"{s.subjects[subject].accuracy:.3f}" for s in m)))
    perplexity = settings.perplexity
    if perplexity and all(c.perplexity for c in columns):
        q = [c.perplexity for c in columns]
        name = f"perplexity ({perplexity.hub_id or perplexity.dataset}, {perplexity.split})"
        lines.append(_row(name + _of(perplexity.subset, "texts"), (f"{s.perplexity:.3f}" for s in q)))
        lines.append(_row("bits per byte", (f"{s.bits_per_byte:.4f}" for s in q)))
    notes = []
    if pubmedqa:
        baseline, part = results["base"].pubmedqa.majority_baseline, pubmedqa.subset
        notes.append(
            f"PubMedQA: {pubmedqa.questions} questions of the `{pubmedqa.split}` split"
            + (f" (**a subset**: the first {part[0]} of {part[1]})" if part else "")
            + f', `{pubmedqa.mode}` scoring; always answering "{baseline.label}" scores {baseline.accuracy:.3f}.'
        )
    for name in CHOICE_TASKS:
        task = getattr(settings, name)
        if task:
            part = task.subset
            notes.append(
                f"{_CHOICE_CARD[name][0]}: {task.questions} questions of the `{task.split}` split"
                + (f" (**a subset**: the first {part[0]} of {part[1]})" if part else "")
                + f", {task.num_fewshot}-shot, `{task.mode}` scoring with lm-evaluation-harness's "
                f"`{task.harness_task}` prompt; chance is 0.250."
            )
    if prior_removed:
        notes.append(
            "The accuracy with the answer-letter prior removed subtracts each letter's mean score over the questions "
            "(per MMLU subject) before choosing, using no answers: a small model's letter-task accuracy moves mostly "
            "with its favourite letter, this with what it tells apart."
        )
    if perplexity:
        part = perplexity.subset
        notes.append(
            f"Perplexity: token-weighted, over the loss-carrying tokens of the `{perplexity.format}` format, "
            f"{results[label].perplexity.tokens} tokens"
            + (f" of **a subset**: the first {part[0]} of the split's {part[1]} texts." if part else ".")
        )
    notes.append(f"Measured by `medsft.evaluate` on {report.finished[:10]}; the full report is in `eval/report.json`.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
