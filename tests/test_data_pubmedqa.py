"""medsft.data.pubmedqa on the real ../shared release: the official test split, formats, bad input.

Expected counts are computed here, independently of the loader (plain json), never copied from its output.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from medsft.configs.training import MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.data import pubmedqa
from medsft.data.mixture import load_sft_datasets
from tests.conftest import PUBMEDQA_DIR


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in _strings(v)] if isinstance(value, list) else []


def test_pubmedqa_splits_follow_the_official_test_list(pubmedqa_official):
    questions, test = pubmedqa_official
    splits, report = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))
    assert set(splits["test"]["pmid"]) == set(test) and len(test) == 500
    train, val = set(splits["train"]["pmid"]), set(splits["validation"]["pmid"])
    assert not (train | val) & set(test) and not train & val
    assert train | val == set(questions) - set(test)
    assert (len(train), len(val)) == (450, 50)
    assert report.read == len(questions) and report.kept == len(questions)
    # stratified: every label's validation share is its share of the 500 non-test questions, within one question
    rest = Counter(q["final_decision"] for pmid, q in questions.items() if pmid not in test)
    held = Counter(splits["validation"]["final_decision"])
    for label, n in rest.items():
        assert abs(held[label] - 50 * n / sum(rest.values())) <= 1
    assert Counter(splits["train"]["final_decision"]) + held == rest
    # the test labels are the official ones
    assert dict(zip(splits["test"]["pmid"], splits["test"]["final_decision"], strict=True)) == test


def test_pubmedqa_split_does_not_depend_on_row_order(pubmedqa_official, tmp_path):
    """The Hub copy's row order says nothing about the test set: shuffling the rows changes no split."""
    questions, test = pubmedqa_official
    items = list(questions.items())
    random.Random(1).shuffle(items)
    (tmp_path / "ori_pqal.json").write_text(json.dumps(dict(items)))
    (tmp_path / "test_ground_truth.json").write_text(json.dumps(test))
    a, _ = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))
    b, _ = pubmedqa.load_pubmedqa(str(tmp_path))
    for split in ("train", "validation", "test"):
        assert set(a[split]["pmid"]) == set(b[split]["pmid"])


@pytest.mark.parametrize("fmt", ["chat", "instruction", "text"])
def test_no_pubmedqa_test_question_reaches_training(pubmedqa_official, fmt):
    questions, test = pubmedqa_official
    args = MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_format=fmt, pubmedqa_long_answer=True)
    data = load_sft_datasets(args)
    text = "\n".join(_strings([data.splits[s].to_list() for s in data.splits]))
    leaked = [pmid for pmid in test if questions[pmid]["QUESTION"] in text]
    assert leaked == []
    kept = [pmid for pmid in questions if pmid not in test]
    assert sum(questions[pmid]["QUESTION"] in text for pmid in kept) == 500


def test_pubmedqa_formats():
    row = {
        "pmid": "1",
        "question": "Does X cause Y?",
        "contexts": ["First part.", "Second part."],
        "sections": ["BACKGROUND", "RESULTS"],
        "long_answer": "X causes Y.",
        "final_decision": "yes",
    }
    inst = pubmedqa.to_instruction(row)
    # lm-evaluation-harness's pubmedqa doc_to_text, written out by hand
    assert inst["prompt"] == "Abstract: First part.\nSecond part.\nQuestion: Does X cause Y?\nAnswer:"
    assert inst["completion"] == " yes"
    assert pubmedqa.to_instruction(row, long_answer=True)["completion"] == " yes. X causes Y."
    chat = pubmedqa.to_chat(row)
    assert "BACKGROUND: First part.\nRESULTS: Second part." in chat["prompt"][-1]["content"]
    assert chat["completion"] == [{"role": "assistant", "content": "yes"}]
    assert pubmedqa.to_text(row) == {"text": "Question: Does X cause Y?\nAnswer: yes"}


def _write_pqal(tmp_path, records: dict, test: dict):
    (tmp_path / "ori_pqal.json").write_text(json.dumps(records))
    (tmp_path / "test_ground_truth.json").write_text(json.dumps(test))
    return str(tmp_path)


def test_pubmedqa_bad_input(tmp_path):
    good = {"QUESTION": "q?", "CONTEXTS": ["c"], "final_decision": "no", "LONG_ANSWER": "l"}
    with pytest.raises(MedsftError, match=r"PMID 2 has final_decision 'perhaps'; expected one of yes, no, maybe"):
        pubmedqa.load_pubmedqa(
            _write_pqal(tmp_path, {"1": good, "2": {**good, "final_decision": "perhaps"}}, {"1": "no"})
        )
    missing = {"QUESTION": "q?", "final_decision": "no"}
    with pytest.raises(MedsftError, match="PMID 2 has no CONTEXTS"):
        pubmedqa.load_pubmedqa(_write_pqal(tmp_path, {"1": good, "2": missing}, {"1": "no"}))
    with pytest.raises(MedsftError, match="official test PMIDs are not in the data"):
        pubmedqa.load_pubmedqa(_write_pqal(tmp_path, {"1": good}, {"9": "no"}))
    (tmp_path / "ori_pqal.json").write_text('{"1": {"QUESTION": "q?",\n "CONTEXTS": [}')
    with pytest.raises(MedsftError, match=r"ori_pqal.json, line 2 column \d+: malformed JSON"):
        pubmedqa.read_questions(str(tmp_path))
    (tmp_path / "test_ground_truth.json").unlink()
    _write = tmp_path / "ori_pqal.json"
    _write.write_text(json.dumps({"1": good}))
    with pytest.raises(MedsftError, match="test_ground_truth.json not found"):
        pubmedqa.load_pubmedqa(str(tmp_path))


def test_pubmedqa_labels_shorter_than_contexts_keep_every_context():
    from medsft.data.pubmedqa import _row, abstract

    row = _row("1", {"QUESTION": "Q?", "CONTEXTS": ["first part", "second part"], "LABELS": ["BACKGROUND"],
                     "final_decision": "yes"}, "x")  # fmt: skip
    assert abstract(row) == "BACKGROUND: first part\nsecond part"


def test_balance_labels_repeats_the_rarer_answers_and_loses_no_question():
    rows = [{"pmid": str(i), "final_decision": label} for i, label in enumerate(["yes"] * 7 + ["no"] * 3)]
    balanced, added = pubmedqa.balance_labels(pubmedqa.Dataset.from_list(rows), seed=0)
    assert added == {"yes": 0, "no": 4}  # no "maybe" in these rows: nothing to repeat, nothing invented
    assert Counter(balanced["final_decision"]) == {"yes": 7, "no": 7}
    copies = Counter(balanced["pmid"])
    assert set(copies) == {r["pmid"] for r in rows}
    # 3 "no" questions to 7 rows: each once whole, then a draw without replacement - no question favoured twice
    assert sorted(copies[r["pmid"]] for r in rows if r["final_decision"] == "no") == [2, 2, 3]
    again, _ = pubmedqa.balance_labels(pubmedqa.Dataset.from_list(rows), seed=0)
    assert again["pmid"] == balanced["pmid"]  # seeded: the same rows in the same order


def test_balanced_pubmedqa_training_keeps_validation_and_the_test_set_out(pubmedqa_official):
    questions, test = pubmedqa_official
    plain = load_sft_datasets(MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_format="instruction"))
    data = load_sft_datasets(
        MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_format="instruction", pubmedqa_balance_labels=True)
    )
    answers = Counter(c.split(".")[0].strip() for c in data.splits["train"]["completion"])
    most = Counter(c.strip() for c in plain.splits["train"]["completion"])
    assert answers == {label: most["yes"] for label in ("yes", "no", "maybe")}
    assert set(data.splits["train"]["prompt"]) == set(plain.splits["train"]["prompt"])  # every question, none new
    assert data.splits["validation"].to_list() == plain.splits["validation"].to_list()  # the real prior
    assert not any(questions[pmid]["QUESTION"] in p for p in data.splits["train"]["prompt"] for pmid in test)
    report = data.reports[0]
    assert report.repeated == {
        "no questions repeated to balance labels": most["yes"] - most["no"],
        "maybe questions repeated to balance labels": most["yes"] - most["maybe"],
    }
    assert report.splits["train"] == 3 * most["yes"] and "repeated to balance labels" in report.summary()


def test_balance_labels_is_refused_for_other_datasets():
    from tests.conftest import WIKIDOC_JSON

    args = MedScriptArguments(dataset_name=str(WIKIDOC_JSON), dataset_format="chat", pubmedqa_balance_labels=True)
    with pytest.raises(MedsftError, match="pubmedqa_balance_labels applies to PubMedQA data only; .* read as wikidoc"):
        load_sft_datasets(args)


def test_shipped_validation_pmids_are_the_default_split():
    splits, _ = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))
    assert pubmedqa.validation_pmids() == set(splits["validation"]["pmid"])
