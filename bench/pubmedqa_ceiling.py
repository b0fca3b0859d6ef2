"""How far can answer-prior correction take a model's PubMedQA scores? A diagnostic, not a result.

PubMedQA accuracy mixes two things: how well the choice scores *rank* the questions (yes-vs-no AUC, 0.5 = chance)
and where the yes/no/maybe thresholds sit (the answer prior, which fine-tuning on 450 questions moves easily). For
each model in ``medsft.evaluate`` reports, this prints:

- accuracy and macro-F1 as evaluated (highest-scoring choice);
- the yes-vs-no ranking AUC;
- the *ceiling*: the best accuracy (and, separately, macro-F1) that any per-label offsets added to the choice
  log-likelihoods reach on the same questions. The offsets are tuned on the test questions themselves, so the
  ceiling is an upper bound for any calibration (contextual calibration, a threshold tuned on validation) of these
  scores, never a score to report as the model's;
- with ``--validation_reports`` (the same models evaluated with ``--pubmedqa_split validation``): the honest version
  of a calibration — the offsets with the best accuracy on the 50 validation questions, applied to the test.

It reads the per-question choice log-likelihoods that every ``loglikelihood``/``chat`` report keeps
(``pubmedqa_outputs``); nothing is recomputed, so it takes seconds.

```bash
python bench/pubmedqa_ceiling.py --pubmedqa ../shared/data/pubmedqa \\
    runs/pubmedqa_lora_smollm2/eval/report.json runs/pubmedqa_lora_smollm2_instruction/eval/report.json \\
    --validation_reports runs/pubmedqa_validation_chat/report.json
```
Prints a table and writes ``bench/results/pubmedqa_ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from medsft.data.pubmedqa import load_pubmedqa
from medsft.evaluation.metrics import (
    LABELS,
    accuracy,
    bootstrap_accuracy_ci,
    macro_f1,
    paired_accuracy_difference,
    yes_no_auc,
)
from medsft.evaluation.schema import EvalReport

# grid sizes for the offsets added to the "no" and "maybe" log-likelihoods ("yes" stays at 0: only differences
# matter); each grid spans the whole range of the margins it moves across, so no better point lies beyond its ends
NO_POINTS, MAYBE_POINTS = 401, 121


def _scores(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 of each row of ``predicted`` (label indices), as ``medsft.evaluation.metrics`` computes
    them (macro over the labels in the truth or the predictions), vectorised: the grid has ~49,000 rows."""
    f1s, present = [], []
    for k in range(len(LABELS)):
        tp = ((predicted == k) & (truth == k)).sum(axis=1)
        size = (predicted == k).sum(axis=1) + (truth == k).sum()
        f1s.append(np.where(tp > 0, 2 * tp / np.maximum(size, 1), 0.0))
        present.append(size > 0)
    f1s, present = np.stack(f1s, axis=1), np.stack(present, axis=1)
    return (predicted == truth).mean(axis=1), (f1s * present).sum(axis=1) / present.sum(axis=1)


def ceiling(truth: list[str], scores: np.ndarray) -> dict:
    """The best accuracy and the best macro-F1 over the offset grid, with the offsets and the other metric there."""
    no_margin = scores[:, 0] - scores[:, 1]  # "no" wins once its offset exceeds this
    maybe_margin = scores[:, :2].max(axis=1) - scores[:, 2]
    no_grid = np.linspace(no_margin.min() - 0.01, no_margin.max() + 0.01, NO_POINTS)
    # -inf: "maybe" never answered, which is what the best accuracy usually wants
    maybe_grid = np.concatenate(
        [[-np.inf], np.linspace(maybe_margin.min() - 0.01, maybe_margin.max() + 0.01, MAYBE_POINTS)]
    )
    offsets = np.array([[0.0, no, maybe] for maybe in maybe_grid for no in no_grid])
    predicted = np.concatenate(
        [(scores[None, :, :] + chunk[:, None, :]).argmax(axis=2) for chunk in np.split(offsets, len(maybe_grid))]
    )
    acc, f1 = _scores(np.array([LABELS.index(t) for t in truth]), predicted)
    # the vectorised metrics must be medsft's: check them on one grid point
    check = [LABELS[i] for i in predicted[len(offsets) // 2]]
    assert np.isclose(acc[len(offsets) // 2], accuracy(truth, check))
    assert np.isclose(f1[len(offsets) // 2], macro_f1(truth, check))
    out = {}
    for name, values in (("accuracy", acc), ("macro_f1", f1)):
        i = int(values.argmax())
        out[f"best_{name}"] = {
            "accuracy": float(acc[i]),
            "macro_f1": float(f1[i]),
            "offset_no": round(float(offsets[i, 1]), 3),
            "offset_maybe": round(float(offsets[i, 2]), 3) if np.isfinite(offsets[i, 2]) else None,  # None: never
        }
    return out


def _run_name(report: str) -> str:
    """runs/<run>/eval/report.json -> <run>; any other layout -> the report's directory."""
    folder = Path(report).parent
    return folder.parent.name if re.fullmatch(r"eval(-\d+)?", folder.name) else folder.name


def choice_scores(path: str, truth_by_pmid: dict[str, str], source: str):
    """(mode, model, pmids, truth, scores) for each model in a report."""
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such report; run medsft.evaluate (or the Makefile target) that writes it first")
    report = EvalReport.from_dict(json.loads(Path(path).read_text()))
    mode = report.settings.pubmedqa.mode if report.settings.pubmedqa else None
    if mode not in ("loglikelihood", "chat"):
        raise SystemExit(f"{path}: no PubMedQA choice scores (mode {mode}); nothing to analyse")
    for model, outputs in (report.pubmedqa_outputs or {}).items():
        missing = [pmid for pmid in outputs if pmid not in truth_by_pmid]
        if missing:
            raise SystemExit(f"{path}: {len(missing)} PMIDs (e.g. {missing[0]}) are not in {source}")
        truth = [truth_by_pmid[pmid] for pmid in outputs]
        yield mode, model, list(outputs), truth, np.asarray(list(outputs.values()), dtype=np.float64)


def _same_scores(a: np.ndarray, b: np.ndarray) -> bool:
    """The same model's scores, allowing float rounding: a report made on a GPU differs from a CPU one by ~3e-5 nats
    (measured), far below any offset step; a different model differs by whole nats."""
    return a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-3)


def _predict(scores: np.ndarray, offsets: np.ndarray | None = None) -> list[str]:
    return [LABELS[i] for i in (scores if offsets is None else scores + offsets).argmax(axis=1)]


def _scored(truth: list[str], preds: list[str]) -> dict:
    return {"accuracy": accuracy(truth, preds), "macro_f1": macro_f1(truth, preds)}


def tuned_on_test(on_validation: dict, truth: list[str], scores: np.ndarray) -> dict:
    """The test questions answered with the offsets ``ceiling`` found best on validation (its ``best_accuracy``):
    accuracy, macro-F1, a bootstrap interval, and the paired difference from always answering "yes"."""
    maybe = on_validation["offset_maybe"]
    preds = _predict(scores, np.array([0.0, on_validation["offset_no"], -np.inf if maybe is None else maybe]))
    hits = [t == p for t, p in zip(truth, preds)]
    test = {**_scored(truth, preds), "accuracy_ci95": list(bootstrap_accuracy_ci(hits))}
    # is the calibrated model clearly above always answering "yes" (the majority baseline)? paired
    test["vs_always_yes"] = paired_accuracy_difference(truth, ["yes"] * len(truth), preds)
    return test


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="medsft.evaluate report.json files (loglikelihood or chat mode)")
    parser.add_argument("--pubmedqa", default="qiaojin/PubMedQA", help="the PubMedQA release the reports scored")
    parser.add_argument(
        "--validation_reports",
        nargs="*",
        default=[],
        help="the same models on the validation split: offsets tuned there",
    )
    parser.add_argument("--out", default="bench/results/pubmedqa_ceiling.json")
    args = parser.parse_args(argv)

    splits, _ = load_pubmedqa(args.pubmedqa)
    truth_by_pmid = {str(r["pmid"]): r["final_decision"] for split in splits.values() for r in split}
    tuned, tuned_on = {}, {}  # (mode, model) -> offsets with the best validation accuracy, and the scores behind
    for path in args.validation_reports:
        for mode, model, _, truth, scores in choice_scores(path, truth_by_pmid, args.pubmedqa):
            if (mode, model) in tuned_on:
                if _same_scores(scores, tuned_on[mode, model]):
                    continue  # the same model in two validation reports (the base, in each): the first one counts
                raise SystemExit(f"{path}: '{model}' ({mode}) scores differently in {tuned[mode, model]['report']}")
            tuned_on[mode, model] = scores
            best = ceiling(truth, scores)["best_accuracy"]
            tuned[mode, model] = {**best, "questions": len(truth), "report": path}
    rows, bases = [], {}
    for path in args.reports:
        for mode, model, _, truth, scores in choice_scores(path, truth_by_pmid, args.pubmedqa):
            if model == "base" and any(_same_scores(scores, seen) for seen in bases.get(mode, [])):
                continue  # the same base scores in another report: listed once
            if model == "base":
                bases.setdefault(mode, []).append(scores)
            row = {
                "report": path,
                "mode": mode,
                "model": model,
                "questions": len(truth),
                **_scored(truth, _predict(scores)),
            }
            row["yes_no_auc"] = yes_no_auc(truth, scores.tolist())
            row.update(ceiling(truth, scores))
            if (mode, model) in tuned:
                on_validation = tuned[mode, model]
                row["validation_tuned"] = {
                    "on_validation": on_validation,
                    "test": tuned_on_test(on_validation, truth, scores),
                }
            rows.append(row)

    table = Table(title="PubMedQA: as evaluated, calibrated on validation, and the ceiling of any calibration")
    for column in ("report", "model", "mode", "accuracy", "macro-F1", "yes/no AUC", "validation-tuned acc (F1)",
                   "… − always-yes (paired 95% CI)", "ceiling acc (F1)", "ceiling F1 (acc)"):  # fmt: skip
        left = column in ("report", "model", "mode")
        table.add_column(column, justify="left" if left else "right", overflow="fold" if left else "ellipsis")
    for r in rows:
        best_acc, best_f1 = r["best_accuracy"], r["best_macro_f1"]
        calibrated = r.get("validation_tuned", {}).get("test")
        table.add_row(
            _run_name(r["report"]),
            r["model"],
            r["mode"],
            f"{r['accuracy']:.3f}",
            f"{r['macro_f1']:.3f}",
            f"{r['yes_no_auc']:.3f}",
            f"{calibrated['accuracy']:.3f} ({calibrated['macro_f1']:.3f})" if calibrated else "—",
            "{:+.3f} ({:+.3f}…{:+.3f})".format(
                calibrated["vs_always_yes"]["accuracy_difference"], *calibrated["vs_always_yes"]["difference_ci95"]
            )
            if calibrated
            else "—",
            f"{best_acc['accuracy']:.3f} ({best_acc['macro_f1']:.3f})",
            f"{best_f1['macro_f1']:.3f} ({best_f1['accuracy']:.3f})",
        )
    Console(width=210).print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command_settings": vars(args), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
