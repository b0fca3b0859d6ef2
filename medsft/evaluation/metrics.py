"""Evaluation metrics as local ``evaluate`` modules.

``evaluate.load("perplexity")`` downloads a Hub script (impossible offline) and reports the *mean of per-text
perplexities*, which over-weights short texts. These are ``evaluate.Metric`` subclasses that live in medsft, so they
work offline and with ``add_batch`` / ``evaluate.combine``:

```python
import evaluate
from medsft.evaluation.metrics import BitsPerByte, Perplexity, PubMedQAScores

lm = evaluate.combine([Perplexity(), BitsPerByte()])
lm.add_batch(nll=[12.0, 3.5], tokens=[10, 2], bytes=[41, 9])  # per text: summed NLL (nats), scored tokens, bytes
lm.compute()  # {'perplexity': exp(15.5 / 12), 'mean_nll': 15.5 / 12, 'tokens': 12, 'bits_per_byte': ..., ...}

PubMedQAScores().compute(predictions=["yes", "no"], references=["yes", "maybe"], pmids=["1", "2"])
```
"""

from __future__ import annotations

import math
from collections import Counter

import datasets
import evaluate
import numpy as np

from medsft.data.pubmedqa import LABELS  # the answer labels, in the order scores and matrices use


class Perplexity(evaluate.Metric):
    """Token-weighted perplexity: ``exp(sum of NLL / sum of scored tokens)`` over all texts.

    Inputs, one value per text: ``nll`` (summed negative log-likelihood of its scored tokens, in nats) and
    ``tokens`` (how many tokens were scored).
    """

    def __init__(self, **kwargs):
        super().__init__(keep_in_memory=True, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Token-weighted perplexity, exp(total NLL / total scored tokens).",
            citation="",
            inputs_description="nll: summed NLL (nats) per text; tokens: scored tokens per text.",
            features=datasets.Features({"nll": datasets.Value("float64"), "tokens": datasets.Value("int64")}),
        )

    def _compute(self, nll, tokens):
        total_nll, total_tokens = float(np.sum(nll, dtype=np.float64)), int(np.sum(tokens))
        if total_tokens == 0:
            raise ValueError("perplexity: no tokens were scored")
        mean = total_nll / total_tokens
        return {"perplexity": math.exp(mean), "mean_nll": mean, "tokens": total_tokens, "texts": len(tokens)}


class BitsPerByte(evaluate.Metric):
    """Bits per UTF-8 byte of the scored text: ``sum of NLL / (ln 2 * sum of bytes)``; comparable across
    tokenizers, unlike perplexity. Inputs per text: ``nll`` (nats) and ``bytes``."""

    def __init__(self, **kwargs):
        super().__init__(keep_in_memory=True, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Bits per byte, total NLL / (ln 2 * total UTF-8 bytes).",
            citation="",
            inputs_description="nll: summed NLL (nats) per text; bytes: UTF-8 bytes of the scored text.",
            features=datasets.Features({"nll": datasets.Value("float64"), "bytes": datasets.Value("int64")}),
        )

    def _compute(self, nll, bytes):  # noqa: A002 - the feature's name
        total_bytes = int(np.sum(bytes))
        if total_bytes == 0:
            raise ValueError("bits per byte: no bytes were scored")
        return {
            "bits_per_byte": float(np.sum(nll, dtype=np.float64)) / (math.log(2) * total_bytes),
            "bytes": total_bytes,
        }


def accuracy(truth: list[str], preds: list[str]) -> float:
    return sum(t == p for t, p in zip(truth, preds, strict=True)) / len(truth)


def macro_f1(truth: list[str], preds: list[str]) -> float:
    """Macro-F1 as PubMedQA's ``evaluation.py`` computes it (scikit-learn's ``f1_score(average="macro")``): the mean
    F1 over every label that occurs in the truth *or* the predictions, F1 = 0 for a label never predicted correctly.
    """
    labels = sorted(set(truth) | set(preds))
    scores = []
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(truth, preds, strict=True))
        fp = sum(t != label and p == label for t, p in zip(truth, preds, strict=True))
        fn = sum(t == label and p != label for t, p in zip(truth, preds, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def bootstrap_accuracy_ci(
    correct: list[bool] | np.ndarray, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for accuracy: resample the questions with replacement. ``correct``
    holds one score per question: hits (True/False), or two models' differences of hits (-1/0/1) for a paired one."""
    hits = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, len(hits), size=(samples, len(hits)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_accuracy_difference(
    truth: list[str], base: list[str], other: list[str], samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """Accuracy of ``other`` minus ``base`` on the same questions: a paired bootstrap interval (both models scored on
    each resampled question set) and the discordant questions with McNemar's exact test.

    Two models' separate intervals overlap on 500 questions unless they differ by ~0.09; the paired interval is what
    says whether fine-tuning changed the answers beyond chance. Written here because ``evaluate`` has no paired test.
    """
    if not (len(truth) == len(base) == len(other)) or not truth:
        raise ValueError("paired accuracy: base and other must be scored on the same, non-empty question list")
    base_hits = np.asarray([t == p for t, p in zip(truth, base)], dtype=np.float64)
    other_hits = np.asarray([t == p for t, p in zip(truth, other)], dtype=np.float64)
    low, high = bootstrap_accuracy_ci(other_hits - base_hits, samples, confidence, seed)
    fixed = int(((other_hits == 1) & (base_hits == 0)).sum())
    broken = int(((other_hits == 0) & (base_hits == 1)).sum())
    # exact two-sided McNemar: under "no change" each discordant question is a fair coin
    n, k = fixed + broken, min(fixed, broken)
    p_value = min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2**n) if n else 1.0
    return {
        "accuracy_difference": float(other_hits.mean() - base_hits.mean()),
        "difference_ci95": [low, high],
        "fixed": fixed,
        "broken": broken,
        "changed_answers": sum(b != o for b, o in zip(base, other)),
        "mcnemar_p": p_value,
    }


def yes_no_auc(references: list[str], scores: list[list[float]]) -> float | None:
    """How well a model's choice scores *rank* the yes and no questions, whatever answer prior it has: on the
    questions whose truth is yes or no, the probability that a random "yes" question has a larger margin
    ``score(yes) - score(no)`` than a random "no" one (ROC AUC; ties count half). 0.5 is chance.

    Accuracy mixes two things on PubMedQA: this ranking and where the yes/no threshold sits (the prior). Fine-tuning
    on 450 questions can move the threshold a lot while the ranking stays at chance; this separates the two.
    ``scores``: per question, the log-likelihoods of (yes, no, maybe) in ``LABELS`` order. None when the questions
    hold no "yes" or no "no". Written here because ``evaluate``'s roc_auc is a Hub script (offline: unavailable)
    wrapping scikit-learn, which medsft does not depend on.
    """
    if len(references) != len(scores):
        raise ValueError("yes/no AUC: one score triple per reference is needed")
    yes, no = LABELS.index("yes"), LABELS.index("no")
    margins = np.asarray([s[yes] - s[no] for s in scores], dtype=np.float64)
    truth = np.asarray(references)
    positive, negative = margins[truth == "yes"], margins[truth == "no"]
    if not len(positive) or not len(negative):
        return None
    return roc_auc(positive, negative)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a random ``positive`` score exceeds a random ``negative`` one (ties count half): ROC AUC,
    0.5 = chance. Both must be non-empty."""
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + ties / 2)


# ---- letter-choice tasks: the answer-letter prior apart from the questions. A small model may answer one letter to
# nearly every question; its accuracy is then that letter's share of the answers, and a fine-tune that moves its
# favourite letter moves accuracy with no change in what it can tell apart. ``strata`` groups the questions whose
# letter prior is taken together (MMLU: each subject; MedQA: one group).


def letter_prior_chance(truth: np.ndarray, predicted: np.ndarray, strata: np.ndarray) -> float:
    """The expected accuracy of a guesser that picks each letter as often as the model did (within each stratum) but
    blind to the question: per stratum, the sum over letters of (times predicted) x (share of answers)."""
    hits = 0.0
    for stratum in np.unique(strata):
        rows = strata == stratum
        for letter in np.unique(predicted[rows]):
            hits += (predicted[rows] == letter).sum() * (truth[rows] == letter).mean()
    return float(hits / len(truth))


def centred_scores(scores: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """``scores`` (questions x letters) with each letter's mean over its stratum's questions subtracted: the letter
    prior removed without looking at any answer ("batch calibration", Zhou et al. 2024)."""
    out = np.array(scores, dtype=np.float64)
    for stratum in np.unique(strata):
        rows = strata == stratum
        out[rows] -= out[rows].mean(axis=0)
    return out


def letter_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """The mean over letters of the ROC AUC of each letter's margin (its score minus the mean of the others) for
    "this letter is the answer": how well the scores rank the questions, whatever the prior (0.5 = chance). Letters
    that are never (or always) the answer are left out; None when none is left."""
    aucs = []
    for k in range(scores.shape[1]):
        margin = scores[:, k] - np.delete(scores, k, axis=1).mean(axis=1)
        positive, negative = margin[truth == k], margin[truth != k]
        if len(positive) and len(negative):
            aucs.append(roc_auc(positive, negative))
    return float(np.mean(aucs)) if aucs else None


class PubMedQAScores(evaluate.Metric):
    """PubMedQA yes/no/maybe scores: accuracy and macro-F1 (as the official ``evaluation.py``), a bootstrap
    confidence interval for accuracy, the confusion matrix, the predicted-label distribution and the majority
    baseline (the share of the most frequent true label: 55.2% "yes" on the official test set).

    Inputs: ``predictions`` and ``references`` (label strings; a prediction outside yes/no/maybe, such as
    ``"unparsable"`` from generation, counts as wrong, as it does for the official scorer). ``compute`` takes
    ``bootstrap_samples`` (default 1000) and ``seed``.
    """

    def __init__(self, **kwargs):
        super().__init__(keep_in_memory=True, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="PubMedQA accuracy, macro-F1, bootstrap CI, confusion matrix.",
            citation="Jin et al. 2019, PubMedQA: A Dataset for Biomedical Research Question Answering.",
            inputs_description="predictions, references: 'yes' / 'no' / 'maybe'.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, bootstrap_samples: int = 1000, seed: int = 0):
        if not references:
            raise ValueError("PubMedQA scores: no predictions")
        labels = list(LABELS) + sorted(set(predictions) - set(LABELS))  # e.g. "unparsable" from generation
        confusion = [[sum(t == a and p == b for t, p in zip(references, predictions)) for b in labels] for a in LABELS]
        majority_label, majority_count = Counter(references).most_common(1)[0]
        low, high = bootstrap_accuracy_ci(
            [t == p for t, p in zip(references, predictions)], bootstrap_samples, seed=seed
        )
        return {
            "accuracy": accuracy(references, predictions),
            "macro_f1": macro_f1(references, predictions),
            "accuracy_ci95": [low, high],
            "n": len(references),
            "prediction_distribution": {label: predictions.count(label) for label in labels},
            "confusion_matrix": {"rows_true": list(LABELS), "columns_predicted": labels, "counts": confusion},
            "majority_baseline": {"label": majority_label, "accuracy": majority_count / len(references)},
        }
