"""medsft.data.pubmed_abstracts: the PubMedQA test and validation PMIDs never reach training; JSONL and text
files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from medsft.configs.training import MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.data import pubmed_abstracts, pubmedqa
from medsft.data.mixture import load_sft_datasets
from tests.conftest import PUBMEDQA_DIR


def test_pubmed_abstracts_exclude_the_test_pmids(pubmedqa_official):
    questions, test = pubmedqa_official
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


def test_abstract_recipe_data_never_holds_a_test_or_validation_pmid(pubmedqa_official):
    questions, test = pubmedqa_official
    args = MedScriptArguments(dataset_name=str(PUBMEDQA_DIR), dataset_type="pubmed_abstracts", dataset_format="text")
    data = load_sft_datasets(args)
    (report,) = data.reports
    assert report.dropped["PubMedQA test PMID"] == len(test)
    # PubMedQA's validation questions: their conclusions are what model selection scores in the rationale format
    held_out = pubmedqa.load_pubmedqa(str(PUBMEDQA_DIR))[0]["validation"]["pmid"]
    assert report.dropped["PubMedQA validation PMID (held out for model selection)"] == len(held_out) == 50
    texts = "\n".join(list(data.splits["train"]["text"]) + list(data.splits["validation"]["text"]))
    assert not any(questions[pmid]["LONG_ANSWER"] in texts for pmid in [*test, *held_out])
    assert sum(report.splits.values()) == len(questions) - len(test) - 50
    assert report.decontamination == {"policy": "error", "overlapping_rows": 0, "test_set": "pubmedqa test set"}
