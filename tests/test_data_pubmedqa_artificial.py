"""PubMedQA PQA-A (``medsft.data.pubmedqa_artificial``) on a small file in the official ``ori_pqaa.json`` layout (the
211k-question release is not on these machines), checked against the real PQA-L test set."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from medsft.configs.training import MedScriptArguments
from medsft.core.errors import MedsftError
from medsft.data import pubmedqa
from medsft.data.mixture import load_sft_datasets
from medsft.data.registry import dataset_type_for
from tests.conftest import PUBMEDQA_DIR


def _pqaa(n: int = 60) -> dict:
    """Generated questions in the official layout: yes/no only, as PQA-A (about 1 in 6 "no" here)."""
    return {
        str(90_000_000 + i): {
            "QUESTION": f"Does compound {i} reduce marker {i % 7} in cohort {i}?",
            "CONTEXTS": [f"Cohort {i} received compound {i}.", f"Marker {i % 7} was measured at {i} weeks."],
            "LABELS": ["METHODS", "RESULTS"],
            "MESHES": ["Humans"],
            "final_decision": "no" if i % 6 == 0 else "yes",
            "LONG_ANSWER": f"Compound {i} {'did not reduce' if i % 6 == 0 else 'reduced'} marker {i % 7}.",
        }
        for i in range(n)
    }


@pytest.fixture
def pqaa_file(tmp_path, pubmedqa_official):
    """ori_pqaa.json with one official PQA-L test question slipped in (it must be dropped and counted)."""
    questions, test = pubmedqa_official
    leaked = sorted(test)[0]
    records = _pqaa() | {leaked: questions[leaked]}
    path = tmp_path / "ori_pqaa.json"
    path.write_text(json.dumps(records))
    return path, leaked


def test_pqaa_is_recognised_by_its_file_name(pqaa_file, tmp_path):
    path, _ = pqaa_file
    assert dataset_type_for(str(path), "auto") == "pubmedqa_artificial"
    assert dataset_type_for(str(path.parent), "auto") == "pubmedqa_artificial"
    # the official release's data/ holds both files: PQA-L unless the type says otherwise
    shutil.copy(PUBMEDQA_DIR / pubmedqa.DATA_FILE, path.parent / pubmedqa.DATA_FILE)
    assert dataset_type_for(str(path.parent), "auto") == "pubmedqa"


def test_a_published_pqaa_run_names_the_hub_config_and_reruns_as_pqaa(pqaa_file):
    from medsft.publishing.provenance import rerunnable_recipe, training_datasets

    path, _ = pqaa_file
    local = {"dataset_name": str(path), "dataset_type": "auto", "model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}
    assert training_datasets(local)[0] == {
        "name": "qiaojin/PubMedQA (pqa_artificial)", "hub_id": "qiaojin/PubMedQA", "type": "pubmedqa_artificial",
    }  # fmt: skip
    # the Hub id alone would be read as PQA-L: the rerunnable recipe names the type too
    rerun, notes = rerunnable_recipe(local, "HuggingFaceTB/SmolLM2-135M")
    assert (rerun["dataset_name"], rerun["dataset_type"]) == ("qiaojin/PubMedQA", "pubmedqa_artificial")
    assert dataset_type_for(rerun["dataset_name"], rerun["dataset_type"]) == "pubmedqa_artificial"
    assert "read from the local copy 'ori_pqaa.json'" in notes[0]
    mixture = {"datasets": [{"path": str(path)}, {"path": str(PUBMEDQA_DIR)}]}
    entries = rerunnable_recipe(mixture, "m")[0]["datasets"]
    assert entries == [
        {"path": "qiaojin/PubMedQA", "type": "pubmedqa_artificial"}, {"path": "qiaojin/PubMedQA"},
    ]  # fmt: skip
    # PQA-L, and PQA-A named from the Hub: nothing added
    assert "dataset_type" not in rerunnable_recipe({"dataset_name": str(PUBMEDQA_DIR)}, "m")[0]
    hub = {"dataset_name": "qiaojin/PubMedQA", "dataset_type": "pubmedqa_artificial"}
    assert training_datasets(hub)[0]["name"] == "qiaojin/PubMedQA (pqa_artificial)"
    assert rerunnable_recipe(hub, "m")[0] == hub
    assert dataset_type_for("qiaojin/PubMedQA", "auto") == "pubmedqa"


def test_pqaa_trains_in_pqal_formats_without_the_test_set(pqaa_file, pubmedqa_official):
    path, leaked = pqaa_file
    questions, _ = pubmedqa_official
    args = MedScriptArguments(
        dataset_name=str(path), dataset_format="instruction", pubmedqa_long_answer=True,
        pubmedqa_reference=str(PUBMEDQA_DIR), validation_size=0.1,
    )  # fmt: skip
    data = load_sft_datasets(args)
    report = data.reports[0]
    assert report.read == 61 and report.dropped == {"overlaps PubMedQA test set": 1}
    assert report.decontamination["policy"] == "drop"  # PQA-A's default: removed and counted, not fatal
    prompts = list(data.splits["train"]["prompt"]) + list(data.splits["validation"]["prompt"])
    assert len(prompts) == 60 and len(data.splits["validation"]) == 7  # 61 read, 7 held out, the leaked one dropped
    assert not any(questions[leaked]["QUESTION"] in p for p in prompts)
    row = pubmedqa.read_questions(str(path), "ori_pqaa.json")[0]
    formatted = pubmedqa.to_instruction(row, long_answer=True)
    assert formatted["completion"].startswith((" yes. Compound", " no. Compound"))
    assert formatted["prompt"] in prompts  # the same prompt and completion as PQA-L's instruction format
    assert data.licenses == ["mit"]


def test_pqaa_from_the_hub_reads_the_pqa_artificial_config(monkeypatch):
    import datasets

    asked = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        asked.append((path, name, split))
        rows = [
            {"pubid": 1 + i, "question": f"q{i}?", "context": {"contexts": ["c"], "labels": ["L"]},
             "long_answer": "l", "final_decision": "yes" if i % 2 else "no"}
            for i in range(10)
        ]  # fmt: skip
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    from medsft.data.pubmedqa_artificial import load_pubmedqa_artificial

    splits, report = load_pubmedqa_artificial("qiaojin/PubMedQA", validation_size=0.2)
    assert asked == [("qiaojin/PubMedQA", "pqa_artificial", "train")]
    assert report.splits == {"train": 8, "validation": 2}
    assert Counter(splits["train"]["final_decision"]) + Counter(splits["validation"]["final_decision"]) == {
        "yes": 5, "no": 5
    }  # fmt: skip


def test_pqaa_bad_input(tmp_path):
    args = MedScriptArguments(dataset_name=str(tmp_path), dataset_type="pubmedqa_artificial")
    with pytest.raises(MedsftError, match=f"PubMedQA directory {tmp_path} has no ori_pqaa.json"):
        load_sft_datasets(args)
    (tmp_path / "ori_pqaa.json").write_text(json.dumps({"7": {"QUESTION": "q?", "final_decision": "yes"}}))
    with pytest.raises(MedsftError, match="ori_pqaa.json: PMID 7 has no CONTEXTS"):
        load_sft_datasets(args)


def test_pqaa_then_pqal_full_fine_tuning_chain(pqaa_file, tiny_gpt2, tmp_path):
    """The PubMedQA paper's two stages as medsft runs: the full recipe on PQA-A, then on PQA-L from that model; both
    evaluated beside the original base."""
    from medsft.evaluate import main as evaluate
    from medsft.run_dir.record import read_manifest
    from tests.conftest import train_quickly

    path, _ = pqaa_file
    first = train_quickly(
        "pubmedqa_gpt2_full", tiny_gpt2, tmp_path / "pqaa", "--dataset_name", str(path),
        "--dataset_type", "pubmedqa_artificial", "--pubmedqa_reference", str(PUBMEDQA_DIR),
        "--decontamination", "drop", "--max_steps", "2", "--max_length", "256",
    )  # fmt: skip
    second = train_quickly(
        "pubmedqa_gpt2_full", str(first), tmp_path / "pqal", "--dataset_name", str(PUBMEDQA_DIR),
        "--max_steps", "2", "--max_length", "1024",
    )  # fmt: skip
    assert read_manifest(first)["dataset"]["sources"][0]["dropped"] == {"overlaps PubMedQA test set": 1}
    assert Path(read_manifest(second)["model"]["name"]).name == first.name
    # base, first stage and second stage paired on the same questions; the second alone is refused, with the way out
    out = tmp_path / "eval"
    flags = ["--model_name_or_path", tiny_gpt2, "--tasks", "pubmedqa", "--pubmedqa_dataset", str(PUBMEDQA_DIR),
             "--pubmedqa_mode", "loglikelihood", "--limit", "8"]  # fmt: skip
    with pytest.raises(MedsftError, match="give that run among --adapters too"):
        evaluate([*flags, "--adapters", str(second), "--output_dir", str(out)])
    assert not out.exists()
    evaluate([*flags, "--adapters", str(first), str(second), "--output_dir", str(out)])
    adapters = json.loads((out / "report.json").read_text())["adapters"]
    assert adapters["pqaa"]["full_model"] and adapters["pqaa"]["fine_tuned_from"] is None
    assert adapters["pqal"]["full_model"] and adapters["pqal"]["fine_tuned_from"] == str(first)
