"""Score a ``{PMID: label}`` predictions file the way PubMedQA's official ``evaluation.py`` does.

The official script asserts that the file predicts all and only the test PMIDs, then prints scikit-learn's
accuracy and macro-F1. ``score_predictions`` does the same with a one-line error naming the missing or extra PMIDs
instead of an ``AssertionError``, and without needing scikit-learn (``medsft.evaluation.metrics.macro_f1`` follows
its definition). The command is ``python -m medsft.score_pubmedqa``.
"""

from __future__ import annotations

from medsft.core.errors import MedsftError
from medsft.data.io import read_json
from medsft.data.pubmedqa import official_test_labels
from medsft.evaluation.metrics import LABELS, accuracy, macro_f1


def _read(path: str) -> dict[str, str]:
    data = read_json(path, expect=None, what="predictions file")
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
