"""Loaders for PubMedQA, MedQuAD, PubMed abstracts and clinical notes on the real ../shared files.

Expected counts are computed here, independently of the loaders (plain json / regex over the XML), never copied from
the loaders' output.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from medsft.configs.training import MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.data import clinical_notes, medquad, pubmed_abstracts, pubmedqa
from medsft.data.mixture import load_sft_datasets
from tests.conftest import MEDQUAD_DIR, PUBMEDQA_DIR


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in _strings(v)] if isinstance(value, list) else []


@pytest.fixture(scope="module")
def official():
    questions = json.loads((PUBMEDQA_DIR / "ori_pqal.json").read_text())
    test = json.loads((PUBMEDQA_DIR / "test_ground_truth.json").read_text())
    return questions, test


# ---------------------------------------------------------------- PubMedQA


def test_pubmedqa_splits_follow_the_official_test_list(official):
    questions, test = official
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


def test_pubmedqa_split_does_not_depend_on_row_order(official, tmp_path):
    """The Hub copy's row order says nothing about the test set: shuffling the rows changes no split."""
    questions, test = official
    items = list(questions.items())
    random.Random(1).shuffle(items)
    (tmp_path / "ori_pqal.json").write_text(json.dumps(dict(items)))
    (tmp_path / "test_ground_truth.json").write_text(json.dumps(test))
    a, _ = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))
    b, _ = pubmedqa.load_pubmedqa(str(tmp_path))
    for split in ("train", "validation", "test"):
        assert set(a[split]["pmid"]) == set(b[split]["pmid"])


@pytest.mark.parametrize("fmt", ["chat", "instruction", "text"])
def test_no_pubmedqa_test_question_reaches_training(official, fmt):
    questions, test = official
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


# ---------------------------------------------------------------- MedQuAD


def _count_medquad_independently(files) -> tuple[int, int, int, Counter]:
    """Regex over the raw XML (no ElementTree): pairs, empty answers, exact duplicates, kept pairs per focus.

    Both schemas of the release: <Document>/<Focus>/<QAPair>/<Question>/<Answer> and, in a few NINDS files,
    <doc>/<doctitle-focus>/<pair>/<question>/<answer>."""
    pairs = empty = dup = 0
    seen, per_focus = set(), Counter()
    for file in files:
        text = file.read_text(encoding="utf-8")
        focus = re.search(r"<(?:Focus|doctitle-focus)>(.*?)</(?:Focus|doctitle-focus)>", text, re.S)
        focus = " ".join(focus.group(1).split())
        for block in re.findall(r"<(?:QAPair|pair)\b[^>]*>(.*?)</(?:QAPair|pair)>", text, re.S):
            pairs += 1
            question = re.search(r"<[Qq]uestion[^>]*>(.*?)</[Qq]uestion>", block, re.S).group(1)
            question = " ".join(question.split())
            answer = re.search(r"<[Aa]nswer>(.*?)</[Aa]nswer>", block, re.S)
            answer = " ".join(answer.group(1).split()) if answer else ""
            if not answer:
                empty += 1
            elif (question.replace(" ?", "?"), answer) in seen:
                dup += 1
            else:
                seen.add((question.replace(" ?", "?"), answer))
                per_focus[focus] += 1
    return pairs, empty, dup, per_focus


@pytest.fixture(scope="module")
def medquad_counts():
    return _count_medquad_independently(sorted(MEDQUAD_DIR.rglob("*.xml")))


@pytest.fixture(scope="module")
def medquad_loaded():
    return medquad.load_medquad(str(MEDQUAD_DIR))


def test_medquad_counts(medquad_counts, medquad_loaded):
    pairs, empty, dup, per_focus = medquad_counts
    splits, report = medquad_loaded
    assert report.read == pairs
    assert report.dropped == Counter({"empty answer": empty, "exact duplicate": dup})
    assert report.kept == pairs - empty - dup == len(splits["train"]) + len(splits["validation"])
    # the collection the publisher emptied contributes nothing
    herbs = sorted((MEDQUAD_DIR / "12_MPlusHerbsSupplements_QA").glob("*.xml"))
    assert _count_medquad_independently(herbs)[1] == _count_medquad_independently(herbs)[0] > 0
    assert "12_MPlusHerbsSupplements_QA" not in set(splits["train"]["collection"])
    # the release has a few documents with an empty <QAPairs/>: reported, not silently passed over
    empty_docs = {
        str(f.relative_to(MEDQUAD_DIR))
        for f in MEDQUAD_DIR.rglob("*.xml")
        if not re.search(r"<(?:QAPair|pair)\b", f.read_text(encoding="utf-8"))
    }
    assert set(report.skipped_files) == empty_docs and len(empty_docs) > 0
    assert set(report.skipped_files.values()) == {"no question-answer pairs"}


def test_medquad_split_is_by_focus(medquad_loaded):
    splits, _ = medquad_loaded
    train = {f.lower() for f in splits["train"]["focus"]}
    validation = {f.lower() for f in splits["validation"]["focus"]}
    assert not train & validation
    n = len(splits["train"]) + len(splits["validation"])
    assert 0.05 * n <= len(splits["validation"]) < 0.07 * n


def test_medquad_top_k_focus(medquad_counts):
    per_focus = medquad_counts[3]
    top = sorted(per_focus.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    splits, report = medquad.load_medquad(str(MEDQUAD_DIR), validation_size=0.0, top_k_focus=20)
    assert len(splits["train"]) == sum(n for _, n in top)
    assert set(splits["train"]["focus"]) == {f for f, _ in top}
    assert report.dropped["focus outside top 20"] == sum(per_focus.values()) - sum(n for _, n in top)


def test_medquad_bad_xml_file_is_skipped_and_counted(tmp_path):
    files = sorted((MEDQUAD_DIR / "1_CancerGov_QA").glob("*.xml"))[:2]
    collection = tmp_path / "1_CancerGov_QA"
    collection.mkdir()
    for f in files:
        (collection / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (collection / "broken.xml").write_text("<Document><Focus>x</Focus><QAPairs><QAPair>")
    splits, report = medquad.load_medquad(str(tmp_path), validation_size=0.0)
    assert list(report.skipped_files) == ["1_CancerGov_QA/broken.xml"]
    assert report.skipped_files["1_CancerGov_QA/broken.xml"].startswith("invalid XML")
    assert report.read == _count_medquad_independently(files)[0] == len(splits["train"]) + sum(report.dropped.values())
    assert "1 file(s) gave no rows (unreadable or empty)" in report.summary()


def test_medquad_special_token_format():
    row = {"question": "What is X?", "answer": "X is Y."}
    out = medquad.to_special_tokens(row)
    assert out["prompt"] + out["completion"] == "<question> What is X?<answer> X is Y.<end>"


# ---------------------------------------------------------------- PubMed abstracts


def test_pubmed_abstracts_exclude_the_test_pmids(official):
    questions, test = official
    splits, report = pubmed_abstracts.load_pubmed_abstracts(str(PUBMEDQA_DIR), exclude_pmids=set(test))
    assert report.dropped["PubMedQA test PMID"] == len(test)
    pmids = set(splits["train"]["pmid"]) | set(splits["validation"]["pmid"])
    assert pmids == set(questions) - set(test)
    some = next(iter(pmids))
    row = next(r for r in splits["train"].to_list() + splits["validation"].to_list() if r["pmid"] == some)
    assert row["text"].startswith(questions[some]["CONTEXTS"][0]) and row["text"].endswith(
        questions[some]["LONG_ANSWER"]
    )


def test_pubmed_abstracts_from_jsonl_and_txt(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"pmid": 1, "title": "T1", "abstract": "Text one."},
                {"pmid": 2, "abstract": "Text two."},
                {"pmid": 3, "abstract": ""},
                {"pmid": 4, "abstract": "Text one."},
            ]
        )  # fmt: skip
    )
    (tmp_path / "b.txt").write_text("Para one.\n\nPara two.\n\n\n")
    splits, report = pubmed_abstracts.load_pubmed_abstracts(str(tmp_path), exclude_pmids={"2"}, validation_size=0)
    assert sorted(splits["train"]["text"]) == ["Para one.", "Para two.", "T1\nText one.", "Text one."]
    assert report.dropped == Counter({"PubMedQA test PMID": 1, "empty text": 1})
    (tmp_path / "c.jsonl").write_text(json.dumps({"pmid": 5, "body": "x"}) + "\n")
    with pytest.raises(MedsftError, match=r"c.jsonl, record 0: no abstract text field"):
        pubmed_abstracts.load_pubmed_abstracts(str(tmp_path), exclude_pmids=set())
    (tmp_path / "c.jsonl").write_text('{"pmid": 5, "abstract": "x"}\n{"pmid": 6, "abstract": \n')
    with pytest.raises(MedsftError, match=r"c.jsonl, line 2: malformed JSON"):
        pubmed_abstracts.load_pubmed_abstracts(str(tmp_path), exclude_pmids=set())


def test_abstract_recipe_data_never_holds_a_test_pmid(official):
    _, test = official
    args = MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_type="pubmed_abstracts", dataset_format="text")
    data = load_sft_datasets(args)
    (report,) = data.reports
    assert report.dropped["PubMedQA test PMID"] == len(test)
    assert report.decontamination == {"policy": "error", "overlapping_rows": 0, "test_set": "pubmedqa test set"}


# ---------------------------------------------------------------- clinical notes


def test_clinical_notes_are_seeded_and_consistent():
    a, b = clinical_notes.generate_notes(300, seed=7), clinical_notes.generate_notes(300, seed=7)
    assert a == b
    assert clinical_notes.generate_notes(50, seed=7) == a[:50]
    assert clinical_notes.generate_notes(300, seed=8) != a
    by_name = {c.name: c for c in clinical_notes.CONDITIONS}
    assert len({n["condition"] for n in a}) == len(by_name)  # every condition is used
    assert len({n["text"] for n in a}) == len(a)  # varied
    for note in a:
        condition = by_name[note["condition"]]
        assert note["text"] == f"{note['stem']} {note['continuation']}"
        assert note["stem"].startswith("Patient presents with ")
        stated = note["stem"][len("Patient presents with ") : note["stem"].rindex(" for ")]
        residue = stated
        for symptom in sorted(condition.symptoms, key=len, reverse=True):  # only this condition's symptoms
            residue = residue.replace(symptom, "")
        assert re.fullmatch(r"(, | and )+", residue), note["stem"]
        assert f"Assessment: {condition.name}." in note["continuation"]
        age = int(re.search(r"(\d+)-year-old", note["continuation"]).group(1))
        assert condition.ages[0] <= age <= condition.ages[1]
        temperature = float(re.search(r"Temperature ([\d.]+) °C", note["continuation"]).group(1))
        assert (temperature >= 38.0) == condition.febrile
        if note["condition"] == "urinary tract infection":
            assert "-year-old female" in note["continuation"] or "-year-old girl" in note["continuation"]


def test_clinical_notes_formats():
    (note,) = clinical_notes.generate_notes(1, seed=0)
    inst = clinical_notes.to_instruction(note)
    assert inst["prompt"] + inst["completion"] == note["text"]
    assert clinical_notes.to_text(note) == {"text": note["text"]}
    with pytest.raises(MedsftError, match="num_notes must be positive"):
        clinical_notes.generate_notes(0)


# ---------------------------------------------------------------- dispatch


def test_unsupported_format_names_the_choices():
    args = MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_format="special_tokens")
    with pytest.raises(
        MedsftError, match="pubmedqa has no 'special_tokens' format; choose one of chat, instruction, text"
    ):
        load_sft_datasets(args)


def test_auto_recognises_official_layouts():
    from medsft.data.registry import dataset_type_for

    assert dataset_type_for(str(PUBMEDQA_DIR), "auto") == "pubmedqa"
    assert dataset_type_for(str(MEDQUAD_DIR), "auto") == "medquad"
    assert dataset_type_for("synthetic-clinical-notes", "auto") == "clinical_notes"


def test_medquad_file_with_another_root_is_read(tmp_path):
    """CDC-style files wrap the <Document> structure in another root (<DiseaseFile>): their pairs are read; a file
    with no question-answer structure at all is still reported."""
    collection = tmp_path / "2_CDC_QA"
    collection.mkdir()
    (collection / "wrapped.xml").write_text(
        '<DiseaseFile><Document id="c1" source="CDC" url="https://www.cdc.gov/x"><Focus>Measles</Focus><QAPairs>'
        '<QAPair pid="1"><Question qid="1" qtype="information">What is measles ?</Question>'
        "<Answer>A viral disease.</Answer></QAPair></QAPairs></Document></DiseaseFile>"
    )
    (collection / "other.xml").write_text("<Catalog><Item>no pairs here</Item></Catalog>")
    splits, report = medquad.load_medquad(str(tmp_path), validation_size=0.0)
    (row,) = splits["train"]
    assert (row["focus"], row["question"], row["source"], row["document_id"]) == (
        "Measles", "What is measles?", "CDC", "c1",
    )  # fmt: skip
    assert list(report.skipped_files) == ["2_CDC_QA/other.xml"]
    assert "no question-answer pairs" in report.skipped_files["2_CDC_QA/other.xml"]


def test_pubmedqa_labels_shorter_than_contexts_keep_every_context():
    from medsft.data.pubmedqa import _row, abstract

    row = _row("1", {"QUESTION": "Q?", "CONTEXTS": ["first part", "second part"], "LABELS": ["BACKGROUND"],
                     "final_decision": "yes"}, "x")  # fmt: skip
    assert abstract(row) == "BACKGROUND: first part\nsecond part"
