"""WikiDoc loading: counts checked against the real file (computed here independently), errors, formatting."""

from __future__ import annotations

import json

import pytest

from medsft.core.errors import MedsftError
from medsft.data.mixture import load_sft_datasets
from medsft.data.wikidoc import load_wikidoc, to_chat, to_instruction
from tests.conftest import WIKIDOC_JSON


def test_wikidoc_counts_on_the_real_file():
    rows = json.loads(WIKIDOC_JSON.read_text())
    unique = {(r["input"], r["output"]) for r in rows if r["input"].strip() and r["output"].strip()}
    data, report = load_wikidoc(str(WIKIDOC_JSON), validation_size=0.05)
    assert report.read == len(rows)
    assert report.kept == len(unique) == len(data["train"]) + len(data["validation"])
    assert report.dropped["exact duplicate"] == len(rows) - len(unique)
    # disjoint splits (duplicates removed first, so no question/answer pair is in both)
    train = {(r["input"], r["output"]) for r in data["train"]}
    assert not train & {(r["input"], r["output"]) for r in data["validation"]}
    # the validation split is fixed, independent of anything but the data and validation_size
    again, _ = load_wikidoc(str(WIKIDOC_JSON), validation_size=0.05)
    assert again["validation"]["input"] == data["validation"]["input"]


def test_empty_and_duplicate_rows_are_counted(tmp_path):
    rows = [
        {"instruction": "i", "input": "q1", "output": "a1"},
        {"instruction": "i", "input": "q1", "output": "a1"},
        {"instruction": "i", "input": " ", "output": "a"},
        {"instruction": "i", "input": "q3", "output": ""},
        {"instruction": "i", "input": "q4", "output": "a4"},
    ]
    path = tmp_path / "w.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data, report = load_wikidoc(str(path), validation_size=0.0)
    assert len(data["train"]) == 2 and report.kept == 2
    assert dict(report.dropped) == {"exact duplicate": 1, "empty question": 1, "empty answer": 1}
    assert "dropped: 1 empty answer, 1 empty question, 1 exact duplicate" in report.summary()


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n{"instruction": "i", "input": "q", "output": "a"},\n{"instruction": oops}\n]')
    with pytest.raises(MedsftError, match=r"bad\.json, line 3 column 17: malformed JSON"):
        load_wikidoc(str(path))
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"instruction": "i", "input": "q", "output": "a"}\n{not json}\n')
    with pytest.raises(MedsftError, match=r"bad\.jsonl, line 2: malformed JSON"):
        load_wikidoc(str(jsonl))


def test_missing_field_names_the_row(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(
        json.dumps([{"instruction": "i", "input": "q", "output": "a"}, {"instruction": "i", "input": "q"}])
    )
    with pytest.raises(MedsftError, match=r"w.json, row 2: no field\(s\) output"):
        load_wikidoc(str(path))


def test_empty_after_filtering(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps([{"instruction": "i", "input": "", "output": "a"}]))
    with pytest.raises(MedsftError, match="no usable rows"):
        load_wikidoc(str(path))


def test_formats():
    row = {"instruction": "Answer this question truthfully", "input": "What is asthma?", "output": "A lung disease."}
    chat = to_chat(row)
    assert chat["prompt"][-1] == {"role": "user", "content": "What is asthma?"}
    assert chat["completion"] == [{"role": "assistant", "content": "A lung disease."}]
    inst = to_instruction(row)
    assert inst["prompt"].endswith("### Input:\nWhat is asthma?\n\n### Response:\n")
    assert inst["completion"] == "A lung disease."


def test_unknown_local_dataset_needs_a_type(tmp_path):
    from medsft.configs.training import MedScriptArguments

    (tmp_path / "x.json").write_text("[]")
    args = MedScriptArguments(dataset_name=str(tmp_path / "x.json"))
    with pytest.raises(MedsftError, match="set --dataset_type"):
        load_sft_datasets(args)
    with pytest.raises(MedsftError, match="nope.json does not exist"):
        load_sft_datasets(MedScriptArguments(dataset_name=str(tmp_path / "nope.json")))


def test_hub_id_is_recognised_and_offline_failure_is_clear(monkeypatch):
    """The Hub id dispatches to the WikiDoc loader; offline, the failure is one line naming the id."""
    from medsft.configs.training import MedScriptArguments
    from medsft.data.wikidoc import HUB_ID

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(MedsftError, match=f"could not load dataset '{HUB_ID}'.*pass a local path instead"):
        load_sft_datasets(MedScriptArguments(dataset_name=HUB_ID))


def test_hub_id_for_local_copies_hub_ids_and_generated_data(tmp_path):
    """Reports and cards name the Hub dataset also when it was read from a local copy; local files have none."""
    from medsft.data.medquad import HUB_ID as MEDQUAD
    from medsft.data.pubmedqa import HUB_ID as PUBMEDQA
    from medsft.data.registry import hub_id_for
    from medsft.data.wikidoc import HUB_ID as WIKIDOC
    from tests.conftest import MEDQUAD_DIR, PUBMEDQA_DIR

    assert hub_id_for(WIKIDOC) == WIKIDOC
    assert hub_id_for(str(WIKIDOC_JSON.parent)) == WIKIDOC  # recognised by its layout
    assert hub_id_for(str(PUBMEDQA_DIR)) == PUBMEDQA
    assert hub_id_for(str(MEDQUAD_DIR), "medquad") == MEDQUAD
    assert hub_id_for("someone/their-dataset", "hf") == "someone/their-dataset"
    own = tmp_path / "notes.jsonl"
    own.write_text("{}")
    assert hub_id_for(str(own), "hf") is None and hub_id_for(str(own)) is None
    assert hub_id_for("", "clinical_notes") is None


def test_hf_type_passes_trl_format_files_through(tmp_path):
    from medsft.configs.training import MedScriptArguments

    path = tmp_path / "pc.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"Q{i}?", "completion": f"A{i}."}) for i in range(5)))
    loaded = load_sft_datasets(MedScriptArguments(dataset_name=str(path), dataset_type="hf"))
    data, (report,) = loaded.splits, loaded.reports
    assert data["train"].column_names == ["prompt", "completion"] and len(data["train"]) == 5 == report.kept
    with pytest.raises(MedsftError, match="data file not found"):
        load_sft_datasets(MedScriptArguments(dataset_name=str(tmp_path / "none.jsonl"), dataset_type="hf"))
