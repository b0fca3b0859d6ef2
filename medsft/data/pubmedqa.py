"""PubMedQA PQA-L (the 1,000 expert-labelled questions): loader, official test split, formatting.

Each question comes with the abstract it was written from (minus its conclusion) and a yes/no/maybe label; the
conclusion is the "long answer".

Splits: the **official 500-question test set** is the PMIDs listed in the official ``test_ground_truth.json``. Those
questions are never trained on. The other 500 give train/validation, stratified by label and seeded (450/50).

Sources:
    Hub: ``qiaojin/PubMedQA`` config ``pqa_labeled`` (one 1,000-row split; its row order says nothing about the test
    set, so the test PMIDs are read from the official list: shipped with medsft, or ``pubmedqa_test_file``).
    Offline: the official release directory holding ``ori_pqal.json`` and ``test_ground_truth.json`` (or the
    ``ori_pqal.json`` file itself, with the list beside it). Licence: MIT.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets

from medsft.core.errors import MedsftError, hub_errors
from medsft.core.paths import looks_local
from medsft.data.io import read_json
from medsft.data.load_report import LoadReport

logger = logging.getLogger(__name__)

HUB_ID = "qiaojin/PubMedQA"
HUB_CONFIG = "pqa_labeled"
LICENSE = "mit"
DATA_FILE = "ori_pqal.json"
TEST_FILE = "test_ground_truth.json"
# The official list (the Hub copy does not mark the test set), shipped with medsft from its source:
TEST_FILE_URL = "https://raw.githubusercontent.com/pubmedqa/pubmedqa/master/data/test_ground_truth.json"
SHIPPED_TEST_FILE = Path(__file__).with_name("pubmedqa_test") / TEST_FILE
# The 50 PMIDs of the default train/validation split below (the same for the Hub copy and the official JSON), shipped
# so that other data (PubMed abstracts) can hold them out offline; tests check it equals the split.
SHIPPED_VALIDATION_FILE = SHIPPED_TEST_FILE.with_name("validation_pmids.json")
LABELS = ("yes", "no", "maybe")
SPLIT_SEED = 42
VALIDATION_SIZE = 0.1  # of the 500 non-test questions: 450 train / 50 validation, as in the PubMedQA paper

SYSTEM_PROMPT = (
    "You are a biomedical research assistant. Read the abstract and answer the research question with yes, no or "
    "maybe."
)


def _local_data_file(source: str, data_file: str = DATA_FILE) -> Path | None:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / data_file).is_file():
            raise MedsftError(f"PubMedQA directory {source} has no {data_file}")
        return path / data_file
    if path.suffix == ".json" or looks_local(source):
        if not path.is_file():
            raise MedsftError(f"PubMedQA data not found: {source} does not exist")
        return path
    return None


def _row(pmid: str, record: dict, where: str) -> dict:
    """One normalised question; missing fields and unknown labels are errors naming the PMID."""
    required = ("QUESTION", "CONTEXTS", "final_decision")
    missing = [k for k in required if k not in record]
    if missing:
        raise MedsftError(f"{where}: PMID {pmid} has no {', '.join(missing)}")
    label = record["final_decision"]
    if label not in LABELS:
        raise MedsftError(f"{where}: PMID {pmid} has final_decision {label!r}; expected one of yes, no, maybe")
    contexts = record["CONTEXTS"]
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise MedsftError(f"{where}: PMID {pmid}: CONTEXTS must be a list of strings")
    for key in ("QUESTION", "LONG_ANSWER"):
        if key in record and not isinstance(record[key], str) and not (key == "LONG_ANSWER" and record[key] is None):
            raise MedsftError(f"{where}: PMID {pmid}: {key} must be text, got {type(record[key]).__name__}")
    if not record["QUESTION"].strip():
        raise MedsftError(f"{where}: PMID {pmid}: QUESTION is empty")
    sections = record.get("LABELS") or []
    if not isinstance(sections, list) or not all(isinstance(x, str) for x in sections):
        raise MedsftError(f"{where}: PMID {pmid}: LABELS must be a list of strings")
    # LABELS names each context's section; when it is shorter, the contexts without a name are kept, unnamed
    sections = list(sections[: len(contexts)]) + [""] * (len(contexts) - len(sections))
    return {
        "pmid": str(pmid),
        "question": record["QUESTION"],
        "contexts": contexts,
        "sections": sections,
        "long_answer": record.get("LONG_ANSWER") or "",
        "final_decision": label,
    }


def read_questions(source: str = HUB_ID, data_file: str = DATA_FILE, hub_config: str = HUB_CONFIG) -> list[dict]:
    """All questions of one PubMedQA subset from its official JSON (``{PMID: {...}}``; PQA-L's ``ori_pqal.json`` by
    default) or the Hub (config ``pqa_labeled`` by default), as normalised rows."""
    local = _local_data_file(source, data_file)
    if local is not None:
        data = read_json(local, expect=None, what="PubMedQA data")
        if not isinstance(data, dict):
            raise MedsftError(f"{local}: expected the official PubMedQA format, a JSON object keyed by PMID")
        return [_row(pmid, record, str(local)) for pmid, record in data.items()]
    from datasets import load_dataset

    with hub_errors("dataset", source):
        hub = load_dataset(source, hub_config, split="train")
    return [
        _row(
            str(r["pubid"]),
            {
                "QUESTION": r["question"],
                "CONTEXTS": r["context"]["contexts"],
                "LABELS": r["context"]["labels"],
                "LONG_ANSWER": r["long_answer"],
                "final_decision": r["final_decision"],
            },
            source,
        )
        for r in hub
    ]


def official_test_labels(source: str = HUB_ID, test_file: str | None = None) -> dict[str, str]:
    """``{PMID: label}`` of the official 500-question test set.

    Read from ``test_file`` when given, else from ``test_ground_truth.json`` beside a local ``source``, else from the
    copy of the official list shipped with medsft (``medsft/data/pubmedqa_test``).
    """
    if test_file is None:
        local = _local_data_file(source)
        if local is not None:
            test_file = str(local.parent / TEST_FILE)
            if not Path(test_file).is_file():
                raise MedsftError(
                    f"{test_file} not found: the official test list must sit beside {local.name} "
                    "(or pass --pubmedqa_test_file)"
                )
    if test_file is None:
        # The Hub copy does not mark the test set: the official list shipped with medsft (no network needed)
        test_file = str(SHIPPED_TEST_FILE)
    data = read_json(test_file, expect=None, what="PubMedQA test list")
    if not isinstance(data, dict) or not all(v in LABELS for v in data.values()):
        raise MedsftError(f"{test_file or TEST_FILE_URL}: expected {{PMID: yes|no|maybe}}")
    return {str(k): v for k, v in data.items()}


def load_pubmedqa(
    source: str = HUB_ID, validation_size: float = VALIDATION_SIZE, test_file: str | None = None
) -> tuple[DatasetDict, LoadReport]:
    """Load PQA-L and split it: ``test`` = the official 500; the rest stratified into ``train``/``validation``.

    Returns:
        ``DatasetDict`` with ``train``, ``validation`` (when ``validation_size > 0``) and ``test``, and the report.
    """
    rows = read_questions(source)
    test_labels = official_test_labels(source, test_file)
    report = LoadReport(source=Path(source).name if Path(source).exists() else source, read=len(rows))
    missing = set(test_labels) - {r["pmid"] for r in rows}
    if missing:
        raise MedsftError(f"{source}: {len(missing)} official test PMIDs are not in the data (e.g. {min(missing)})")
    # Sorted by PMID so that the split is the same whatever order the source lists the questions in (the Hub copy
    # and the official JSON differ).
    rows = sorted(rows, key=lambda r: (len(r["pmid"]), r["pmid"]))
    test = [r for r in rows if r["pmid"] in test_labels]
    rest = [r for r in rows if r["pmid"] not in test_labels]
    disagree = [r["pmid"] for r in test if r["final_decision"] != test_labels[r["pmid"]]]
    if disagree:
        raise MedsftError(f"{source}: test PMIDs {disagree[:5]} have labels that differ from the official list")
    if not rest:
        raise MedsftError(f"{source}: no questions left for training once the official test set is held out")
    result = DatasetDict()
    train = Dataset.from_list(rest)
    if validation_size > 0:
        # datasets' stratified split needs a ClassLabel column; the split is then applied to the plain rows by PMID.
        encoded = train.class_encode_column("final_decision")
        held_out = encoded.train_test_split(
            test_size=validation_size, stratify_by_column="final_decision", seed=SPLIT_SEED
        )["test"]
        validation_pmids = set(held_out["pmid"])
        result["train"] = Dataset.from_list([r for r in rest if r["pmid"] not in validation_pmids])
        result["validation"] = Dataset.from_list([r for r in rest if r["pmid"] in validation_pmids])
    else:
        result["train"] = train
    result["test"] = Dataset.from_list(test)
    report.splits = {name: len(split) for name, split in result.items()}
    return result, report


def validation_pmids() -> set[str]:
    """The PMIDs of the default validation split (50 questions): held out for model selection, so no training text
    (e.g. their abstracts and conclusions as PubMed abstracts) may hold them."""
    return set(read_json(SHIPPED_VALIDATION_FILE, expect=list, what="PubMedQA validation PMIDs"))


def balance_labels(train: Dataset, seed: int = SPLIT_SEED) -> tuple[Dataset, dict[str, int]]:
    """Oversample the rarer answers so that every label present is as common as the most common one.

    Each rarer label's questions are repeated whole as often as fits, then a seeded draw (without replacement) adds
    the rest; the result is shuffled with the same seed so that ``max_train_samples`` takes a balanced sample. Only
    the training split is balanced: validation keeps the real answer prior.

    Returns:
        The balanced rows and, per label, how many copies were added (0 for the most common label).
    """
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(train["final_decision"]):
        by_label.setdefault(label, []).append(i)
    target = max((len(ids) for ids in by_label.values()), default=0)
    rng = random.Random(seed)
    extra: list[int] = []
    added: dict[str, int] = {}
    for label in sorted(by_label, key=LABELS.index):
        ids = by_label[label]
        whole, rest = divmod(target - len(ids), len(ids))
        extra += ids * whole + sorted(rng.sample(ids, rest))
        added[label] = target - len(ids)
    balanced = concatenate_datasets([train, train.select(extra)]) if extra else train
    return balanced.shuffle(seed=seed).flatten_indices(), added


def abstract(row: dict, with_sections: bool = True) -> str:
    """The abstract sections as one text (``BACKGROUND: ...`` lines when section labels are known)."""
    if with_sections:
        return "\n".join(f"{s}: {c}" if s else c for s, c in zip(row["sections"], row["contexts"], strict=False))
    return "\n".join(row["contexts"])


def lm_eval_prompt(row: dict) -> str:
    """lm-evaluation-harness's ``pubmedqa`` prompt; the answer choices are " yes", " no", " maybe"."""
    return "Abstract: " + "\n".join(row["contexts"]) + "\nQuestion: " + row["question"] + "\nAnswer:"


def answer_text(row: dict, long_answer: bool) -> str:
    if long_answer and row["long_answer"]:
        return f"{row['final_decision']}. {row['long_answer']}"
    return row["final_decision"]


def chat_prompt(row: dict) -> list[dict]:
    """System + user turns (abstract and question); the assistant answers yes/no/maybe."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Abstract:\n{abstract(row)}\n\nQuestion: {row['question']}"},
    ]


def to_chat(row: dict, long_answer: bool = False) -> dict:
    """Conversational prompt/completion; the answer word, optionally followed by the long answer as a rationale."""
    return {
        "prompt": chat_prompt(row),
        "completion": [{"role": "assistant", "content": answer_text(row, long_answer)}],
    }


def to_instruction(row: dict, long_answer: bool = False) -> dict:
    """The lm-evaluation-harness prompt, completion " yes"/" no"/" maybe" (the words its scorer compares)."""
    return {"prompt": lm_eval_prompt(row), "completion": " " + answer_text(row, long_answer)}


def to_text(row: dict, long_answer: bool = False) -> dict:
    """The seed notebook's question-only causal-LM text (no abstract), loss on every token."""
    return {"text": f"Question: {row['question']}\nAnswer: {answer_text(row, long_answer)}"}


FORMATTERS = {"chat": to_chat, "instruction": to_instruction, "text": to_text}
