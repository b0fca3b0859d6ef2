"""The evaluation's outputs: a rich comparison table, ``report.json``, prediction files (``{PMID: label}`` for
PubMedQA's official ``evaluation.py``; ``{question id: letter}`` for MedQA, MedMCQA and MMLU), and PNG plots
(confusion matrices, base-vs-adapter bars for every task)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medsft.core.errors import MedsftError
from medsft.core.figures import fitted_title
from medsft.data.io import write_atomic
from medsft.evaluation.schema import (
    CHOICE_TASKS,
    EvalReport,
    ModelResults,
    MultipleChoiceResult,
    PerplexityResult,
    PubMedQAResult,
)

REPORT_FILE = "report.json"


def _in_use(out: Path) -> bool:
    """Whether ``out`` is something the report must not be written into: a file, or a folder that is not empty."""
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def choose_output_dir(output_dir: str | None, default: Path) -> Path:
    """The directory the report goes to: a new or empty folder, so nothing already there (an earlier report, its
    predictions or plots, or a folder of the user's) is overwritten or mixed with it.

    An explicit ``--output_dir`` that is not empty is an error. The default directory gets a numbered sibling
    (``eval-2``, ``eval-3`` …) instead.
    """
    if output_dir:
        out = Path(output_dir)
        if (out / REPORT_FILE).exists():
            raise MedsftError(
                f"{out} already holds an evaluation report ({REPORT_FILE}); choose another --output_dir (or pass "
                "--resume true to finish it, if it stopped before every model was scored)"
            )
        if _in_use(out):
            names = sorted(p.name for p in out.iterdir())[:3] if out.is_dir() else []
            held = "it holds " + ", ".join(names) if names else "it is a file"
            raise MedsftError(f"--output_dir {out} is not a new or empty folder ({held}); choose another --output_dir")
        return out
    out, n = default, 1
    while _in_use(out):
        n += 1
        out = default.with_name(f"{default.name}-{n}")
    return out


def predictions_file(out: Path, model: str, task: str = "pubmedqa") -> Path:
    return out / f"{task}_predictions_{model}.json"


def write_predictions(out: Path, model: str, ids: list[str], labels: list[str], task: str = "pubmedqa") -> Path:
    """``{question id: predicted label}``: PMIDs for PubMedQA; the row index in the official file (``SUBJECT/index``
    for MMLU) for the letter-choice benchmarks, so anyone can rescore them."""
    return write_atomic(
        predictions_file(out, model, task), json.dumps(dict(zip(ids, labels, strict=True)), indent=1) + "\n"
    )


def write_report(out: Path, report: EvalReport) -> Path:
    return write_atomic(out / REPORT_FILE, json.dumps(report.to_dict(), indent=2) + "\n")


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pubmedqa_rows() -> list[tuple[str, Callable[[PubMedQAResult], str]]]:
    def ci(q: PubMedQAResult) -> str:
        return f"{q.accuracy_ci95[0]:.3f}–{q.accuracy_ci95[1]:.3f}"

    return [
        ("PubMedQA accuracy", lambda q: _fmt(q.accuracy)),
        ("  95% bootstrap CI", ci),
        ("  vs base, paired 95% CI", lambda q: _paired(q.vs_base)),
        ("  fixed/broken vs base", lambda q: _fixed_broken(q.vs_base)),
        ("PubMedQA macro-F1", lambda q: _fmt(q.macro_f1)),
        ("  yes-vs-no ranking AUC", lambda q: _fmt(q.yes_no_auc)),
        ("  predicted yes/no/maybe", lambda q: "/".join(str(v) for v in q.prediction_distribution.values())),
        ("  majority baseline", lambda q: _fmt(q.majority_baseline.accuracy)),
    ]


_PERPLEXITY_ROWS: list[tuple[str, Callable[[PerplexityResult], str]]] = [
    ("perplexity", lambda p: _fmt(p.perplexity, 2)),
    ("mean NLL (nats/token)", lambda p: _fmt(p.mean_nll, 4)),
    ("bits per byte", lambda p: _fmt(p.bits_per_byte, 4)),
    ("tokens scored", lambda p: str(p.tokens)),
]


TASK_TITLES = {"medqa": "MedQA", "medmcqa": "MedMCQA", "mmlu": "MMLU medical"}


def _paired(d) -> str:
    return "—" if not d else f"{d.accuracy_difference:+.3f} ({d.difference_ci95[0]:+.3f}…{d.difference_ci95[1]:+.3f})"


def _fixed_broken(d) -> str:
    return "—" if not d else f"{d.fixed}/{d.broken} (p={d.mcnemar_p:.2g})"


def _choice_rows(task: str, subjects: list[str]) -> list[tuple[str, Callable[[MultipleChoiceResult], str]]]:
    title = TASK_TITLES[task]
    rows = [
        (f"{title} accuracy" + (" (micro)" if task == "mmlu" else ""), lambda q: _fmt(q.accuracy)),
        ("  95% bootstrap CI", lambda q: f"{q.accuracy_ci95[0]:.3f}–{q.accuracy_ci95[1]:.3f}"),
        ("  vs base, paired 95% CI", lambda q: _paired(q.vs_base)),
        ("  fixed/broken vs base", lambda q: _fixed_broken(q.vs_base)),
        ("  acc_norm", lambda q: _fmt(q.acc_norm)),
        ("  predicted A/B/C/D", lambda q: "/".join(str(v) for v in q.prediction_distribution.values())),
        ("  letter-prior chance", lambda q: _fmt(q.prior_chance)),
        ("  letter prior removed", lambda q: _fmt(q.centred_accuracy)),
        ("    vs base, paired 95% CI", lambda q: _paired(q.centred_vs_base)),
        ("    fixed/broken vs base", lambda q: _fixed_broken(q.centred_vs_base)),
        ("    letter ranking AUC", lambda q: _fmt(q.letter_auc)),
    ]
    if task == "mmlu":
        rows.append(("  macro (mean of subjects)", lambda q: _fmt(q.macro_accuracy)))
        for subject in subjects:
            rows.append((f"  {subject}", lambda q, s=subject: _fmt(q.subjects[s].accuracy) if q.subjects else "—"))
    return rows


def display_name(label: str, base_model: str) -> str:
    """How a column is shown to a person: the base by its model's name, an adapter by its run's (its label)."""
    return f"base ({base_model})" if label == "base" else label


def display_names(report: EvalReport) -> dict[str, str]:
    """Column label -> ``display_name`` for every model of the report."""
    return {label: display_name(label, report.model["name"]) for label in report.results}


def task_caption(report: EvalReport, task: str) -> str:
    """What a task scored: dataset, split and how many (``first 12 of 500`` for a ``--limit`` subset)."""
    settings = getattr(report.settings, task)
    if settings is None:
        return ""
    unit = "texts" if task == "perplexity" else "questions"
    n, of = _sample(settings)
    count = f"first {n} of {of} {unit}" if of else f"{n} {unit}"
    shots = f", {settings.num_fewshot}-shot" if getattr(settings, "num_fewshot", 0) else ""
    return f"{settings.dataset} {settings.split}, {count}{shots}"


def heading(report: EvalReport) -> str:
    """One line naming the base model, how it was held, and every adapter."""
    precision = report.model.get("precision")
    base = report.model["name"] + (f" ({precision})" if precision else "")
    adapters = [label for label in report.results if label != "base"]
    return f"{base} vs {', '.join(adapters)}" if adapters else base


def comparison_table(results: dict[str, ModelResults], names: dict[str, str] | None = None) -> Table:
    """Rows: metrics; columns: base and each adapter (``names``: the columns' headers)."""
    table = Table()
    table.add_column("metric")
    for label in results:
        table.add_column((names or {}).get(label, label), justify="right")
    sections = [("perplexity", _PERPLEXITY_ROWS), ("pubmedqa", _pubmedqa_rows())]
    for task in CHOICE_TASKS:
        subjects = next((list(getattr(r, task).subjects or {}) for r in results.values() if getattr(r, task)), [])
        sections.append((task, _choice_rows(task, subjects)))
    for task, rows in sections:
        if any(getattr(r, task) for r in results.values()):
            for label, get in rows:
                cells = (get(getattr(r, task)) if getattr(r, task) else "—" for r in results.values())
                table.add_row(label, *cells)
    return table


def confusion_table(scores: PubMedQAResult) -> Table:
    matrix = scores.confusion_matrix
    table = Table()
    table.add_column("true \\ predicted")
    for label in matrix["columns_predicted"]:
        table.add_column(label, justify="right")
    for label, counts in zip(matrix["rows_true"], matrix["counts"]):
        table.add_row(label, *(str(c) for c in counts))
    return table


def print_report(report: EvalReport, console: Console) -> None:
    """The comparison table and PubMedQA's confusion matrices. Titles are printed as lines of their own: as a rich
    table's title they were wrapped to the table's width, mid-phrase."""
    names = display_names(report)
    titles = {"pubmedqa": "PubMedQA", **TASK_TITLES}
    scored = "; ".join(f"{titles.get(t, t)}: {task_caption(report, t)}" for t in report.settings.tasks)
    console.print(f"[bold]medsft evaluation[/bold]: {heading(report)}", soft_wrap=True)
    console.print(f"scored: {scored}", soft_wrap=True)
    console.print(comparison_table(report.results, names))
    for label, result in report.results.items():
        if result.pubmedqa:
            console.print(
                f"[bold]{names[label]}[/bold]: PubMedQA confusion (rows true, columns predicted)", soft_wrap=True
            )
            console.print(confusion_table(result.pubmedqa))


def plot_confusion(out: Path, label: str, scores: PubMedQAResult, name: str, caption: str) -> Path:
    """``pubmedqa_confusion_<label>.png``, titled with the model's ``name`` and what was scored (``caption``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = scores.confusion_matrix
    counts = matrix["counts"]
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(matrix["columns_predicted"])), matrix["columns_predicted"])
    ax.set_yticks(range(len(matrix["rows_true"])), matrix["rows_true"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in counts) or 1
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    title = f"{name}\nPubMedQA {caption}\nacc {scores.accuracy:.3f}, macro-F1 {scores.macro_f1:.3f} (n={scores.n})"
    ax.set_title(fitted_title(title, fig.get_figwidth(), 8), fontsize=8)
    fig.tight_layout()
    path = out / f"pubmedqa_confusion_{label}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_comparison(out: Path, report: EvalReport) -> Path | None:
    """One figure for the whole suite: accuracy per task with 95% intervals, base and each adapter side by side
    (chance and PubMedQA's majority baseline marked), and perplexity with its values; titled with the models, each
    task labelled with its dataset and sample size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    results = report.results
    names, shown = list(results), display_names(report)
    tasks = [t for t in ("pubmedqa", *CHOICE_TASKS) if any(getattr(r, t) for r in results.values())]
    panels = (["accuracy"] if tasks else []) + (["perplexity"] if any(r.perplexity for r in results.values()) else [])
    if not panels:
        return None
    widths = [max(4.5, 1.2 * len(tasks) * max(1, len(names)) / 2) if p == "accuracy" else 4.5 for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths), 4.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})  # fmt: skip
    for ax, panel in zip(axes[0], panels):
        if panel == "accuracy":
            x = np.arange(len(tasks))
            width = 0.8 / len(names)
            for i, name in enumerate(names):
                scored = [getattr(results[name], t) for t in tasks]
                acc = [q.accuracy if q else 0.0 for q in scored]
                low = [a - q.accuracy_ci95[0] if q else 0 for a, q in zip(acc, scored)]
                high = [q.accuracy_ci95[1] - a if q else 0 for a, q in zip(acc, scored)]
                ax.bar(
                    x + (i - (len(names) - 1) / 2) * width, acc, width, yerr=[low, high], capsize=3, label=shown[name]
                )
            if any(t in CHOICE_TASKS for t in tasks):
                ax.axhline(0.25, color="gray", linestyle=":", label="chance (4 options)")
            pubmedqa = next((r.pubmedqa for r in results.values() if r.pubmedqa), None)
            if pubmedqa:
                base = pubmedqa.majority_baseline.accuracy
                ax.hlines(base, -0.4, 0.4, color="tab:red", linestyle="--", label=f"PubMedQA majority {base:.3f}")
            ticks = [f"{TASK_TITLES.get(t, 'PubMedQA')}\n{_count(report, t)}" for t in tasks]
            ax.set_xticks(x, ticks, fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_ylabel("accuracy (95% CI)")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=7, frameon=False)
        else:
            ppl = [results[n].perplexity.perplexity if results[n].perplexity else 0.0 for n in names]
            # each model in the colour its accuracy bars have (matplotlib's cycle, in the same order)
            bars = ax.bar([shown[n] for n in names], ppl, color=[f"C{i}" for i in range(len(names))])
            ax.bar_label(bars, labels=[f"{v:.2f}" if v else "—" for v in ppl], fontsize=8)
            ax.set_ylabel("perplexity (lower is better)")
            ax.set_title(f"perplexity\n{task_caption(report, 'perplexity')}", fontsize=8)
            ax.tick_params(axis="x", rotation=20, labelsize=7)
            ax.margins(y=0.15)
    fig.suptitle(fitted_title(f"medsft evaluation: {heading(report)}", fig.get_figwidth(), 9), fontsize=9)
    fig.tight_layout()
    path = out / "comparison.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _sample(settings) -> tuple[int, int | None]:
    """How many a task scored, and of how many when ``--limit`` scored a subset (else None)."""
    subset = settings.subset
    if subset:
        return subset
    return (settings.texts if hasattr(settings, "texts") else settings.questions), None


def _count(report: EvalReport, task: str) -> str:
    """The x-axis label under a task: split and sample size."""
    settings = getattr(report.settings, task)
    n, of = _sample(settings)
    return f"{settings.split}, n={n}" + (f" of {of}" if of else "")
