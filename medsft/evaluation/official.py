"""Score a ``{PMID: label}`` predictions file the way PubMedQA's official ``evaluation.py`` does.

```bash
python -m medsft.evaluation.official runs/x/eval/pubmedqa_predictions_x.json \\
    --ground_truth ../shared/data/pubmedqa/test_ground_truth.json
```

The official script asserts that the file predicts all and only the test PMIDs, then prints scikit-learn's
accuracy and macro-F1. This does the same with a one-line error naming the missing or extra PMIDs instead of an
``AssertionError``, and without needing scikit-learn (``medsft.metrics.macro_f1`` follows its definition).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medsft.core.errors import MedsftError, run_cli
from medsft.data.pubmedqa import official_test_labels
from medsft.evaluation.metrics import LABELS, accuracy, macro_f1


def _read(path: str) -> dict[str, str]:
    file = Path(path)
    if not file.is_file():
        raise MedsftError(f"predictions file not found: {path}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MedsftError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise MedsftError(f"{path}: expected a JSON object mapping PMID to label")
    return {str(k): v for k, v in data.items()}


def score_predictions(predictions_path: str, ground_truth_path: str) -> dict[str, float]:
    """Accuracy and macro-F1 of a predictions file against ``test_ground_truth.json``."""
    predictions = _read(predictions_path)
    truth = official_test_labels("", ground_truth_path)  # the loader's own reading and checks of the official file
    missing = sorted(set(truth) - set(predictions))
    extra = sorted(set(predictions) - set(truth))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} test PMIDs have no prediction (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} PMIDs are not in the test set (e.g. {', '.join(extra[:3])})")
        raise MedsftError(f"{predictions_path}: {'; '.join(parts)}; predict all and only the test PMIDs")
    bad = {pmid: label for pmid, label in predictions.items() if not isinstance(label, str)}
    if bad:
        pmid = next(iter(bad))
        raise MedsftError(f"{predictions_path}: PMID {pmid} has a non-string label {bad[pmid]!r}")
    pmids = list(truth)
    gold = [truth[p] for p in pmids]
    preds = [predictions[p] for p in pmids]
    other = sorted(set(preds) - set(LABELS))
    result = {"accuracy": accuracy(gold, preds), "macro_f1": macro_f1(gold, preds), "n": len(pmids)}
    if other:
        result["labels_outside_yes_no_maybe"] = other
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m medsft.evaluation.official", description=__doc__.split("\n")[0])
    parser.add_argument("predictions", help="JSON file {PMID: 'yes'|'no'|'maybe'}")
    parser.add_argument("--ground_truth", required=True, help="PubMedQA's test_ground_truth.json")
    args = parser.parse_args(argv)
    result = score_predictions(args.predictions, args.ground_truth)
    print(f"Accuracy {result['accuracy']:f}")
    print(f"Macro-F1 {result['macro_f1']:f}")
    return result


if __name__ == "__main__":
    run_cli(main, "medsft.evaluation.official")
