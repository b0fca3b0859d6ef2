"""Decontamination: does any training text come from the PubMedQA official test set?

Every training run checks its training rows against the 500 test questions before training:

- **PMID**: a row whose ``pmid`` is a test PMID (PubMedQA, PubMed abstracts).
- **question**: a row with a text equal to a test question (case and spacing ignored).
- **n-gram**: a row sharing a 13-word sequence with a test abstract, question or long answer (the overlap test of
  GPT-3 and lm-evaluation-harness; 13 words is long enough that common medical phrases do not trigger it).

Policies: ``error`` stops the run and names examples, ``drop`` removes the rows (counted in the load report),
``warn`` logs the counts and trains on everything, ``off`` skips the check.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from datasets import Dataset

from medsft.data import pubmedqa
from medsft.errors import MedsftError

logger = logging.getLogger(__name__)

NGRAM = 13
POLICIES = ("error", "drop", "warn", "off")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngram_hashes(text: str, n: int = NGRAM) -> set[int]:
    tokens = words(text)
    return {hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def _normal(text: str) -> str:
    return " ".join(words(text))


def _strings(value) -> list[str]:
    """Every string inside a row value (texts, lists of sections, chat messages)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


@dataclass
class TestSetIndex:
    """What identifies the PubMedQA official test set: PMIDs, normalised questions, 13-gram hashes."""

    pmids: set[str]
    questions: set[str]
    ngrams: set[int]

    @classmethod
    def from_pubmedqa(cls, reference: str, test_file: str | None = None) -> TestSetIndex:
        labels = pubmedqa.official_test_labels(reference, test_file)
        test = [q for q in pubmedqa.read_questions(reference) if q["pmid"] in labels]
        grams: set[int] = set()
        for q in test:
            for text in (q["question"], *q["contexts"], q["long_answer"]):
                grams |= ngram_hashes(text)
        return cls(pmids=set(labels), questions={_normal(q["question"]) for q in test}, ngrams=grams)


@dataclass
class Overlap:
    """Which training rows overlap the test set, and how."""

    rows: list[int] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        how = ", ".join(f"{n} by {reason}" for reason, n in sorted(self.reasons.items()))
        return f"{len(self.rows)} training rows overlap the PubMedQA test set ({how})"


def find_overlap(dataset: Dataset, index: TestSetIndex) -> Overlap:
    """Check every row; a row counts once, under the first test that catches it (PMID, question, n-gram)."""
    overlap = Overlap()
    for i, row in enumerate(dataset):
        texts = _strings({k: v for k, v in row.items() if k != "pmid"})
        reason = None
        if str(row.get("pmid") or "") in index.pmids:
            reason = "PMID"
        elif any(_normal(t) in index.questions for t in texts):
            reason = "question"
        elif any(ngram_hashes(t) & index.ngrams for t in texts):
            reason = f"{NGRAM}-gram"
        if reason:
            overlap.rows.append(i)
            overlap.reasons[reason] += 1
            if len(overlap.examples) < 5:
                overlap.examples.append(str(row.get("pmid") or row.get("note_id") or f"row {i}"))
    return overlap


def decontaminate(dataset: Dataset, policy: str, reference: str, test_file: str | None, what: str) -> tuple:
    """Apply ``policy`` to the training rows of ``what``.

    Returns:
        The dataset (rows removed under ``drop``) and the number of overlapping rows found (``None`` if not checked).
    """
    if policy == "off":
        return dataset, None
    try:
        index = TestSetIndex.from_pubmedqa(reference, test_file)
    except MedsftError as e:
        if policy == "warn":
            logger.warning("decontamination not checked (%s); pass --pubmedqa_reference to check", e)
            return dataset, None
        raise MedsftError(
            f"decontamination ({policy}) needs the PubMedQA test set: {e}. Pass --pubmedqa_reference "
            "(a local PubMedQA directory) or --decontamination warn/off"
        ) from None
    overlap = find_overlap(dataset, index)
    if not overlap.rows:
        logger.info("decontamination: no overlap between %s training rows and the PubMedQA test set", what)
        return dataset, 0
    message = f"{what}: {overlap.summary()}; e.g. {', '.join(overlap.examples)}"
    if policy == "error":
        raise MedsftError(f"{message}. Use --decontamination drop to remove them, or warn to keep them")
    if policy == "drop":
        logger.warning("%s; dropped", message)
        drop = set(overlap.rows)
        return dataset.select([i for i in range(len(dataset)) if i not in drop]), len(overlap.rows)
    logger.warning("%s; kept (decontamination=warn)", message)
    return dataset, len(overlap.rows)
