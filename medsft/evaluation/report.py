"""The evaluation's outputs: a rich comparison table, ``report.json``, ``{PMID: label}`` prediction files for
PubMedQA's official ``evaluation.py``, and PNG plots (confusion matrices, base-vs-adapter bars)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medsft.core.errors import MedsftError
from medsft.evaluation.schema import EvalReport, ModelResults, PerplexityResult, PubMedQAResult

REPORT_FILE = "report.json"


def choose_output_dir(output_dir: str | None, default: Path) -> Path:
    """The directory the report goes to; an existing report is never overwritten.

    An explicit ``--output_dir`` that already holds a report is an error. The default directory gets a numbered
    sibling (``eval-2``, ``eval-3`` …) instead.
    """
    if output_dir:
        out = Path(output_dir)
        if (out / REPORT_FILE).exists():
            raise MedsftError(f"{out} already holds an evaluation report ({REPORT_FILE}); choose another --output_dir")
        return out
    out, n = default, 1
    while (out / REPORT_FILE).exists():
        n += 1
        out = default.with_name(f"{default.name}-{n}")
    return out


def predictions_file(out: Path, model: str) -> Path:
    return out / f"pubmedqa_predictions_{model}.json"


def write_predictions(out: Path, model: str, pmids: list[str], labels: list[str]) -> Path:
    path = predictions_file(out, model)
    path.write_text(json.dumps(dict(zip(pmids, labels, strict=True)), indent=1) + "\n")
    return path


def write_report(out: Path, report: EvalReport) -> Path:
    path = out / REPORT_FILE
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pubmedqa_rows() -> list[tuple[str, Callable[[PubMedQAResult], str]]]:
    def ci(q: PubMedQAResult) -> str:
        return f"{q.accuracy_ci95[0]:.3f}–{q.accuracy_ci95[1]:.3f}"

    def vs_base(q: PubMedQAResult) -> str:
        d = q.vs_base
        return (
            "—" if not d else f"{d.accuracy_difference:+.3f} ({d.difference_ci95[0]:+.3f}…{d.difference_ci95[1]:+.3f})"
        )

    def fixed_broken(q: PubMedQAResult) -> str:
        d = q.vs_base
        return "—" if not d else f"{d.fixed}/{d.broken} (p={d.mcnemar_p:.2g})"

    return [
        ("PubMedQA accuracy", lambda q: _fmt(q.accuracy)),
        ("  95% bootstrap CI", ci),
        ("  vs base, paired 95% CI", vs_base),
        ("  fixed/broken vs base", fixed_broken),
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


def comparison_table(results: dict[str, ModelResults]) -> Table:
    """Rows: metrics; columns: base and each adapter."""
    table = Table(title="medsft evaluation: base vs adapters")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    for task, rows in (("perplexity", _PERPLEXITY_ROWS), ("pubmedqa", _pubmedqa_rows())):
        if any(getattr(r, task) for r in results.values()):
            for label, get in rows:
                cells = (get(getattr(r, task)) if getattr(r, task) else "—" for r in results.values())
                table.add_row(label, *cells)
    return table


def confusion_table(name: str, scores: PubMedQAResult) -> Table:
    matrix = scores.confusion_matrix
    table = Table(title=f"{name}: PubMedQA confusion (rows true, columns predicted)")
    table.add_column("true \\ predicted")
    for label in matrix["columns_predicted"]:
        table.add_column(label, justify="right")
    for label, counts in zip(matrix["rows_true"], matrix["counts"]):
        table.add_row(label, *(str(c) for c in counts))
    return table


def print_report(results: dict[str, ModelResults], console: Console) -> None:
    console.print(comparison_table(results))
    for name, result in results.items():
        if result.pubmedqa:
            console.print(confusion_table(name, result.pubmedqa))


def plot_confusion(out: Path, name: str, scores: PubMedQAResult) -> Path:
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
    ax.set_title(f"{name}\nacc {scores.accuracy:.3f}, macro-F1 {scores.macro_f1:.3f} (n={scores.n})")
    fig.tight_layout()
    path = out / f"pubmedqa_confusion_{name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_comparison(out: Path, results: dict[str, ModelResults]) -> Path | None:
    """Bars per model: PubMedQA accuracy (95% CI, majority baseline line) and perplexity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [task for task in ("pubmedqa", "perplexity") if any(getattr(r, task) for r in results.values())]
    if not panels:
        return None
    names = list(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, task in zip(axes[0], panels):
        if task == "pubmedqa":
            scored = [results[n].pubmedqa for n in names]
            acc = [q.accuracy if q else 0.0 for q in scored]
            low = [a - q.accuracy_ci95[0] if q else 0 for a, q in zip(acc, scored)]
            high = [q.accuracy_ci95[1] - a if q else 0 for a, q in zip(acc, scored)]
            ax.bar(names, acc, yerr=[low, high], capsize=4, color="tab:blue")
            base = next(q.majority_baseline.accuracy for q in scored if q)
            ax.axhline(base, color="tab:red", linestyle="--", label=f"majority baseline {base:.3f}")
            ax.set_ylim(0, 1)
            ax.set_ylabel("PubMedQA accuracy (95% CI)")
            ax.legend(loc="upper right", fontsize=8)
        else:
            ppl = [results[n].perplexity.perplexity if results[n].perplexity else 0.0 for n in names]
            ax.bar(names, ppl, color="tab:green")
            ax.set_ylabel("perplexity (lower is better)")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    path = out / "comparison.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
