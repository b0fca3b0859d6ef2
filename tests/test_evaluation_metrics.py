"""medsft.evaluation.metrics against values computed by hand, and the official PubMedQA scorer's behaviour."""

from __future__ import annotations

import json
import math

import evaluate
import numpy as np
import pytest

from medsft.core.errors import MedsftError
from medsft.evaluation.metrics import (
    BitsPerByte,
    Perplexity,
    PubMedQAScores,
    bootstrap_accuracy_ci,
    macro_f1,
    paired_accuracy_difference,
    yes_no_auc,
)
from medsft.evaluation.official import score_predictions


def test_perplexity_is_token_weighted_and_combines_with_bits_per_byte():
    metric = evaluate.combine([Perplexity(), BitsPerByte()])
    # two batches: texts with NLL 12 over 10 tokens (40 bytes), 3 over 2 tokens (10 bytes), 0.5 over 1 (4 bytes)
    metric.add_batch(nll=[12.0, 3.0], tokens=[10, 2], bytes=[40, 10])
    metric.add_batch(nll=[0.5], tokens=[1], bytes=[4])
    result = metric.compute()
    assert result["tokens"] == 13 and result["texts"] == 3 and result["bytes"] == 54
    assert result["mean_nll"] == pytest.approx(15.5 / 13)
    assert result["perplexity"] == pytest.approx(math.exp(15.5 / 13))
    assert result["bits_per_byte"] == pytest.approx(15.5 / math.log(2) / 54)
    # not the mean of per-text perplexities (what evaluate's Hub metric reports)
    per_text = np.mean([math.exp(12 / 10), math.exp(3 / 2), math.exp(0.5)])
    assert abs(result["perplexity"] - per_text) > 0.1


def test_pubmedqa_scores_by_hand():
    truth = ["yes", "yes", "yes", "no", "no", "maybe"]
    preds = ["yes", "no", "yes", "no", "yes", "no"]
    scores = PubMedQAScores().compute(predictions=preds, references=truth, bootstrap_samples=200, seed=1)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    # F1 yes: tp 2, fp 1, fn 1 -> 4/6; no: tp 1, fp 2, fn 1 -> 2/5; maybe: never predicted -> 0
    assert scores["macro_f1"] == pytest.approx((4 / 6 + 2 / 5 + 0) / 3)
    assert scores["prediction_distribution"] == {"yes": 3, "no": 3, "maybe": 0}
    assert scores["confusion_matrix"]["counts"] == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    assert scores["majority_baseline"] == {"label": "yes", "accuracy": 0.5}
    low, high = scores["accuracy_ci95"]
    assert 0 <= low < 0.5 < high <= 1


def test_macro_f1_matches_scikit_learn_like_the_official_script():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = list(rng.choice(["yes", "no", "maybe"], size=40))
        preds = list(rng.choice(["yes", "no", "maybe", "unparsable"], size=40, p=[0.5, 0.3, 0.1, 0.1]))
        assert macro_f1(truth, preds) == pytest.approx(sklearn.f1_score(truth, preds, average="macro"))
    # a label only in the truth (never predicted) and one only in the predictions both count, with F1 0
    assert macro_f1(["yes", "maybe"], ["yes", "no"]) == pytest.approx(
        sklearn.f1_score(["yes", "maybe"], ["yes", "no"], average="macro")
    )


def test_bootstrap_ci_is_seeded_and_close_to_the_normal_interval():
    correct = [True] * 300 + [False] * 200
    low, high = bootstrap_accuracy_ci(correct, samples=2000, seed=3)
    assert (low, high) == bootstrap_accuracy_ci(correct, samples=2000, seed=3)
    half_width = 1.96 * math.sqrt(0.6 * 0.4 / 500)
    assert low == pytest.approx(0.6 - half_width, abs=0.01) and high == pytest.approx(0.6 + half_width, abs=0.01)
    assert bootstrap_accuracy_ci([True] * 50, samples=100) == (1.0, 1.0)


def test_paired_difference_counts_fixed_and_broken_answers():
    truth = ["yes"] * 60 + ["no"] * 40
    base = ["yes"] * 100  # right on the 60 "yes"
    # the adapter breaks 5 "yes" answers and fixes 25 "no" ones: +0.20
    other = ["no"] * 5 + ["yes"] * 55 + ["no"] * 25 + ["yes"] * 15
    paired = paired_accuracy_difference(truth, base, other, samples=2000, seed=0)
    assert paired["accuracy_difference"] == pytest.approx(0.20)
    assert (paired["fixed"], paired["broken"], paired["changed_answers"]) == (25, 5, 30)
    low, high = paired["difference_ci95"]
    assert 0.05 < low < 0.20 < high < 0.35
    # exact two-sided binomial: 2 * P(X <= 5 | n=30, p=1/2)
    assert paired["mcnemar_p"] == pytest.approx(2 * sum(math.comb(30, j) for j in range(6)) / 2**30)
    assert paired["mcnemar_p"] < 0.001
    # narrower than the interval for a difference of two independent accuracies (0.8 and 0.6 on 100 questions):
    # both models answer the same questions, so what they share cancels out
    assert high - low < 2 * 1.96 * math.sqrt((0.8 * 0.2 + 0.6 * 0.4) / 100)
    # the same answers: no change, p = 1, a zero-width interval
    same = paired_accuracy_difference(truth, base, base, samples=200)
    assert same["difference_ci95"] == [0.0, 0.0] and same["mcnemar_p"] == 1.0 and same["changed_answers"] == 0
    # changed answers that are wrong both ways are changes, not fixes
    assert paired_accuracy_difference(["maybe"], ["yes"], ["no"], samples=10)["changed_answers"] == 1
    with pytest.raises(ValueError, match="same, non-empty"):
        paired_accuracy_difference(truth, base, other[:-1])


def test_yes_no_auc_ranks_margins_and_ignores_the_prior():
    truth = ["yes", "yes", "no", "no", "maybe"]
    # margins yes-no: 2, 0, -1, 0 (maybe rows are left out); pairs (yes, no): 2>-1, 2>0, 0>-1, 0=0 -> 3.5 / 4
    scores = [[0.0, -2.0, -9.0], [-1.0, -1.0, -9.0], [-3.0, -2.0, -9.0], [-5.0, -5.0, -1.0], [9.0, 0.0, 0.0]]
    assert yes_no_auc(truth, scores) == pytest.approx(3.5 / 4)
    # a constant added to every "yes" score (a different answer prior) changes accuracy, not the ranking
    shifted = [[s[0] + 4.0, s[1], s[2]] for s in scores]
    assert yes_no_auc(truth, shifted) == yes_no_auc(truth, scores)
    # reversed ranking -> 1 - AUC; one class missing -> None
    flipped = [[s[1], s[0], s[2]] for s in scores]
    assert yes_no_auc(truth, flipped) == pytest.approx(1 - 3.5 / 4)
    assert yes_no_auc(["yes", "maybe"], scores[:2]) is None
    with pytest.raises(ValueError, match="one score triple"):
        yes_no_auc(truth, scores[:-1])
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    truth = list(rng.choice(["yes", "no", "maybe"], size=200))
    scores = np.round(rng.normal(size=(200, 3)), 1).tolist()  # rounded: ties occur
    keep = [i for i, t in enumerate(truth) if t != "maybe"]
    expected = sklearn.roc_auc_score([truth[i] == "yes" for i in keep], [scores[i][0] - scores[i][1] for i in keep])
    assert yes_no_auc(truth, scores) == pytest.approx(expected)


def test_official_scorer_and_its_errors(tmp_path):
    truth = {"1": "yes", "2": "no", "3": "maybe", "4": "yes"}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    (tmp_path / "pred.json").write_text(json.dumps({"1": "yes", "2": "yes", "3": "maybe", "4": "yes"}))
    result = score_predictions(str(tmp_path / "pred.json"), str(tmp_path / "truth.json"))
    assert result["accuracy"] == pytest.approx(0.75)
    # yes: tp 2 fp 1 fn 0 -> 0.8; no: tp 0 -> 0; maybe: 1
    assert result["macro_f1"] == pytest.approx((0.8 + 0 + 1) / 3)
    (tmp_path / "missing.json").write_text(json.dumps({"1": "yes", "2": "no", "9": "no"}))
    with pytest.raises(MedsftError, match=r"2 test PMIDs have no prediction \(e.g. 3, 4\).*1 PMIDs are not in"):
        score_predictions(str(tmp_path / "missing.json"), str(tmp_path / "truth.json"))
    with pytest.raises(MedsftError, match="predictions file not found"):
        score_predictions(str(tmp_path / "none.json"), str(tmp_path / "truth.json"))
    (tmp_path / "broken.json").write_text('{"1": "yes",')
    with pytest.raises(MedsftError, match=r"broken.json, line 1 column \d+: malformed JSON"):
        score_predictions(str(tmp_path / "broken.json"), str(tmp_path / "truth.json"))


def test_letter_prior_measures_tell_a_prior_from_knowledge():
    """letter_prior_chance, centred_scores and letter_auc, through bench/choice_prior.py's analyse (which adds the
    accuracy above the prior with its interval)."""
    from bench.choice_prior import analyse
    from medsft.evaluation.metrics import letter_prior_chance

    # by hand: predicted A once, B three times; A is the answer of half the questions, B of a quarter
    one = np.zeros(4, dtype=int)
    assert letter_prior_chance(np.array([0, 0, 1, 3]), np.array([0, 1, 1, 1]), one) == (1 * 0.5 + 3 * 0.25) / 4
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 800)
    strata = np.array(["a", "b"] * 400)
    noise = rng.normal(size=(800, 4))
    prior = noise.copy()
    prior[:, 3] += 20  # answers "D" to everything, whatever the question
    knows = prior.copy()
    knows[np.arange(800), truth] += 3  # and also scores the right letter higher
    guesser = analyse(truth, prior, strata)
    assert guesser["predicted"] == {"D": 800} and guesser["accuracy"] == (truth == 3).mean()
    assert abs(guesser["above_prior"]) < 1e-12  # its accuracy is exactly its letter prior's chance
    assert guesser["above_prior_ci95"] == [0.0, 0.0]  # in every resample too
    assert abs(guesser["centred_accuracy"] - 0.25) < 0.05 and abs(guesser["letter_auc"] - 0.5) < 0.05
    expert = analyse(truth, knows, strata)
    assert expert["accuracy"] == guesser["accuracy"]  # the same accuracy as evaluated...
    assert expert["centred_accuracy"] > 0.8 and expert["letter_auc"] > 0.9  # ...but it knows the answers
