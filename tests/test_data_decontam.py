"""medsft.data.decontam: overlap with the PubMedQA official test set by PMID, question and n-gram; policies."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from medsft.configs.training import MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.data import decontam
from medsft.data.mixture import load_sft_datasets
from tests.conftest import PUBMEDQA_DIR


@pytest.fixture(scope="module")
def pubmedqa_questions():
    questions = json.loads((PUBMEDQA_DIR / "ori_pqal.json").read_text())
    test = json.loads((PUBMEDQA_DIR / "test_ground_truth.json").read_text())
    return [questions[pmid] for pmid in sorted(test)[:3]], [questions[p] for p in sorted(questions) if p not in test][
        :3
    ]


def test_overlap_is_found_by_pmid_question_and_ngram(pubmedqa_questions):
    (t1, t2, t3), (clean, *_) = pubmedqa_questions
    index = decontam.TestSetIndex.from_pubmedqa(str(PUBMEDQA_DIR))
    sentence = " ".join(t3["CONTEXTS"][0].split()[:20])  # 20 words of a test abstract inside other text
    pmid = next(p for p in index.pmids)
    rows = Dataset.from_list(
        [
            {"pmid": pmid, "text": "unrelated text"},
            {"pmid": "", "text": t2["QUESTION"].upper()},
            {"pmid": "", "text": f"Patient notes. {sentence} More."},
            {"pmid": "", "text": clean["QUESTION"] + " " + " ".join(clean["CONTEXTS"])},
            {"pmid": "", "text": " ".join(t1["CONTEXTS"][0].split()[:12])},  # 12 words: below the 13-gram
        ]
    )
    overlap = decontam.find_overlap(rows, index)
    assert overlap.rows == [0, 1, 2]
    assert overlap.reasons == {"PMID": 1, "question": 1, "13-gram": 1}


def test_shipped_index_is_the_official_release(tmp_path):
    """The index medsft ships (used offline, whenever no local PubMedQA is given) equals a rebuild from the release."""
    from medsft.data import pubmedqa

    rebuilt = tmp_path / "index"
    decontam.TestSetIndex.from_pubmedqa(str(PUBMEDQA_DIR)).save(
        rebuilt, pubmedqa.official_test_labels(str(PUBMEDQA_DIR))
    )
    for file in rebuilt.iterdir():
        assert file.read_bytes() == (decontam.SHIPPED / file.name).read_bytes(), file.name
    shipped = decontam.TestSetIndex.shipped()
    assert len(shipped.pmids) == 500 and len(shipped.questions) == 500 and len(shipped.ngrams) > 100_000
    assert pubmedqa.official_test_labels(pubmedqa.HUB_ID) == json.loads(
        (PUBMEDQA_DIR / "test_ground_truth.json").read_text()
    )


def test_offline_check_of_other_data_uses_the_shipped_index(tmp_path, pubmedqa_questions, monkeypatch):
    """WikiDoc-like data without --pubmedqa_reference: checked, with no network request, and a leak is found."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the decontamination check made a network request")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    (t1, *_), _ = pubmedqa_questions
    leak = " ".join(t1["CONTEXTS"][0].split()[:15])
    path = _hf_file(tmp_path, ["a clean answer", f"Background. {leak}", "another clean answer"])
    data = load_sft_datasets(MedScriptArguments(dataset_name=path, dataset_type="hf"))
    (report,) = data.reports
    assert report.decontamination == {
        "policy": "warn",
        "overlapping_rows": 1,
        "test_set": "PubMedQA official test set (index shipped with medsft)",
    }


def _hf_file(tmp_path, texts):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "Q: ", "completion": t}) for t in texts))
    return str(path)


def test_policies(tmp_path, pubmedqa_questions):
    (t1, *_), _ = pubmedqa_questions
    path = _hf_file(tmp_path, ["a clean answer", t1["QUESTION"], "another clean answer"])
    base = dict(dataset_name=path, dataset_type="hf", pubmedqa_reference=str(PUBMEDQA_DIR))
    with pytest.raises(MedsftError, match=r"1 training rows overlap the PubMedQA test set \(1 by question\)"):
        load_sft_datasets(MedScriptArguments(**base, decontamination="error"))
    dropped = load_sft_datasets(MedScriptArguments(**base, decontamination="drop"))
    assert len(dropped.splits["train"]) == 2
    assert dropped.reports[0].dropped["overlaps PubMedQA test set"] == 1
    warned = load_sft_datasets(MedScriptArguments(**base, decontamination="warn"))
    assert len(warned.splits["train"]) == 3 and warned.reports[0].decontamination["overlapping_rows"] == 1
    off = load_sft_datasets(MedScriptArguments(**base, decontamination="off"))
    assert off.reports[0].decontamination["overlapping_rows"] is None


def test_the_validation_split_is_checked_too(tmp_path, pubmedqa_questions):
    """Model selection reads the validation split: a test question there is found and handled like one in training,
    and said apart from the training rows."""
    (t1, *_), _ = pubmedqa_questions
    folder = tmp_path / "two_splits"
    folder.mkdir()
    for split, texts in (("train", ["a clean answer", "another"]), ("test", ["clean held-out", t1["QUESTION"]])):
        rows = (json.dumps({"prompt": "Q: ", "completion": t}) for t in texts)
        (folder / f"{split}.jsonl").write_text("\n".join(rows))
    base = dict(dataset_name=str(folder), dataset_type="hf", pubmedqa_reference=str(PUBMEDQA_DIR))
    with pytest.raises(MedsftError, match=r"1 validation rows overlap the PubMedQA test set \(1 by question\)"):
        load_sft_datasets(MedScriptArguments(**base, decontamination="error"))
    dropped = load_sft_datasets(MedScriptArguments(**base, decontamination="drop"))
    report = dropped.reports[0]
    assert len(dropped.splits["train"]) == 2 and len(dropped.splits["validation"]) == 1
    assert report.dropped == {"overlaps PubMedQA test set (validation split)": 1}
    assert report.decontamination["overlapping_rows"] == 0  # the training rows
    assert report.decontamination["validation_overlapping_rows"] == {"PubMedQA": 1}
    assert report.splits["validation"] == 1
    warned = load_sft_datasets(MedScriptArguments(**base, decontamination="warn"))
    assert len(warned.splits["validation"]) == 2
    assert warned.reports[0].decontamination["validation_overlapping_rows"] == {"PubMedQA": 1}


def test_error_policy_without_the_test_set_is_a_clear_error(tmp_path):
    path = _hf_file(tmp_path, ["text"])
    missing = str(tmp_path / "no-pubmedqa")  # a --pubmedqa_reference that is not there
    with pytest.raises(
        MedsftError, match="decontamination \\(error\\) needs the PubMedQA test set.*--pubmedqa_reference"
    ):
        load_sft_datasets(
            MedScriptArguments(
                dataset_name=path, dataset_type="hf", decontamination="error", pubmedqa_reference=missing
            )
        )
    # warn: trains, and the report says why it could not check (never a bare null)
    data = load_sft_datasets(
        MedScriptArguments(dataset_name=path, dataset_type="hf", decontamination="warn", pubmedqa_reference=missing)
    )
    checked = data.reports[0].decontamination
    assert checked["overlapping_rows"] is None and "no-pubmedqa" in checked["not_checked"]


def test_suite_benchmarks_are_checked_with_counts_each(tmp_path):
    """benchmark_references: a MedQA test question and 13 words of an MMLU question in the training data are
    found, counted per benchmark, and handled by the same policy."""
    from medsft.data import medqa, mmlu
    from tests.conftest import MEDQA_DIR, MMLU_DIR

    (q1, *_), _ = medqa.load_medqa(str(MEDQA_DIR))
    long_mmlu = next(
        r for r in mmlu.load_mmlu(str(MMLU_DIR), ("professional_medicine",))[0] if len(r["question"]) > 400
    )
    piece = " ".join(long_mmlu["question"].split()[5:20])  # 15 words from inside a question
    path = _hf_file(tmp_path, ["a clean answer", q1["question"], f"Notes: {piece}.", "another clean answer"])
    refs = f"medqa={MEDQA_DIR},mmlu={MMLU_DIR}"
    base = dict(dataset_name=path, dataset_type="hf", pubmedqa_reference=str(PUBMEDQA_DIR), benchmark_references=refs)
    with pytest.raises(MedsftError, match=r"1 training rows overlap the medqa test questions .*\(1 by question\)"):
        load_sft_datasets(MedScriptArguments(**base, decontamination="error"))
    dropped = load_sft_datasets(MedScriptArguments(**base, decontamination="drop"))
    assert len(dropped.splits["train"]) == 2
    checked = dropped.reports[0].decontamination
    assert checked["overlapping_rows"] == 0  # PubMedQA
    assert {name: entry["overlapping_rows"] for name, entry in checked["benchmarks"].items()} == {
        "medqa": 1,
        "mmlu": 1,
    }
    assert dropped.reports[0].dropped["overlaps a benchmark's test questions"] == 2
    with pytest.raises(MedsftError, match="benchmark_references: 'usmle=x' is not NAME=PATH"):
        MedScriptArguments(dataset_name=path, benchmark_references="usmle=x")
