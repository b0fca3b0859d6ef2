"""The letter-choice benchmarks of the Open Medical-LLM Leaderboard, scored as lm-evaluation-harness scores them:
MedQA (``medqa_4options``), MedMCQA (``medmcqa``) and MMLU's six medical subjects (``mmlu_SUBJECT``).

- ``loglikelihood``: the harness's prompt (``data.medqa`` / ``data.medmcqa`` / ``data.mmlu``: same text, description
  line and few-shot exemplars), choices ``" A"`` … ``" D"`` (target delimiter ``" "``), tokenized and truncated as
  the harness does (``evaluation.loglikelihood``); one forward per question scores all four letters. ``acc`` is the
  argmax of the log-likelihoods; ``acc_norm`` divides each by its choice's length in characters, as the harness
  does (every choice is one letter, so the two agree).
- ``chat``: for chat-trained adapters, the same question as the user turn of the model's chat template (with an
  instruction to answer with a letter), the letters scored as the start of the assistant's answer.

``--num_fewshot K`` follows the harness: MMLU's first K dev rows (its ``first_n`` sampler). MedQA's and MedMCQA's
harness tasks draw exemplars at random from their train splits, which medsft does not reproduce: a clear error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from medsft.core.errors import MedsftError
from medsft.data import medmcqa, medqa, mmlu
from medsft.data.load_report import LoadReport
from medsft.data.multiple_choice import LETTERS, chat_prompt
from medsft.evaluation.loglikelihood import Request, encode_pair, score_choices

MODES = ("loglikelihood", "chat")
BENCHMARKS = ("medqa", "medmcqa", "mmlu")
HARNESS_TASKS = {"medqa": "medqa_4options", "medmcqa": "medmcqa", "mmlu": "mmlu_SUBJECT"}
HUB_IDS = {"medqa": medqa.HUB_ID, "medmcqa": medmcqa.HUB_ID, "mmlu": mmlu.HUB_ID}
DEFAULT_SPLITS = {"medqa": "test", "medmcqa": "validation", "mmlu": "test"}
TITLES = {"medqa": "MedQA (USMLE, 4 options)", "medmcqa": "MedMCQA", "mmlu": "MMLU medical"}


@dataclass
class Benchmark:
    """One benchmark's questions (after ``--limit``), each question's full prompt text, and what the loader read."""

    name: str
    source: str
    split: str
    rows: list[dict]
    contexts: list[str]
    reports: list[LoadReport]
    available: int
    num_fewshot: int = 0
    subjects: list[str] = field(default_factory=list)


def load_benchmark(
    name: str, source: str, split: str | None = None, num_fewshot: int = 0, limit: int | None = None,
    subjects: tuple[str, ...] = mmlu.SUBJECTS,
) -> Benchmark:  # fmt: skip
    """Load ``name``'s questions from ``source`` (Hub id or the official release's local layout) with their prompts.

    ``limit`` keeps the first N questions (of each subject, for MMLU, as the harness's ``--limit`` does).
    """
    split = split or DEFAULT_SPLITS[name]
    if num_fewshot < 0:
        raise MedsftError("--num_fewshot must be 0 or more")
    if num_fewshot and name != "mmlu":
        raise MedsftError(
            f"--num_fewshot {num_fewshot}: the harness's {HARNESS_TASKS[name]} draws its exemplars at random from the "
            "train split, which medsft does not reproduce; use 0 (the leaderboard's zero-shot) or only mmlu"
        )
    if name == "mmlu":
        rows, reports = mmlu.load_mmlu(source, subjects, split)
        available = len(rows)
        exemplars = {}
        if num_fewshot:
            dev, _ = mmlu.load_mmlu(source, subjects, "dev")
            for subject in subjects:
                exemplars[subject] = [r for r in dev if r["subject"] == subject][:num_fewshot]
                if len(exemplars[subject]) < num_fewshot:
                    raise MedsftError(
                        f"--num_fewshot {num_fewshot}: MMLU {subject} has only {len(exemplars[subject])} dev rows"
                    )
        if limit:
            rows = [r for s in subjects for r in [r for r in rows if r["subject"] == s][:limit]]
        contexts = [mmlu.harness_prompt(r, exemplars.get(r["subject"], [])) for r in rows]
        return Benchmark(name, source, split, rows, contexts, reports, available, num_fewshot, list(subjects))
    loader, prompt = {"medqa": (medqa.load_medqa, medqa.harness_prompt),
                      "medmcqa": (medmcqa.load_medmcqa, medmcqa.harness_prompt)}[name]  # fmt: skip
    rows, report = loader(source, split)
    available = len(rows)
    rows = rows[:limit]
    return Benchmark(name, source, split, rows, [prompt(r) for r in rows], [report], available)


def build_requests(contexts: list[str], tokenizer, mode: str) -> list[Request]:
    """One request per question: its context and the four letters' tokens."""
    if mode not in MODES:
        raise MedsftError(f"unknown multiple-choice mode '{mode}'; choose one of {', '.join(MODES)}")
    delimiter = " " if mode == "loglikelihood" else ""  # the harness's target delimiter; none after a chat turn
    requests = []
    for context in contexts:
        if mode == "chat":
            context = tokenizer.apply_chat_template(chat_prompt(context), tokenize=False, add_generation_prompt=True)
        pairs = [encode_pair(tokenizer, context, delimiter + letter) for letter in LETTERS]
        requests.append(Request(pairs[0][0], [continuation for _, continuation in pairs]))
    return requests


def predict(model, tokenizer, benchmark: Benchmark, mode: str, max_length: int, batch_size: int):
    """Predicted letters and each question's four letter log-likelihoods."""
    requests = build_requests(benchmark.contexts, tokenizer, mode)
    scores = score_choices(model, tokenizer, requests, max_length, batch_size, what=benchmark.name)
    return letters(scores), scores


def letters(scores: list[list[float]]) -> list[str]:
    """The predicted letter of each question: the highest of its four log-likelihoods (the first on a tie)."""
    return [LETTERS[max(range(len(LETTERS)), key=s.__getitem__)] for s in scores]


def _strata(rows: list[dict]) -> np.ndarray:
    """The groups whose letter prior is taken together: each MMLU subject; the whole task elsewhere."""
    return np.array([r.get("subject") or "" for r in rows])


def _centred(choice_scores: list[list[float]], strata: np.ndarray) -> np.ndarray:
    """The letter scores with each letter's mean over its stratum's questions subtracted."""
    from medsft.evaluation.metrics import centred_scores  # lazily: see scores()

    return centred_scores(np.asarray(choice_scores, dtype=np.float64), strata)


def centred_letters(rows: list[dict], choice_scores: list[list[float]]) -> list[str]:
    """The letter each question gets once each letter's mean score over the questions (of its MMLU subject) is
    subtracted: the choice with the answer-letter prior removed, no answer used."""
    return [LETTERS[i] for i in _centred(choice_scores, _strata(rows)).argmax(axis=1)]


def scores(
    rows: list[dict],
    predicted: list[str],
    choice_scores: list[list[float]],
    samples: int,
    seed: int,
    per_subject: bool = False,
) -> dict:
    """Accuracy (with its bootstrap 95% interval), acc_norm, the predicted-letter distribution and, with
    ``per_subject`` (MMLU), each subject's accuracy with their micro (all questions) and macro (mean of subjects)
    averages; and the answer-letter prior apart from the questions (``metrics.letter_prior_chance``, the accuracy
    with each letter's mean score removed per subject, ``metrics.letter_auc``)."""
    # imported here: the evaluate library behind medsft's metrics costs ~1 s at import, and medsft.train imports this
    # module (for the evaluation's modes) through medsft.configs
    from medsft.evaluation.metrics import bootstrap_accuracy_ci, letter_auc, letter_prior_chance

    truth = [LETTERS[r["answer"]] for r in rows]
    hits = [t == p for t, p in zip(truth, predicted)]
    # acc_norm: log-likelihood per character of the choice text, as the harness computes it
    normed = [LETTERS[max(range(len(LETTERS)), key=lambda i: s[i] / len(LETTERS[i]))] for s in choice_scores]
    result = {
        "accuracy": sum(hits) / len(hits),
        "acc_norm": sum(t == p for t, p in zip(truth, normed)) / len(hits),
        "accuracy_ci95": list(bootstrap_accuracy_ci(hits, samples, seed=seed)),
        "n": len(hits),
        "prediction_distribution": {letter: predicted.count(letter) for letter in LETTERS},
        "answer_distribution": {letter: truth.count(letter) for letter in LETTERS},
    }
    strata = _strata(rows)
    centred = _centred(choice_scores, strata)
    centred_hits = [t == LETTERS[i] for t, i in zip(truth, centred.argmax(axis=1))]
    result["prior_chance"] = letter_prior_chance(np.array(truth), np.array(predicted), strata)
    result["centred_accuracy"] = sum(centred_hits) / len(hits)
    result["centred_accuracy_ci95"] = list(bootstrap_accuracy_ci(centred_hits, samples, seed=seed))
    result["letter_auc"] = letter_auc(np.array([r["answer"] for r in rows]), centred)
    subjects = [r.get("subject") for r in rows]
    if per_subject:
        per = Counter(subjects)
        correct = Counter(s for s, hit in zip(subjects, hits) if hit)
        result["subjects"] = {s: {"accuracy": correct[s] / n, "n": n} for s, n in per.items()}
        result["macro_accuracy"] = sum(v["accuracy"] for v in result["subjects"].values()) / len(per)
    return result
