"""Decontamination against the PubMedQA official test set, dataset mixtures, and added special tokens."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from datasets import Dataset

from medsft.configs.parser import parse_args
from medsft.configs.training import MedDatasetMixtureConfig, MedScriptArguments, MedSFTConfig
from medsft.core.errors import MedsftError
from medsft.data import decontam
from medsft.data.mixture import load_sft_datasets
from tests.conftest import MEDQUAD_DIR, PUBMEDQA_DIR

TYPES = (MedScriptArguments, MedSFTConfig, MedDatasetMixtureConfig)


@pytest.fixture(scope="module")
def test_rows():
    questions = json.loads((PUBMEDQA_DIR / "ori_pqal.json").read_text())
    test = json.loads((PUBMEDQA_DIR / "test_ground_truth.json").read_text())
    return [questions[pmid] for pmid in sorted(test)[:3]], [questions[p] for p in sorted(questions) if p not in test][
        :3
    ]


def test_overlap_is_found_by_pmid_question_and_ngram(test_rows):
    (t1, t2, t3), (clean, *_) = test_rows
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


def test_offline_check_of_other_data_uses_the_shipped_index(tmp_path, test_rows, monkeypatch):
    """WikiDoc-like data without --pubmedqa_reference: checked, with no network request, and a leak is found."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the decontamination check made a network request")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    (t1, *_), _ = test_rows
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


def test_policies(tmp_path, test_rows):
    (t1, *_), _ = test_rows
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


def _mixture_recipe(tmp_path, datasets: list[dict]) -> str:
    path = tmp_path / "mix.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "datasets": datasets,
                "dataset_format": "instruction",
                "pubmedqa_reference": str(PUBMEDQA_DIR),
                "num_notes": 300,
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    return str(path)


def test_mixture_follows_trl_fraction_semantics(tmp_path):
    recipe = _mixture_recipe(
        tmp_path,
        [
            {"path": str(PUBMEDQA_DIR), "type": "pubmedqa", "fraction": 0.75},
            {"path": "synthetic-clinical-notes", "type": "clinical_notes", "fraction": 0.25},
        ],
    )
    script_args, _, mixture, _ = parse_args(TYPES, [recipe])
    assert [d.type for d in mixture.datasets] == ["pubmedqa", "clinical_notes"]
    data = load_sft_datasets(script_args, mixture, seed=0)
    # TRL: weights normalised; the size is the largest that oversamples neither (450 PubMedQA / 285 notes train rows)
    total = min(450 / 0.75, 285 / 0.25)
    assert [r.splits["train"] for r in data.reports] == [round(0.75 * total), round(0.25 * total)]
    assert len(data.splits["train"]) == round(0.75 * total) + round(0.25 * total)
    assert data.reports[1].dropped["left out of the mixture (fraction)"] == 285 - round(0.25 * total)
    assert len(data.splits["validation"]) == 50 + 15
    assert math.isclose(
        sum("Abstract:" in p for p in data.splits["train"]["prompt"]) / len(data.splits["train"]), 0.75, abs_tol=0.01
    )


def test_mixture_errors(tmp_path):
    recipe = _mixture_recipe(
        tmp_path,
        [
            {"path": str(PUBMEDQA_DIR), "type": "pubmedqa", "format": "chat"},
            {"path": "synthetic-clinical-notes", "type": "clinical_notes", "format": "text"},
        ],
    )
    script_args, _, mixture, _ = parse_args(TYPES, [recipe])
    with pytest.raises(MedsftError, match="must share one format kind"):
        load_sft_datasets(script_args, mixture)
    bad = _mixture_recipe(tmp_path, [{"path": "x", "typ": "pubmedqa"}])
    with pytest.raises(MedsftError, match=r"datasets\[0\]: unknown key\(s\) typ"):
        parse_args(TYPES, [bad])


def test_mixture_recipe_trains(tiny_gpt2, tmp_path):
    from medsft.train import main

    recipe = _mixture_recipe(
        tmp_path,
        [
            {"path": str(PUBMEDQA_DIR), "type": "pubmedqa", "fraction": 0.5},
            {"path": str(MEDQUAD_DIR), "type": "medquad", "fraction": 0.5},
        ],
    )
    argv = [recipe, "--model_name_or_path", tiny_gpt2, "--use_peft", "--max_steps", "1", "--max_length", "1024",
            "--per_device_train_batch_size", "2", "--max_train_samples", "8", "--report_to", "none"]  # fmt: skip
    trainer = main(argv)
    assert trainer.state.global_step == 1
    manifest = json.loads((tmp_path / "out/run_manifest.json").read_text())
    assert [s["source"] for s in manifest["dataset"]["sources"]] == ["pubmedqa", "medquad"]
    assert manifest["dataset"]["licenses"] == ["cc-by-4.0", "mit"]
    recorded = yaml.safe_load((tmp_path / "out/recipe.yaml").read_text())
    assert recorded["datasets"][0] == {
        "path": str(PUBMEDQA_DIR),
        "type": "pubmedqa",
        "fraction": 0.5,
        "split": "train",
    }


def test_special_tokens_are_trained_saved_and_reloaded(tiny_gpt2, tmp_path):
    """MedQuAD's <question>/<answer>/<end>: new embedding rows are trained, saved with the adapter, and the reloaded
    adapter gives the logits of the end of training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medsft.modeling.adapters import load_adapter
    from medsft.train import main

    out = tmp_path / "run"
    trainer = main(
        [
            "--model_name_or_path", tiny_gpt2, "--dataset_name", str(MEDQUAD_DIR),
            "--dataset_format", "special_tokens", "--use_peft", "--lora_target_modules", "c_attn",
            "--max_steps", "3", "--max_length", "96",
            "--per_device_train_batch_size", "2", "--max_train_samples", "12", "--learning_rate", "5e-2",
            "--validation_size", "0", "--report_to", "none", "--output_dir", str(out), "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.convert_tokens_to_ids(["<question>", "<answer>", "<end>"])
    assert ids == [len(tokenizer) - 3, len(tokenizer) - 2, len(tokenizer) - 1]
    batch = tokenizer(["<question> What is asthma?<answer> A lung disease.<end>"], return_tensors="pt")
    assert batch["input_ids"][0].tolist().count(ids[2]) == 1  # never split
    trained = trainer.model.eval()
    with torch.no_grad():
        expected = trained(**batch, use_cache=False).logits
        rows = trained.get_input_embeddings()(torch.tensor(ids))
    fresh = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    reloaded = load_adapter(fresh, str(out)).eval()
    with torch.no_grad():
        got = reloaded(**batch, use_cache=False).logits
        reloaded_rows = reloaded.get_input_embeddings()(torch.tensor(ids))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(reloaded_rows, rows)
    # the rows moved during training (they are trained, not left at their initial values)
    initial = trainer.model.get_input_embeddings().token_adapter.base_layer.weight[ids]
    assert (rows - initial).abs().max() > 1e-3
