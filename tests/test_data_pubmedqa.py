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
