"""``python -m medsft.push``: the folder a dry run writes, the model card's metadata and numbers, secrets and local
paths kept out, the merged model, and the upload through huggingface_hub (its HfApi calls recorded, no network)."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard
from rich.console import Console
from transformers import AutoModelForCausalLM

from medsft.core.errors import MedsftError
from medsft.evaluate import main as evaluate_main
from medsft.modeling.adapters import load_adapter
from medsft.push import main as push_main
from medsft.train import main as train
from tests.conftest import PUBMEDQA_DIR, WIKIDOC_JSON, small_disk, train_quickly

ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_medsftTestToken0123456789abcdefXYZ"
BASE = "openai-community/gpt2"


@pytest.fixture(scope="module")
def evaluated_run(tiny_gpt2, tmp_path_factory) -> Path:
    """A LoRA run trained by the pubmedqa_lora recipe (chat format), then evaluated against its base."""
    out = tmp_path_factory.mktemp("push") / "pubmedqa_lora"
    train_quickly(
        "pubmedqa_lora", tiny_gpt2, out, "--dataset_name", str(PUBMEDQA_DIR), "--dataset_format", "chat",
        "--max_steps", "3", "--max_length", "1024",
    )  # fmt: skip
    evaluate_main(
        [
            "--model_name_or_path", tiny_gpt2, "--adapters", str(out), "--perplexity_dataset", str(WIKIDOC_JSON),
            "--pubmedqa_dataset", str(PUBMEDQA_DIR), "--limit", "10", "--bootstrap_samples", "100",
        ],
        console=Console(file=io.StringIO()),
    )  # fmt: skip
    return out


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FAKE_TOKEN


def _dry_run(run: Path, out: Path, *extra: str) -> dict:
    return push_main(
        [str(run), "--repo_id", "my-org/tiny-pubmedqa", "--base_model", BASE, "--dry_run", str(out), *extra]
    )


def test_dry_run_folder_and_card(evaluated_run, tmp_path, token, capsys):
    result = _dry_run(evaluated_run, tmp_path / "out")
    folder = tmp_path / "out"
    assert result["uploaded"] is False
    files = set(result["files"])
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "recipe.yaml",
        "README.md",
        "eval/report.json",
    } <= files
    assert {"eval/pubmedqa_predictions_pubmedqa_lora.json", "eval/pubmedqa_confusion_pubmedqa_lora.png"} <= files
    # the chat template medsft gave GPT-2 makes the tokenizer differ from the base's: it is published
    assert result["tokenizer_included"] and "tokenizer_config.json" in files
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE

    card = ModelCard.load(folder / "README.md")  # huggingface_hub's own parser
    data = card.data
    assert data.base_model == BASE and data.library_name == "peft" and data.license == "other"
    assert data.datasets == ["qiaojin/PubMedQA"] and data.language == ["en"]
    assert {"medical", "lora", "medsft"} <= set(data.tags)
    report = json.loads((evaluated_run / "eval/report.json").read_text())
    ours = report["results"]["pubmedqa_lora"]
    metrics = {(r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results}
    assert metrics[("qiaojin/PubMedQA", "accuracy")] == round(ours["pubmedqa"]["accuracy"], 4)
    assert metrics[("qiaojin/PubMedQA", "f1")] == round(ours["pubmedqa"]["macro_f1"], 4)
    wikidoc = "medalpaca/medical_meadow_wikidoc_patient_information"  # the Hub id of the local copy evaluated
    assert metrics[(wikidoc, "perplexity")] == round(ours["perplexity"]["perplexity"], 4)
    # --limit 10 scored a subset: marked as one in the metadata and the table
    splits = {(r.dataset_type, r.metric_type): (r.dataset_split, r.metric_name) for r in data.eval_results}
    assert splits[("qiaojin/PubMedQA", "accuracy")] == ("test[:10]", "Accuracy (subset: first 10 of 500 questions)")
    texts = report["settings"]["perplexity"]["texts_in_split"]
    assert splits[(wikidoc, "perplexity")] == ("validation[:10]", f"Perplexity (subset: first 10 of {texts} texts)")
    assert "PubMedQA accuracy (subset: first 10 of 500 questions) |" in card.text
    # licence: other, with its name and a link to the LICENSE.md shipped beside the card
    assert (
        data.license_name
        and data.license_link == "LICENSE.md"
        and "qiaojin/PubMedQA" in (folder / "LICENSE.md").read_text()
    )
    assert card.text.count("must not be used for diagnosis") == 1
    assert "qiaojin/PubMedQA: 0 training rows overlap the pubmedqa test set" in card.text  # decontamination, checked
    assert "![comparison](eval/comparison.png)" in card.text  # the shipped plots are shown
    assert "optimizer steps × an effective batch of 4" in card.text  # what training consumed, beside the split sizes
    assert "must not be used for diagnosis" in card.text and "PeftModel.from_pretrained" in card.text
    assert f"{ours['pubmedqa']['accuracy']:.3f}" in card.text  # the evaluation table, base vs this model
    assert f"{report['results']['base']['pubmedqa']['accuracy']:.3f}" in card.text
    assert f"{ours['pubmedqa']['vs_base']['fixed']} answers fixed" in card.text  # the paired comparison
    assert (
        f"| yes-vs-no ranking AUC (0.5 = chance) | {report['results']['base']['pubmedqa']['yes_no_auc']:.3f} |"
        in card.text
    )
    # no secret, no local absolute path, no user name in any file or in the output
    forbidden = [FAKE_TOKEN, str(tmp_path), str(evaluated_run.parent), str(Path.home()), str(ROOT)]
    for file in folder.rglob("*"):
        if file.is_file() and file.suffix not in (".safetensors", ".png"):
            text = file.read_text()
            assert not [f for f in forbidden if f in text], file
    assert FAKE_TOKEN not in capsys.readouterr().out
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    # rerunnable from the Hub: the Hub ids of the base and the data, the local names only in comments
    assert recipe["dataset_name"] == "qiaojin/PubMedQA" and recipe["model_name_or_path"] == BASE
    assert recipe["output_dir"] == "pubmedqa_lora"
    assert "read from the local copy 'pubmedqa'" in (folder / "recipe.yaml").read_text()


def test_card_recipe_reruns(evaluated_run, tiny_gpt2, tmp_path):
    """The published recipe trains as it is, with only the Hub ids swapped for local copies on the command line."""
    _dry_run(evaluated_run, tmp_path / "card")
    out = tmp_path / "rerun"
    train([str(tmp_path / "card/recipe.yaml"), "--model_name_or_path", tiny_gpt2, "--dataset_name", str(PUBMEDQA_DIR),
           "--output_dir", str(out), "--max_steps", "1"])  # fmt: skip
    assert json.loads((out / "run_manifest.json").read_text())["global_step"] == 1


def test_merged_model_gives_the_adapter_logits(evaluated_run, tiny_gpt2, tmp_path):
    result = _dry_run(evaluated_run, tmp_path / "merged", "--merge", "true")
    assert "model.safetensors" in result["files"] and "adapter_config.json" not in result["files"]
    card = ModelCard.load(tmp_path / "merged/README.md")
    assert card.data.library_name == "transformers" and "merged" in card.data.tags
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2, dtype=torch.float32)
    adapted = load_adapter(base, str(evaluated_run)).eval()
    ids = torch.tensor([[464, 3288, 318, 257, 6861, 4369, 286, 262, 1633, 1014]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)


def test_upload_goes_through_huggingface_hub(evaluated_run, token, monkeypatch):
    calls = {}

    def whoami(self, token=None):
        calls["whoami_token"] = token
        return {"name": "someone"}

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
        calls["create_repo"] = (repo_id, private, exist_ok)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
        calls["uploaded"] = sorted(
            str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()
        )
        return SimpleNamespace(oid="abc123")

    monkeypatch.setattr(HfApi, "whoami", whoami)
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = push_main([str(evaluated_run), "--repo_id", "my-org/tiny", "--base_model", BASE, "--private", "true"])
    assert result["uploaded"] and calls["whoami_token"] == FAKE_TOKEN
    assert calls["create_repo"] == ("my-org/tiny", True, True)
    assert "README.md" in calls["uploaded"] and "adapter_model.safetensors" in calls["uploaded"]


def test_token_problems_are_clear_and_come_first(evaluated_run, monkeypatch, tmp_path):
    import huggingface_hub.constants as constants
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    args = [str(evaluated_run), "--repo_id", "my-org/tiny", "--base_model", BASE]
    with pytest.raises(MedsftError, match="no Hugging Face token: set HF_TOKEN"):
        push_main(args)

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)

    def rejected(self, token=None):
        error = HfHubHTTPError.__new__(HfHubHTTPError)
        Exception.__init__(error, f"401 Unauthorized for token {token}")
        error.response = SimpleNamespace(status_code=401)
        raise error

    monkeypatch.setattr(HfApi, "whoami", rejected)
    with pytest.raises(MedsftError, match="token was rejected") as info:
        push_main(args)
    assert FAKE_TOKEN not in str(info.value)


def test_bad_input(evaluated_run, tmp_path, token):
    with pytest.raises(MedsftError, match="is a local file or directory: pass --base_model"):
        push_main([str(evaluated_run), "--repo_id", "my-org/x", "--dry_run", str(tmp_path / "a")])
    with pytest.raises(MedsftError, match="--repo_id must be owner/name"):
        push_main([str(evaluated_run), "--repo_id", "x", "--dry_run", str(tmp_path / "b")])
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    with pytest.raises(MedsftError, match="is not empty"):
        _dry_run(evaluated_run, tmp_path / "full")
    assert (tmp_path / "full/keep.txt").read_text() == "mine"
    with pytest.raises(MedsftError, match="has no recipe.yaml"):
        _dry_run(tmp_path, tmp_path / "c")


def test_train_push_to_hub_is_checked_before_training(tiny_gpt2, tmp_path, token):
    base = [str(ROOT / "recipes/clinical_notes_lora.yaml"), "--model_name_or_path", tiny_gpt2]
    with pytest.raises(MedsftError, match="needs --hub_model_id owner/name"):
        train([*base, "--output_dir", str(tmp_path / "a"), "--push_to_hub", "true"])
    with pytest.raises(MedsftError, match="the base model '.*' is local"):
        train([*base, "--output_dir", str(tmp_path / "b"), "--push_to_hub", "true", "--hub_model_id", "o/n"])
    assert not os.path.exists(tmp_path / "b" / "adapter_model.safetensors")


def test_card_names_the_gguf_file_the_base_came_from():
    from medsft.publishing.provenance import gguf_provenance

    manifest = {"model": {"name": "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf_sha256": "ab" * 32}}
    text = gguf_provenance(manifest)
    assert "`SmolLM2-135M-Instruct.Q4_1.gguf` (Q4_1 quantization)" in text and "ab" * 32 in text
    assert gguf_provenance({"model": {"name": "gpt2"}}) is None


def test_network_failure_during_upload_says_what_happened(evaluated_run, token, monkeypatch):
    import httpx2

    monkeypatch.setattr(HfApi, "whoami", lambda self, token=None: {"name": "someone"})
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    with pytest.raises(MedsftError) as info:
        push_main([str(evaluated_run), "--repo_id", "my-org/tiny", "--base_model", BASE])
    message = str(info.value)
    assert "upload to my-org/tiny failed (ConnectError)" in message and "no file was committed" in message
    assert "the repository exists" in message and "run the same command again" in message


def test_card_counts_repeated_training_rows():
    from medsft.publishing.card import _data_section

    source = {
        "read": 1000, "splits": {"train": 744, "validation": 50}, "dropped": {},
        "repeated": {"no questions repeated to balance labels": 96, "maybe questions repeated to balance labels": 198},
    }  # fmt: skip
    run = SimpleNamespace(manifest={"dataset": {"sources": [source], "licenses": ["mit"]}})
    text = _data_section([{"type": "pubmedqa", "name": "qiaojin/PubMedQA", "hub_id": "qiaojin/PubMedQA"}], run)
    assert "| 744 (incl. 294 copies) / 50 |" in text
    assert "96 no questions repeated to balance labels, 198 maybe questions repeated" in text
    source.pop("repeated")
    assert "copies" not in _data_section([{"type": "pubmedqa", "name": "x", "hub_id": None}], run)


def test_a_newer_report_that_stopped_before_the_run_is_passed_over(evaluated_run, tmp_path, token, caplog):
    """An evaluation stopped before reaching this run (or still running) leaves a newer eval-2/report.json without
    its results: the card keeps the numbers of the report that scored it."""
    import shutil

    run = tmp_path / "pubmedqa_lora"
    shutil.copytree(evaluated_run, run)
    stopped = json.loads((run / "eval/report.json").read_text())
    del stopped["results"]["pubmedqa_lora"]
    stopped["incomplete"] = {"model": "pubmedqa_lora", "error": "not scored yet"}
    (run / "eval-2").mkdir()
    (run / "eval-2/report.json").write_text(json.dumps(stopped))
    result = _dry_run(run, tmp_path / "out")
    card = ModelCard.load(tmp_path / "out/README.md")
    ours = json.loads((run / "eval/report.json").read_text())["results"]["pubmedqa_lora"]
    metrics = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert metrics[("qiaojin/PubMedQA", "accuracy")] == round(ours["pubmedqa"]["accuracy"], 4)
    assert "eval/report.json" in result["files"]
    # given explicitly, the stopped report is used, and the log says why the card has no numbers
    with caplog.at_level(logging.WARNING, logger="medsft"):
        _dry_run(run, tmp_path / "out2", "--eval_report", str(run / "eval-2/report.json"))
    assert "stopped before scoring this run" in caplog.text
    assert not ModelCard.load(tmp_path / "out2/README.md").data.eval_results


def test_a_report_of_other_weights_or_another_strength_is_refused(evaluated_run, tmp_path, token, caplog):
    """The card's numbers are the published files': a run re-saved at another strength (same weights, another
    lora_alpha) or retrained since its report is refused before anything is written; a report from before the
    fingerprint covered adapter_config.json is recognised by its weights."""
    import shutil

    from medsft.modeling.source import weights_fingerprint

    run = tmp_path / "pubmedqa_lora"
    shutil.copytree(evaluated_run, run)
    config = json.loads((run / "adapter_config.json").read_text())
    (run / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": config["lora_alpha"] / 2}))
    with pytest.raises(MedsftError, match="scored pubmedqa_lora with other weights or another adapter_config.json"):
        _dry_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    (run / "adapter_config.json").write_text(json.dumps(config))
    report = json.loads((run / "eval/report.json").read_text())
    report["adapters"]["pubmedqa_lora"]["fingerprint"] = weights_fingerprint(run, adapter_config=False)
    (run / "eval/report.json").write_text(json.dumps(report))
    with caplog.at_level(logging.WARNING, logger="medsft"):
        _dry_run(run, tmp_path / "old")
    assert "fingerprinted pubmedqa_lora's weights alone" in caplog.text
    assert ModelCard.load(tmp_path / "old/README.md").data.eval_results


def test_full_disk_while_building_the_folder_is_one_error(evaluated_run, tmp_path, token, monkeypatch):
    with small_disk(tmp_path / "small", "60k") as disk:
        with pytest.raises(MedsftError) as dry:
            _dry_run(evaluated_run, disk / "card")
        message = str(dry.value)
        assert f"writing to {disk / 'card'} failed: " in message and "No space left on device" in message
        assert f"empty {disk / 'card'} and run the same command again" in message

        # the upload builds its folder in a temporary directory: full, nothing is uploaded
        monkeypatch.setattr(HfApi, "whoami", lambda self, token=None: {"name": "someone"})
        monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("nothing may be uploaded"))
        monkeypatch.setattr("tempfile.tempdir", str(disk))
        with pytest.raises(MedsftError) as upload:
            push_main([str(evaluated_run), "--repo_id", "my-org/tiny", "--base_model", BASE])
        message = str(upload.value)
        assert f"writing to {disk} failed: " in message and "set TMPDIR to a disk with room" in message
        assert "nothing was published" in message
