"""medsft.data.mixture: TRL fraction semantics, errors, a mixture recipe training, added special tokens."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from medsft.configs.parser import parse_args
from medsft.configs.training import MedDatasetMixtureConfig, MedScriptArguments, MedSFTConfig
from medsft.core.errors import MedsftError
from medsft.data import clinical_notes
from medsft.data.mixture import load_sft_datasets
from tests.conftest import MEDQUAD_DIR, PUBMEDQA_DIR

TYPES = (MedScriptArguments, MedSFTConfig, MedDatasetMixtureConfig)


def _mixture_recipe(tmp_path, datasets: list[dict]) -> str:
    path = tmp_path / "mix.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "datasets": datasets,
                "dataset_format": "instruction",
                "pubmedqa_reference": str(PUBMEDQA_DIR),
                # a mixture-wide option no dataset reads is refused, so only where clinical notes are mixed
                **({"num_notes": 300} if any(d.get("type") == "clinical_notes" for d in datasets) else {}),
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


def test_mixture_entries_carry_their_own_dataset_options(tmp_path):
    """An entry's own options (num_notes, notes_seed, validation_size) override the top-level ones for it alone."""
    recipe = _mixture_recipe(
        tmp_path,
        [
            {"path": "synthetic-clinical-notes", "type": "clinical_notes", "num_notes": 100, "notes_seed": 1},
            {"path": "synthetic-clinical-notes", "type": "clinical_notes", "validation_size": 0.5},
        ],
    )
    script_args, _, mixture, _ = parse_args(TYPES, [recipe])
    data = load_sft_datasets(script_args, mixture, seed=0)
    first, second = data.reports
    own = clinical_notes.load_clinical_notes(100, seed=1)[1]  # the same entry loaded on its own
    assert first.splits == own.splits and sum(first.splits.values()) <= 100
    # the second entry keeps the top-level num_notes (300) with its own validation share
    assert sum(second.splits.values()) == sum(clinical_notes.load_clinical_notes(300)[1].splits.values())
    assert second.splits["validation"] == pytest.approx(second.splits["train"], abs=2)


def test_bad_option_in_a_mixture_entry_names_it(tmp_path):
    entry = {"path": "synthetic-clinical-notes", "type": "clinical_notes", "num_notes": 0}
    recipe = _mixture_recipe(tmp_path, [entry])
    with pytest.raises(MedsftError, match="datasets: synthetic-clinical-notes: num_notes must be positive"):
        parse_args(TYPES, [recipe])  # refused while parsing, before anything is loaded


def test_pubmedqa_rationale_abstracts_and_medquad_mix(pubmedqa_official, tiny_gpt2, tmp_path):
    """The mixture issue 28 names: PubMedQA's rationale format, PubMed abstracts (test PMIDs removed) and MedQuAD, one
    shape (abstracts as an empty prompt and a completion); an abstract trains on every token, as in ``text``."""
    from medsft.train import main

    questions, test = pubmedqa_official
    recipe = _mixture_recipe(
        tmp_path,
        [
            {"path": str(PUBMEDQA_DIR), "type": "pubmedqa", "pubmedqa_long_answer": True, "fraction": 0.5},
            {"path": str(PUBMEDQA_DIR), "type": "pubmed_abstracts", "fraction": 0.25},
            {"path": str(MEDQUAD_DIR), "type": "medquad", "fraction": 0.25},
        ],
    )
    script_args, _, mixture, _ = parse_args(TYPES, [recipe])
    data = load_sft_datasets(script_args, mixture, seed=0)
    rows = data.splits["train"].to_list()
    abstracts = [r for r in rows if r["prompt"] == ""]
    assert [r.splits["train"] for r in data.reports] == [450, 225, 225] and len(abstracts) == 225
    test_texts = {questions[pmid]["CONTEXTS"][0][:200] for pmid in test}
    assert not any(text in r["completion"] for r in abstracts for text in test_texts)
    # an abstract alone, unpacked: every token carries loss (no label masked out)
    argv = ["--model_name_or_path", tiny_gpt2, "--use_peft", "--max_steps", "1", "--max_length", "1024",
            "--dataset_name", str(PUBMEDQA_DIR), "--dataset_type", "pubmed_abstracts", "--dataset_format",
            "instruction", "--packing", "false", "--max_train_samples", "4", "--report_to", "none",
            "--output_dir", str(tmp_path / "abstracts")]  # fmt: skip
    trainer = main(argv)
    rows = trainer.train_dataset.to_list()
    assert len(rows) == 4 and all(len(r["labels"]) > 50 and -100 not in r["labels"] for r in rows)
    assert all(r["labels"] == r["input_ids"] for r in rows)


def test_abstracts_beside_a_pubmedqa_split_they_do_not_hold_out_are_refused(tmp_path):
    """The abstracts leave out the default PubMedQA validation questions' abstracts; a mixture that splits PubMedQA
    otherwise (here a top-level validation_size) is refused before anything is loaded, naming the way out."""
    entries = [
        {"path": str(PUBMEDQA_DIR), "type": "pubmedqa", "fraction": 0.5},
        {"path": str(PUBMEDQA_DIR), "type": "pubmed_abstracts", "fraction": 0.5},
    ]
    script_args, _, mixture, _ = parse_args(TYPES, [_mixture_recipe(tmp_path, entries), "--validation_size", "0.2"])
    with pytest.raises(
        MedsftError, match=r"validation_size 0.2 splits PubMedQA differently .*keep PubMedQA's default"
    ):
        load_sft_datasets(script_args, mixture, seed=0)
    # the abstracts' own validation share is theirs to choose
    entries[1]["validation_size"] = 0.2
    script_args, _, mixture, _ = parse_args(TYPES, [_mixture_recipe(tmp_path, entries)])
    data = load_sft_datasets(script_args, mixture, seed=0)
    assert data.reports[0].splits["validation"] == 50


def test_options_no_dataset_reads_are_refused(tmp_path, caplog):
    """An option its dataset's loader does not read would do nothing: refused in one line naming the dataset, before
    anything is loaded; set for a whole mixture, it reaches the datasets that read it and is refused if none does."""
    from tests.conftest import WIKIDOC_JSON

    wikidoc = dict(dataset_name=str(WIKIDOC_JSON), dataset_format="chat")
    with pytest.raises(MedsftError, match=r"medquad_top_k_focus applies to MedQuAD data only; .* is read as wikidoc"):
        load_sft_datasets(MedScriptArguments(**wikidoc, medquad_top_k_focus=5))
    with pytest.raises(
        MedsftError, match=r"pubmedqa_long_answer applies to PubMedQA data only; .*--pubmedqa_long_answer false"
    ):
        load_sft_datasets(MedScriptArguments(**wikidoc, pubmedqa_long_answer=True))
    with pytest.raises(MedsftError, match=r"num_notes applies to clinical-notes data only; .* is read as wikidoc"):
        load_sft_datasets(MedScriptArguments(**wikidoc, num_notes=10))
    hf = tmp_path / "rows.jsonl"
    hf.write_text(json.dumps({"prompt": "Q: ", "completion": "A."}))
    # a recipe's validation_size cannot be unset from the command line: for an hf dataset it is one warning line
    with caplog.at_level("WARNING", logger="medsft.data.registry"):
        load_sft_datasets(MedScriptArguments(dataset_name=str(hf), dataset_type="hf", validation_size=0.1))
    assert "validation_size applies to medsft's own dataset types only; " in caplog.text
    assert "keeps its own splits: --dataset_test_split); not used" in caplog.text
    assert caplog.text.count("; not used") == 1  # said once, not again for the run

    notes = {"path": "synthetic-clinical-notes", "type": "clinical_notes"}
    on_entry = _mixture_recipe(tmp_path, [{**notes, "medquad_top_k_focus": 3}])
    with pytest.raises(
        MedsftError,
        match=r"medquad_top_k_focus applies to MedQuAD .* synthetic-clinical-notes is read as clinical_notes",
    ):
        load_sft_datasets(*parse_args(TYPES, [on_entry])[::2])
    mixture_wide = _mixture_recipe(tmp_path, [notes])
    with pytest.raises(
        MedsftError,
        match=r"pubmedqa_long_answer applies to PubMedQA data only; no dataset of this run is: synthetic-clinical",
    ):
        load_sft_datasets(*parse_args(TYPES, [mixture_wide, "--pubmedqa_long_answer", "true"])[::2])


def test_a_mixture_wide_option_reaches_only_the_datasets_that_read_it(tmp_path):
    """--pubmedqa_balance_labels for a mixture of PubMedQA and MedQuAD balances PubMedQA and leaves MedQuAD alone
    (given on a MedQuAD entry itself it is refused, as for a single dataset)."""
    from tests.conftest import _require

    medquad = str(_require(MEDQUAD_DIR) / "5_NIDDK_QA")
    entries = [{"path": str(PUBMEDQA_DIR), "type": "pubmedqa"}, {"path": medquad, "type": "medquad"}]
    script_args, _, mixture, _ = parse_args(
        TYPES, [_mixture_recipe(tmp_path, entries), "--pubmedqa_balance_labels", "true"]
    )
    data = load_sft_datasets(script_args, mixture, seed=0)
    pubmed, medquad_report = data.reports
    assert pubmed.repeated and not medquad_report.repeated
    entries[1]["pubmedqa_balance_labels"] = True
    with pytest.raises(MedsftError, match="pubmedqa_balance_labels applies to PubMedQA data only; .* read as medquad"):
        load_sft_datasets(*parse_args(TYPES, [_mixture_recipe(tmp_path, entries)])[::2])
