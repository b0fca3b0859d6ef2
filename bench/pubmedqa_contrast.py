"""Does what the abstract *adds* rank PubMedQA answers better than the answer's score itself? A decision rule picked on
validation, scored on the test once.

A choice's log-likelihood after the abstract, ll(label | abstract, question), mixes what the abstract says with how the
question alone leans (its wording). Subtracting a share lam of the question-only log-likelihood leaves more of the
abstract's effect:

    s(label) = ll(label | abstract, question) - lam * ll(label | question)

(lam = 1: the pointwise mutual information of answer and abstract given the question; lam = 0: the scores as
evaluated). The question-only scores come from the same ``medsft.evaluate`` command on a copy of the release whose
abstracts are emptied (``--write_question_only``: the prompt becomes "Abstract: \\nQuestion: ...\\nAnswer:").

The rule is fixed before the test is read: lam is the grid point with the best yes-vs-no AUC on the validation
questions (ties: the smaller lam), then the per-label offsets with the best validation accuracy
(``pubmedqa_ceiling.py``'s calibration), then the test questions are answered once with both. The test AUC of every
lam is printed too, as a diagnostic of the idea (never a result: picking lam there would be tuning on the test).

```bash
python bench/pubmedqa_contrast.py --write_question_only runs/pubmedqa_question_only --pubmedqa ../shared/data/pubmedqa
# four reports of the same models (base and run): with and without the abstracts, validation and test
python bench/pubmedqa_contrast.py --pubmedqa ../shared/data/pubmedqa \\
    --test RUNS/test/report.json RUNS/test_question_only/report.json \\
    --validation RUNS/validation/report.json RUNS/validation_question_only/report.json
```
(``make pubmedqa-contrast`` runs all of it.) Prints a table and writes ``bench/results/pubmedqa_contrast.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is a package of the repo

from bench.pubmedqa_ceiling import ceiling, choice_scores, tuned_on_test  # noqa: E402
from medsft.data.pubmedqa import DATA_FILE, TEST_FILE, load_pubmedqa, official_test_labels, read_questions  # noqa: E402
from medsft.evaluation.metrics import yes_no_auc  # noqa: E402

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def write_question_only(source: str, out: Path) -> None:
    """A copy of the PQA-L release (official layout) with every abstract emptied; questions, labels, PMIDs (and so
    the train / validation / test split) unchanged."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"{out}: exists and is not an empty folder; name a new folder (nothing was written)")
    rows = read_questions(source)
    test = official_test_labels(source)
    copy = {
        r["pmid"]: {"QUESTION": r["question"], "CONTEXTS": [], "LABELS": [], "final_decision": r["final_decision"]}
        for r in rows
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / DATA_FILE).write_text(json.dumps(copy))
    (out / TEST_FILE).write_text(json.dumps(test))
    print(f"wrote {out}: {len(copy)} questions without their abstracts ({len(test)} official test PMIDs)")


def _loglikelihood_scores(path: str, truth_by_pmid: dict, source: str) -> dict:
    """{model: (pmids, truth, scores)} of a report scored with the harness's prompt, as both of a pair must be."""
    out = {}
    for mode, model, pmids, truth, scores in choice_scores(path, truth_by_pmid, source):
        if mode != "loglikelihood":
            raise SystemExit(f"{path}: mode {mode}; the contrast is defined for the harness's prompt (loglikelihood)")
        out[model] = (pmids, truth, scores)
    return out


def paired_scores(with_abstract: str, question_only: str, truth_by_pmid: dict, source: str) -> dict:
    """{model: (truth, with-abstract scores, question-only scores)}, the two reports' questions matched by PMID."""
    alone = {model: dict(zip(pmids, scores)) for model, (pmids, _, scores) in
             _loglikelihood_scores(question_only, truth_by_pmid, source).items()}  # fmt: skip
    out = {}
    for model, (pmids, truth, scores) in _loglikelihood_scores(with_abstract, truth_by_pmid, source).items():
        if model not in alone or set(alone[model]) != set(pmids):
            raise SystemExit(f"{question_only}: has no question-only scores of '{model}' for the questions of "
                             f"{with_abstract}; score the same models and split without the abstracts")  # fmt: skip
        out[model] = (truth, scores, np.array([alone[model][pmid] for pmid in pmids]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pubmedqa", default="qiaojin/PubMedQA", help="the PubMedQA release the reports scored")
    parser.add_argument("--write_question_only", type=Path, help="write the release without abstracts here, then stop")
    parser.add_argument("--test", nargs=2, metavar=("WITH_ABSTRACT", "QUESTION_ONLY"), help="two test reports")
    parser.add_argument(
        "--validation", nargs=2, metavar=("WITH_ABSTRACT", "QUESTION_ONLY"), help="the same, validation"
    )
    parser.add_argument("--out", default="bench/results/pubmedqa_contrast.json")
    args = parser.parse_args(argv)
    if args.write_question_only:
        write_question_only(args.pubmedqa, args.write_question_only)
        return
    if not (args.test and args.validation):
        parser.error("--test and --validation (two reports each) are needed, or --write_question_only")

    splits, _ = load_pubmedqa(args.pubmedqa)
    truth_by_pmid = {str(r["pmid"]): r["final_decision"] for split in splits.values() for r in split}
    validation = paired_scores(*args.validation, truth_by_pmid, args.pubmedqa)
    test = paired_scores(*args.test, truth_by_pmid, args.pubmedqa)
    rows = []
    for model, (truth_v, with_v, alone_v) in validation.items():
        if model not in test:
            raise SystemExit(f"{args.test[0]}: has no '{model}', which {args.validation[0]} scored")
        truth_t, with_t, alone_t = test[model]
        curve = [{"lambda": lam, "validation_auc": yes_no_auc(truth_v, (with_v - lam * alone_v).tolist()),
                  "test_auc_diagnostic": yes_no_auc(truth_t, (with_t - lam * alone_t).tolist())}
                 for lam in LAMBDAS]  # fmt: skip
        if curve[0]["validation_auc"] is None:
            raise SystemExit(f"{args.validation[0]}: '{model}' was scored on no question answered yes or on none "
                             "answered no; the share cannot be picked (score the whole validation split)")  # fmt: skip
        picked = max(curve, key=lambda c: c["validation_auc"])["lambda"]  # max keeps the first (smaller lam) on ties
        chosen = {}
        for name, lam in (("lambda_0", 0.0), ("picked", picked)):
            on_validation = {**ceiling(truth_v, with_v - lam * alone_v)["best_accuracy"], "lambda": lam}
            chosen[name] = {"on_validation": on_validation,
                            "test": tuned_on_test(on_validation, truth_t, with_t - lam * alone_t)}  # fmt: skip
        # how the question alone ranks: above 0.5, its lean points the way the abstracts do (taking it off costs)
        alone_auc = {
            "validation": yes_no_auc(truth_v, alone_v.tolist()),
            "test": yes_no_auc(truth_t, alone_t.tolist()),
        }
        rows.append({"model": model, "validation_questions": len(truth_v), "test_questions": len(truth_t),
                     "question_only_auc": alone_auc, "curve": curve, "picked_lambda": picked, **chosen})  # fmt: skip

    table = Table(
        title="PubMedQA: the abstract's contribution (s = ll(a|abstract,q) - lam*ll(a|q)); lam picked on validation"
    )
    for column in ("model", "question-only AUC val / test", "validation AUC by lam", "test AUC by lam (diagnostic)",
                   "picked lam", "test: lam=0 + offsets, acc (F1)", "test: picked lam + offsets, acc (F1)",
                   "… − always-yes (paired 95% CI)"):  # fmt: skip
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        base, picked = r["lambda_0"]["test"], r["picked"]["test"]
        table.add_row(
            r["model"],
            "{validation:.3f} / {test:.3f}".format(**r["question_only_auc"]),
            " ".join(f"{c['validation_auc']:.3f}" for c in r["curve"]),
            " ".join(f"{c['test_auc_diagnostic']:.3f}" for c in r["curve"]),
            f"{r['picked_lambda']:g}",
            f"{base['accuracy']:.3f} ({base['macro_f1']:.3f})",
            f"{picked['accuracy']:.3f} ({picked['macro_f1']:.3f})",
            "{:+.3f} ({:+.3f}…{:+.3f})".format(
                picked["vs_always_yes"]["accuracy_difference"], *picked["vs_always_yes"]["difference_ci95"]
            ),
        )
    Console(width=240).print(table)
    print(f"lam grid: {', '.join(f'{lam:g}' for lam in LAMBDAS)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    Path(args.out).write_text(json.dumps({"command_settings": settings, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
