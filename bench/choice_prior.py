"""Letter-choice benchmarks: did a model's answers move with the questions, or only with its answer-letter prior?

A small model scored on MedQA, MedMCQA or MMLU often picks one letter for nearly every question (SmolLM2-135M answers
"A" to all 1,273 MedQA questions). Its accuracy is then the share of questions whose answer is that letter, and a
fine-tune that shifts the favourite letter moves accuracy "significantly" without any change in what the model
knows. For each model in ``medsft.evaluate`` reports, per task, this prints:

- accuracy as evaluated, and how often each letter was predicted;
- **letter-prior chance**: the accuracy a guesser reaches that picks each letter as often as the model did (within
  each MMLU subject) but independently of the question: sum over letters of (share predicted) × (share correct).
  **Above prior** = accuracy − that chance, with a bootstrap 95% interval: ~0 means the choice of letter carries no
  information about the question's answer;
- **centred accuracy**: each letter's mean log-likelihood over the task's questions (per MMLU subject) subtracted
  before the highest is picked. It uses no answers (only the model's own scores), so it is a fair,
  label-free removal of the letter prior; paired with the base (interval and McNemar) like the suite's accuracy;
- **letter AUC**: for each letter, how well the model's margin for it (its centred score minus the mean of the other
  three) ranks the questions whose answer is that letter above the others (ROC AUC, 0.5 = chance), averaged over
  the four letters; it does not depend on any threshold or prior.

It reads the per-question letter log-likelihoods that every report keeps (``choice_outputs``); nothing is
recomputed, so it takes seconds. A diagnostic: the benchmark's score stays the accuracy as evaluated.

```bash
python bench/choice_prior.py bench/results/suite_medquad_smollm2_full_eval/report.json \\
    --medqa ../shared/data/medqa --mmlu ../shared/data/mmlu
```
Prints a table and writes ``bench/results/choice_prior.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from medsft.core.errors import MedsftError
from medsft.data.multiple_choice import LETTERS
from medsft.evaluation.metrics import (
    bootstrap_accuracy_ci,
    centred_scores,
    letter_auc,
    letter_prior_chance,
    paired_accuracy_difference,
)
from medsft.evaluation.schema import EvalReport
from medsft.evaluation.task_multiple_choice import load_benchmark


def above_prior(truth: np.ndarray, predicted: np.ndarray, strata: np.ndarray, samples: int = 1000, seed: int = 0):
    """Accuracy minus ``letter_prior_chance``, and its percentile bootstrap 95% interval (questions resampled)."""
    rng = np.random.default_rng(seed)
    value = float((predicted == truth).mean()) - letter_prior_chance(truth, predicted, strata)
    draws = []
    for _ in range(samples):
        i = rng.integers(0, len(truth), len(truth))
        draws.append(float((predicted[i] == truth[i]).mean()) - letter_prior_chance(truth[i], predicted[i], strata[i]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return value, (float(low), float(high))


def analyse(truth: np.ndarray, scores: np.ndarray, strata: np.ndarray) -> dict:
    """Every number of one (task, model): see the module docstring."""
    predicted = scores.argmax(axis=1)
    centred = centred_scores(scores, strata)
    balanced = centred.argmax(axis=1)
    value, interval = above_prior(truth, predicted, strata)
    return {
        "questions": len(truth),
        "accuracy": float((predicted == truth).mean()),
        "predicted": {LETTERS[k]: int(n) for k, n in sorted(Counter(predicted.tolist()).items())},
        "correct": {LETTERS[k]: int(n) for k, n in sorted(Counter(truth.tolist()).items())},
        "prior_chance": letter_prior_chance(truth, predicted, strata),
        "above_prior": value,
        "above_prior_ci95": list(interval),
        "centred_accuracy": float((balanced == truth).mean()),
        "centred_accuracy_ci95": list(bootstrap_accuracy_ci(balanced == truth)),
        "centred_predicted": {LETTERS[k]: int(n) for k, n in sorted(Counter(balanced.tolist()).items())},
        "letter_auc": letter_auc(truth, centred),
    }


def _read_report(path: str) -> EvalReport:
    if not Path(path).is_file():
        raise MedsftError(f"{path}: no such report; run medsft.evaluate (or the Makefile target) that writes it first")
    try:
        return EvalReport.from_dict(json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise MedsftError(f"{path}: not a medsft.evaluate report ({err})") from None


def report_rows(path: str, sources: dict[str, str]) -> list[dict]:
    """One row per (task, model) of the report at ``path``; ``sources`` overrides a task's recorded dataset."""
    report = _read_report(path)
    if not report.choice_outputs:
        raise MedsftError(f"{path}: no letter-choice scores (choice_outputs): it scored no MedQA/MedMCQA/MMLU")
    rows = []
    for task, by_model in report.choice_outputs.items():
        settings = getattr(report.settings, task, None)
        if settings is None:
            raise MedsftError(f"{path}: scores for {task} but no settings for it: not a report medsft.evaluate wrote")
        # reports record the Hub id, never a local path: a local copy is named with --medqa/--medmcqa/--mmlu
        source = sources.get(task) or settings.hub_id or settings.dataset
        recorded = {"subjects": tuple(settings.subjects)} if settings.subjects else {}  # MMLU: the subjects scored
        try:
            benchmark = load_benchmark(task, source, settings.split, **recorded)
        except MedsftError as err:
            raise MedsftError(f"{path}: {task}: {err} (--{task} PATH names a local copy)") from None
        questions = {str(r["id"]): r for r in benchmark.rows}
        base = None
        for model, outputs in by_model.items():
            missing = [q for q in outputs if q not in questions]
            if missing:
                raise MedsftError(
                    f"{path}: {task}: {len(missing)} question ids (e.g. {missing[0]!r}) are not in {source} "
                    f"({settings.split}); pass the release it scored with --{task}"
                )
            ids = list(outputs)
            truth = np.array([questions[q]["answer"] for q in ids])
            strata = np.array([questions[q].get("subject") or task for q in ids])
            scores = np.asarray([outputs[q] for q in ids], dtype=np.float64)
            row = {"report": path, "task": task, "model": model, **analyse(truth, scores, strata)}
            balanced = centred_scores(scores, strata).argmax(axis=1)
            if base is None:
                base = (ids, truth, balanced)
            elif base[0] == ids:
                letters = [LETTERS[k] for k in truth]
                row["centred_vs_base"] = paired_accuracy_difference(
                    letters, [LETTERS[k] for k in base[2]], [LETTERS[k] for k in balanced]
                )
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="medsft.evaluate report.json files that scored a letter task")
    for task in ("medqa", "medmcqa", "mmlu"):
        parser.add_argument(
            f"--{task}",
            default=None,
            help=f"a local copy of the {task} release the reports scored (default: its Hub id)",
        )
    parser.add_argument("--out", default="bench/results/choice_prior.json")
    args = parser.parse_args(argv)

    sources = {task: getattr(args, task) for task in ("medqa", "medmcqa", "mmlu") if getattr(args, task)}
    try:
        rows = [row for path in args.reports for row in report_rows(path, sources)]
    except MedsftError as err:
        raise SystemExit(f"error: {err}") from None

    table = Table(title="Letter-choice tasks: accuracy as evaluated vs the model's own answer-letter prior")
    for column in ("report", "task", "model", "accuracy", "predicted A/B/C/D", "prior chance",
                   "above prior (95% CI)", "centred acc", "centred − base (paired 95% CI; fixed/broken, p)",
                   "letter AUC"):  # fmt: skip
        left = column in ("report", "task", "model")
        table.add_column(column, justify="left" if left else "right", overflow="fold")
    for r in rows:
        paired = r.get("centred_vs_base")
        table.add_row(
            Path(r["report"]).parent.name,
            r["task"],
            r["model"],
            f"{r['accuracy']:.3f}",
            "/".join(str(r["predicted"].get(letter, 0)) for letter in LETTERS),
            f"{r['prior_chance']:.3f}",
            "{:+.3f} ({:+.3f}…{:+.3f})".format(r["above_prior"], *r["above_prior_ci95"]),
            f"{r['centred_accuracy']:.3f}",
            "{:+.3f} ({:+.3f}…{:+.3f}; {}/{}, p={:.2g})".format(
                paired["accuracy_difference"],
                *paired["difference_ci95"],
                paired["fixed"],
                paired["broken"],
                paired["mcnemar_p"],
            )  # fmt: skip
            if paired
            else "—",
            f"{r['letter_auc']:.3f}" if r["letter_auc"] is not None else "—",
        )
    Console(width=200).print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command_settings": vars(args), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
