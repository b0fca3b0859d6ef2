"""The model card's evaluation: ``model-index`` entries and the base-vs-model table, from the evaluation report only
(nothing invented; a subset scored with ``--limit`` is marked as one)."""

from __future__ import annotations

from huggingface_hub import EvalResult


def subset(task: dict, count: str, total: str) -> tuple[int, int] | None:
    """``(scored, in split)`` when an evaluation scored only part of its split (``--limit``), else None."""
    n, of = task.get(count), task.get(total)
    return (n, of) if n is not None and of is not None and n < of else None


def _split_name(split: str, part: tuple[int, int] | None) -> str:
    return f"{split}[:{part[0]}]" if part else split


def _of(part: tuple[int, int] | None, what: str) -> str:
    return f" (subset: first {part[0]} of {part[1]} {what})" if part else ""


def eval_results(report: dict | None, label: str | None) -> list[EvalResult]:
    """``model-index`` entries for the model ``label`` of an evaluation report (none without a report). A subset
    (``--limit``) is marked in the split (``test[:100]``) and the metric name; values are rounded to 4 digits."""
    if not report or label not in report.get("results", {}):
        return []
    results, settings = report["results"][label], report.get("settings") or {}
    out = []
    if "pubmedqa" in results:
        scores, task = results["pubmedqa"], settings.get("pubmedqa") or {}
        part = subset(task, "questions", "questions_in_split")
        common = {
            "task_type": "question-answering",
            "task_name": f"PubMedQA yes/no/maybe ({task.get('mode', 'loglikelihood')} scoring)",
            "dataset_type": "qiaojin/PubMedQA",
            "dataset_name": "PubMedQA (PQA-L)",
            "dataset_config": "pqa_labeled",
            "dataset_split": _split_name(task.get("split", "test"), part),
        }
        questions = _of(part, "questions")
        out.append(
            EvalResult(
                metric_type="accuracy",
                metric_name=f"Accuracy{questions}",
                metric_value=round(scores["accuracy"], 4),
                **common,
            )
        )
        out.append(
            EvalResult(
                metric_type="f1",
                metric_name=f"Macro-F1{questions}",
                metric_value=round(scores["macro_f1"], 4),
                **common,
            )
        )
    if "perplexity" in results:
        task = settings.get("perplexity") or {}
        part = subset(task, "texts", "texts_in_split")
        dataset = task.get("hub_id") or task.get("dataset") or "local"
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name=f"Perplexity ({task.get('format', '')} format)",
                dataset_type=dataset,
                dataset_name=dataset.split("/")[-1],
                dataset_split=_split_name(task.get("split", "validation"), part),
                metric_type="perplexity",
                metric_name=f"Perplexity{_of(part, 'texts')}",
                metric_value=round(results["perplexity"]["perplexity"], 4),
            )
        )
    return out


def _evaluation_section(report: dict | None, label: str | None) -> str:
    if not report or label not in report.get("results", {}):
        return (
            "No evaluation report was published with this model. To measure it against its base model:\n\n"
            "```bash\npython -m medsft.evaluate --model_name_or_path BASE --adapters THIS_ADAPTER\n```\n"
        )
    results, settings = report["results"], report.get("settings") or {}
    columns = ["base", label]
    lines = ["| metric | base model | this model |", "|---|---|---|"]
    pubmedqa = settings.get("pubmedqa")
    if pubmedqa and all("pubmedqa" in results[c] for c in columns):
        p = [results[c]["pubmedqa"] for c in columns]
        questions = _of(subset(pubmedqa, "questions", "questions_in_split"), "questions")
        lines.append(f"| PubMedQA accuracy{questions} | " + " | ".join(f"{s['accuracy']:.3f}" for s in p) + " |")
        lines.append(
            "| 95% bootstrap CI | "
            + " | ".join(f"{s['accuracy_ci95'][0]:.3f}–{s['accuracy_ci95'][1]:.3f}" for s in p)
            + " |"
        )
        lines.append("| PubMedQA macro-F1 | " + " | ".join(f"{s['macro_f1']:.3f}" for s in p) + " |")
        if all(s.get("yes_no_auc") is not None for s in p):  # older reports and generate mode lack it
            lines.append(
                "| yes-vs-no ranking AUC (0.5 = chance) | " + " | ".join(f"{s['yes_no_auc']:.3f}" for s in p) + " |"
            )
        paired = p[1].get("vs_base")
        if paired:  # older reports lack it
            low, high = paired["difference_ci95"]
            lines.append(
                f"| accuracy change vs base, paired 95% CI | | {paired['accuracy_difference']:+.3f} "
                f"({low:+.3f} to {high:+.3f}); {paired['fixed']} answers fixed, {paired['broken']} broken, "
                f"McNemar p = {paired['mcnemar_p']:.2g} |"
            )
        lines.append(
            "| predicted yes / no / maybe | "
            + " | ".join(" / ".join(str(v) for v in s["prediction_distribution"].values()) for s in p)
            + " |"
        )
    perplexity = settings.get("perplexity")
    if perplexity and all("perplexity" in results[c] for c in columns):
        q = [results[c]["perplexity"] for c in columns]
        texts = _of(subset(perplexity, "texts", "texts_in_split"), "texts")
        lines.append(
            f"| perplexity ({perplexity.get('hub_id') or perplexity['dataset']}, {perplexity['split']}){texts} | "
            + " | ".join(f"{s['perplexity']:.3f}" for s in q)
            + " |"
        )
        lines.append("| bits per byte | " + " | ".join(f"{s['bits_per_byte']:.4f}" for s in q) + " |")
    notes = []
    if pubmedqa:
        baseline = results["base"]["pubmedqa"]["majority_baseline"]
        part = subset(pubmedqa, "questions", "questions_in_split")
        notes.append(
            f"PubMedQA: {pubmedqa['questions']} questions of the `{pubmedqa['split']}` split"
            + (f" (**a subset**: the first {part[0]} of {part[1]})" if part else "")
            + f', `{pubmedqa["mode"]}` scoring; always answering "{baseline["label"]}" scores '
            f"{baseline['accuracy']:.3f}."
        )
    if perplexity:
        part = subset(perplexity, "texts", "texts_in_split")
        notes.append(
            f"Perplexity: token-weighted, over the loss-carrying tokens of the `{perplexity['format']}` format, "
            f"{results[label]['perplexity']['tokens']} tokens"
            + (f" of **a subset**: the first {part[0]} of the split's {part[1]} texts." if part else ".")
        )
    notes.append(
        f"Measured by `medsft.evaluate` on {report.get('finished', '')[:10]}; the full report is in "
        "`eval/report.json`."
    )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
