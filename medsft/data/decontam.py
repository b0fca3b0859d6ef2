"""Decontamination: does any training text come from the PubMedQA official test set, or from the test questions
of the other benchmarks medsft evaluates (MedQA, MedMCQA, MMLU's medical subjects)?

Every training run checks its training rows against PubMedQA's 500 test questions before training:

- **PMID**: a row whose ``pmid`` is a test PMID (PubMedQA, PubMed abstracts).
- **question**: a row with a text equal to a test question (case and spacing ignored).
- **n-gram**: a row sharing a 13-word sequence with a test abstract, question or long answer (the overlap test of
  GPT-3 and lm-evaluation-harness; 13 words is long enough that common medical phrases do not trigger it).

With ``benchmark_references`` (``medqa=PATH,mmlu=PATH,medmcqa=PATH``, local releases or Hub ids) the rows are also
checked against those benchmarks' scored questions (MedQA test, MMLU's six medical test splits, MedMCQA validation):
a row holding a benchmark question (case and spacing ignored) or sharing a 13-word sequence with one. Counts are
kept per benchmark (run log, manifest, model card).

Policies: ``error`` stops the run and names examples, ``drop`` removes the rows (counted in the load report),
``warn`` logs the counts and trains on everything, ``off`` skips the check.

The check needs no network: unless a local PubMedQA release is given (``--pubmedqa_reference``), it uses the index
shipped in ``medsft/data/pubmedqa_test/`` (the 500 test PMIDs and labels, normalised questions, and 8-byte hashes of
every 13-gram of the test abstracts, questions and long answers; PubMedQA is MIT-licensed, see the LICENSE there).
``medsft-data pubmedqa-index PUBMEDQA_DIR`` rebuilds it from the official release; a test checks that it
matches the release in ``../shared``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from medsft.core.errors import MedsftError
from medsft.data import pubmedqa
from medsft.data.io import read_json, write_atomic

logger = logging.getLogger(__name__)

NGRAM = 13
POLICIES = ("error", "drop", "warn", "off")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


SHIPPED = Path(__file__).with_name("pubmedqa_test")
_LABELS_FILE, _QUESTIONS_FILE, _NGRAMS_FILE = "test_ground_truth.json", "questions.json", "ngrams_13.u64"
INDEX_FILES = (_LABELS_FILE, _QUESTIONS_FILE, _NGRAMS_FILE)  # what ``TestSetIndex.save`` writes


def ngram_hashes(text: str, n: int = NGRAM) -> set[int]:
    """Stable 8-byte hashes of the text's word n-grams (the same in every process, so an index can be shipped)."""
    tokens = words(text)
    return {
        int.from_bytes(hashlib.blake2b(" ".join(tokens[i : i + n]).encode(), digest_size=8).digest(), "little")
        for i in range(len(tokens) - n + 1)
    }


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
        """From a local PubMedQA release; for the Hub id (or no local copy), the index shipped with medsft."""
        if reference == pubmedqa.HUB_ID and test_file is None:
            return cls.shipped()
        labels = pubmedqa.official_test_labels(reference, test_file)
        test = [q for q in pubmedqa.read_questions(reference) if q["pmid"] in labels]
        grams: set[int] = set()
        for q in test:
            for text in (q["question"], *q["contexts"], q["long_answer"]):
                grams |= ngram_hashes(text)
        return cls(pmids=set(labels), questions={_normal(q["question"]) for q in test}, ngrams=grams)

    @classmethod
    def shipped(cls) -> TestSetIndex:
        grams = array("Q")
        grams.frombytes((SHIPPED / _NGRAMS_FILE).read_bytes())
        if sys.byteorder != "little":
            grams.byteswap()
        return cls(
            pmids=set(read_json(SHIPPED / _LABELS_FILE)),
            questions=set(read_json(SHIPPED / _QUESTIONS_FILE, expect=list)),
            ngrams=set(grams),
        )

    def save(self, folder: Path, labels: dict[str, str]) -> None:
        """Write the index in the shipped layout (``labels``: the official ``{PMID: label}``)."""
        grams = array("Q", sorted(self.ngrams))
        if sys.byteorder != "little":
            grams.byteswap()
        # each file whole or not at all: the shipped index is rebuilt in place
        write_atomic(folder / _LABELS_FILE, json.dumps(dict(sorted(labels.items())), indent=0) + "\n")
        write_atomic(folder / _QUESTIONS_FILE, json.dumps(sorted(self.questions), indent=0) + "\n")
        write_atomic(folder / _NGRAMS_FILE, grams.tobytes())


@dataclass
class Overlap:
    """Which training rows overlap the test set, and how."""

    rows: list[int] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def summary(self, against: str = "the PubMedQA test set", rows: str = "training rows") -> str:
        how = ", ".join(f"{n} by {reason}" for reason, n in sorted(self.reasons.items()))
        return f"{len(self.rows)} {rows} overlap {against} ({how})"


def find_overlaps(dataset: Dataset, indexes: dict[str, TestSetIndex]) -> dict[str, Overlap]:
    """Check every row against each index (each row's texts normalised and hashed once); a row counts once per
    index, under the first test that catches it (PMID, question, n-gram)."""
    overlaps = {name: Overlap() for name in indexes}
    for i, row in enumerate(dataset):
        texts = _strings({k: v for k, v in row.items() if k != "pmid"})
        pmid = str(row.get("pmid") or "")
        normal, grams = None, None
        for name, index in indexes.items():
            reason = None
            if pmid and pmid in index.pmids:
                reason = "PMID"
            else:
                normal = normal if normal is not None else [_normal(t) for t in texts]
                if any(t in index.questions for t in normal):
                    reason = "question"
                else:
                    grams = grams if grams is not None else set().union(*(ngram_hashes(t) for t in texts))
                    if grams & index.ngrams:
                        reason = f"{NGRAM}-gram"
            if reason:
                overlap = overlaps[name]
                overlap.rows.append(i)
                overlap.reasons[reason] += 1
                if len(overlap.examples) < 5:
                    overlap.examples.append(str(row.get("pmid") or row.get("note_id") or f"row {i}"))
    return overlaps


def find_overlap(dataset: Dataset, index: TestSetIndex) -> Overlap:
    """``find_overlaps`` for one index."""
    return find_overlaps(dataset, {"test set": index})["test set"]


BENCHMARKS = ("medqa", "medmcqa", "mmlu")


def parse_benchmark_references(value: str | None) -> dict[str, str]:
    """``"medqa=PATH,mmlu=PATH"`` → ``{"medqa": "PATH", "mmlu": "PATH"}`` (each a local release or a Hub id)."""
    out = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        name, sep, source = item.partition("=")
        name, source = name.strip(), source.strip()
        if not sep or name not in BENCHMARKS or not source:
            raise MedsftError(
                f"benchmark_references: '{item.strip()}' is not NAME=PATH with NAME one of {', '.join(BENCHMARKS)}"
            )
        out[name] = source
    return out


def benchmark_index(name: str, source: str) -> TestSetIndex:
    """The scored questions of a letter-choice benchmark (the split ``medsft.evaluate`` scores): normalised question
    texts and their 13-gram hashes (the harness's ``doc_to_decontamination_query`` is the question)."""
    from medsft.data import medmcqa, medqa, mmlu

    if name == "medqa":
        rows, _ = medqa.load_medqa(source, "test")
    elif name == "medmcqa":
        rows, _ = medmcqa.load_medmcqa(source, "validation")
    else:
        rows, _ = mmlu.load_mmlu(source)
    grams: set[int] = set()
    for row in rows:
        grams |= ngram_hashes(row["question"])
    return TestSetIndex(pmids=set(), questions={_normal(r["question"]) for r in rows}, ngrams=grams)


def _pubmedqa_index(policy: str, reference: str, test_file: str | None) -> tuple[str, TestSetIndex | dict]:
    shipped = reference == pubmedqa.HUB_ID and test_file is None
    against = (
        "PubMedQA official test set (index shipped with medsft)" if shipped else f"{Path(reference).name} test set"
    )
    try:
        return against, TestSetIndex.from_pubmedqa(reference, test_file)
    except MedsftError as e:
        if policy == "warn":
            logger.warning("decontamination NOT checked (%s); pass --pubmedqa_reference to check", e)
            return against, {"overlapping_rows": None, "not_checked": str(e)}
        raise MedsftError(
            f"decontamination ({policy}) needs the PubMedQA test set: {e}. Pass --pubmedqa_reference "
            "(a local PubMedQA directory) or --decontamination warn/off"
        ) from None


def _benchmark_index(policy: str, name: str, source: str) -> tuple[str, TestSetIndex | dict]:
    against = f"{name} test questions ({Path(source).name})"
    try:
        return against, benchmark_index(name, source)
    except MedsftError as e:
        if policy == "warn":
            logger.warning("decontamination against %s NOT checked (%s)", name, e)
            return against, {"overlapping_rows": None, "not_checked": str(e)}
        raise MedsftError(
            f"decontamination ({policy}) against {name} needs its questions: {e}. Fix benchmark_references or use "
            "--decontamination warn/off"
        ) from None


def test_set_indexes(policy: str, reference: str, test_file: str | None, benchmarks: dict | None = None) -> dict:
    """Every test set a dataset is checked against, built once for all its splits (and every failure to build one
    raised, or under ``warn`` said once, before any row is checked): PubMedQA's and each of ``benchmarks``
    (``{name: source}``, see ``parse_benchmark_references``). Nothing is built under ``off``.

    Returns:
        ``{name: (what it is checked against, TestSetIndex or the not-checked record)}``.
    """
    if policy == "off":
        return {}
    indexes = {"PubMedQA": _pubmedqa_index(policy, reference, test_file)}
    return indexes | {name: _benchmark_index(policy, name, source) for name, source in (benchmarks or {}).items()}


def decontaminate(dataset: Dataset, policy: str, indexes: dict, what: str, split: str = "train") -> tuple:
    """Apply ``policy`` to the rows of ``what``'s ``split``, checked against ``indexes`` (``test_set_indexes``). The
    training split is what is trained on; a validation split is checked too, since model selection reads it.

    Returns:
        The dataset (rows removed under ``drop``) and what the load report records: for PubMedQA
        ``overlapping_rows`` and the ``test_set`` checked against (or ``overlapping_rows: None`` with the reason it
        was ``not_checked``); per benchmark the same under ``benchmarks``; under ``drop``, ``dropped_rows``.
    """
    if policy == "off":
        return dataset, {"overlapping_rows": None, "not_checked": "--decontamination off"}
    found = find_overlaps(dataset, {n: index for n, (_, index) in indexes.items() if isinstance(index, TestSetIndex)})
    rows = "training rows" if split == "train" else f"{split} rows"
    info: dict = {}
    overlapping: set[int] = set()
    messages = []
    for name, (against, index) in indexes.items():
        result = found.get(name, index)
        if isinstance(result, dict):  # not checked
            entry = result
        else:
            entry = {"overlapping_rows": len(result.rows), "test_set": against}
            overlapping |= set(result.rows)
            if result.rows:
                summary = result.summary(*(() if name == "PubMedQA" else (f"the {against}",)), rows=rows)
                messages.append(f"{summary}; e.g. {', '.join(result.examples)}")
            else:
                logger.info("decontamination: no overlap between %s %s and the %s", what, rows, against)
        if name == "PubMedQA":
            info.update(entry)
        else:
            info.setdefault("benchmarks", {})[name] = entry
    if not overlapping:
        return dataset, info
    message = f"{what}: " + "; ".join(messages)
    if policy == "error":
        raise MedsftError(f"{message}. Use --decontamination drop to remove them, or warn to keep them")
    if policy == "drop":
        logger.warning("%s; dropped", message)
        kept = dataset.select([i for i in range(len(dataset)) if i not in overlapping])
        return kept, {**info, "dropped_rows": len(overlapping)}
    logger.warning("%s; kept (decontamination=warn)", message)
    return dataset, info
