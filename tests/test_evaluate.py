"""``python -m medsft.evaluate``: perplexity and PubMedQA scoring against hand computations and
lm-evaluation-harness, the report files, and the errors a user can hit."""

from __future__ import annotations

import io
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from medsft.core.errors import MedsftError
from medsft.data.pubmedqa import load_pubmedqa
from medsft.evaluate import main as evaluate_main
from medsft.evaluation import task_multiple_choice as mc
from medsft.evaluation.loglikelihood import score_choices
from medsft.evaluation.metrics import LABELS, yes_no_auc
from medsft.evaluation.schema import EvalReport
from medsft.evaluation.task_perplexity import evaluate_perplexity, prepare
from medsft.evaluation.task_pubmedqa import build_requests, parse_answer, predict
from tests.conftest import PUBMEDQA_DIR, WIKIDOC_JSON, train_quickly

ROOT = Path(__file__).resolve().parent.parent


def _load(path: str):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def pubmedqa_test_questions() -> list[dict]:
    return list(load_pubmedqa(str(PUBMEDQA_DIR))[0]["test"])


def _quiet(argv: list[str]) -> dict:
    return evaluate_main(argv, console=Console(file=io.StringIO()))


# ---------------------------------------------------------------- perplexity


def test_perplexity_equals_hand_computed_nll(tiny_gpt2):
    model, tokenizer = _load(tiny_gpt2)
    examples = [{"text": "Asthma is a chronic disease of the airways."}, {"text": "Fever, cough and fatigue."}]
    result = evaluate_perplexity(model, tokenizer, prepare(examples, tokenizer), 256, 128, batch_size=2)
    nll, count, nbytes = 0.0, 0, 0
    for example in examples:
        ids = tokenizer(example["text"] + tokenizer.eos_token, return_tensors="pt")["input_ids"]  # TRL adds EOS
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
        nll -= logp.gather(1, ids[0, 1:, None]).sum().item()
        count += ids.shape[1] - 1
        nbytes += len(tokenizer.decode(ids[0, 1:], skip_special_tokens=True).encode())
    assert result["tokens"] == count and result["bytes"] == nbytes
    assert result["mean_nll"] == pytest.approx(nll / count, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nll / math.log(2) / nbytes, rel=1e-5)


def test_sliding_window_scores_every_token_once_like_the_transformers_guide(tiny_llama):
    model, tokenizer = _load(tiny_llama)
    text = " ".join(json.loads(WIKIDOC_JSON.read_text())[0]["output"].split()[:150])
    texts = prepare([{"text": text}], tokenizer)
    ids = torch.tensor([texts[0].ids])
    max_length, stride = 64, 24
    result = evaluate_perplexity(model, tokenizer, texts, max_length, stride, batch_size=3)
    assert ids.shape[1] > 3 * max_length and result["windows"] > 3
    # transformers' perplexity guide, counting the tokens that carry loss after the label shift
    nll, count, previous_end = 0.0, 0, 0
    for begin in range(0, ids.shape[1], stride):
        end = min(begin + max_length, ids.shape[1])
        window = ids[:, begin:end]
        labels = window.clone()
        labels[:, : -(end - previous_end)] = -100
        with torch.no_grad():
            loss = model(window, labels=labels).loss.item()
        scored = (labels[:, 1:] != -100).sum().item()
        nll, count, previous_end = nll + loss * scored, count + scored, end
        if end == ids.shape[1]:
            break
    assert result["tokens"] == count == ids.shape[1] - 1
    assert result["mean_nll"] == pytest.approx(nll / count, rel=1e-5)


def test_chat_perplexity_scores_only_the_answer(tiny_gpt2):
    model, tokenizer = _load(tiny_gpt2)
    from medsft.modeling.loading import DEFAULT_CHAT_TEMPLATE

    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    example = {
        "prompt": [{"role": "user", "content": "What is asthma?"}],
        "completion": [{"role": "assistant", "content": "A chronic airway disease."}],
    }
    (text,) = prepare([example], tokenizer)
    # the assistant turn as the template renders it: the answer, the EOS that ends it, the blank line after it
    scored = [token for token, s in zip(text.ids, text.scored) if s]
    assert tokenizer.decode(scored) == "A chronic airway disease.<|endoftext|>\n\n"
    result = evaluate_perplexity(model, tokenizer, [text], 256, 128, batch_size=1)
    assert result["tokens"] == len(scored) and result["bytes"] == len(b"A chronic airway disease.\n\n")


# ---------------------------------------------------------------- PubMedQA


def test_loglikelihood_agrees_with_lm_evaluation_harness(tiny_gpt2, pubmedqa_test_questions):
    pytest.importorskip("lm_eval")
    from bench.lm_eval_reference import harness_loglikelihoods

    model, tokenizer = _load(tiny_gpt2)
    rows = pubmedqa_test_questions[:16]
    predicted, ours = predict(model, tokenizer, rows, "loglikelihood", 512, batch_size=4)
    theirs, their_accuracy = harness_loglikelihoods(model, tokenizer, rows, batch_size=4)
    assert torch.allclose(torch.tensor(ours), torch.tensor(theirs), atol=1e-4)
    assert predicted == [LABELS[max(range(3), key=s.__getitem__)] for s in theirs]
    accuracy = sum(p == r["final_decision"] for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy == pytest.approx(their_accuracy)


def test_calibration_ceiling_finds_the_offsets_a_shifted_prior_needs():
    from bench.pubmedqa_ceiling import ceiling

    rng = np.random.default_rng(0)
    truth = ["yes"] * 30 + ["no"] * 20 + ["maybe"] * 10
    # perfectly ranked but with a prior pushing everything to "yes": argmax says yes everywhere (accuracy 0.5)
    margin = {"yes": 3.0, "no": 1.0, "maybe": 2.0}
    scores = np.array([[0.0, -margin[t] + rng.uniform(-0.4, 0.4), -9.0 + (t == "maybe") * 5.0] for t in truth])
    assert [LABELS[i] for i in scores.argmax(axis=1)] == ["yes"] * 60
    best = ceiling(truth, scores)
    assert best["best_accuracy"]["accuracy"] == 1.0 and best["best_macro_f1"]["macro_f1"] == 1.0
    # "no" must gain more than the "no" questions' margins (about 1) and less than the "yes" ones' (about 3)
    assert 0.6 < best["best_accuracy"]["offset_no"] < 3.4
    # scores that rank nothing (yes/no margins independent of the truth): no offset gets far beyond the majority
    noise = rng.normal(size=(600, 3))
    random_truth = list(rng.choice(["yes", "no"], size=600, p=[0.55, 0.45]))
    assert ceiling(random_truth, noise)["best_accuracy"]["accuracy"] < 0.62


def test_ceiling_script_applies_validation_offsets_to_the_test_reports(tiny_gpt2, tmp_path):
    """bench/pubmedqa_ceiling.py end to end, on real reports: offsets tuned on validation, scored on test."""
    import subprocess

    reports = {}
    for split in ("validation", "test"):
        args = _eval_args(tiny_gpt2, "--tasks", "pubmedqa", "--pubmedqa_split", split, "--limit", "20")
        reports[split] = _quiet([*args, "--output_dir", str(tmp_path / split)])
    out = tmp_path / "ceiling.json"
    cmd = [sys.executable, str(ROOT / "bench/pubmedqa_ceiling.py"), "--pubmedqa", str(PUBMEDQA_DIR),
           "--out", str(out), str(tmp_path / "test/report.json"),
           "--validation_reports", str(tmp_path / "validation/report.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = json.loads(out.read_text())["results"]
    assert row["model"] == "base" and row["questions"] == 20
    assert row["accuracy"] == reports["test"]["results"]["base"]["pubmedqa"]["accuracy"]
    tuned = row["validation_tuned"]
    assert tuned["on_validation"]["questions"] == 20
    # the validation offsets, applied by hand to the test report's choice scores, give the reported test numbers
    outputs = reports["test"]["pubmedqa_outputs"]["base"]
    truth_by_pmid = {str(r["pmid"]): r["final_decision"] for r in load_pubmedqa(str(PUBMEDQA_DIR))[0]["test"]}
    maybe = tuned["on_validation"]["offset_maybe"]
    offsets = np.array([0.0, tuned["on_validation"]["offset_no"], -np.inf if maybe is None else maybe])
    truth = [truth_by_pmid[pmid] for pmid in outputs]
    preds = [LABELS[int(np.argmax(np.array(s) + offsets))] for s in outputs.values()]
    hits = [t == p for t, p in zip(truth, preds)]
    assert tuned["test"]["accuracy"] == pytest.approx(sum(hits) / 20)
    always_yes = sum(t == "yes" for t in truth) / 20
    assert tuned["test"]["vs_always_yes"]["accuracy_difference"] == pytest.approx(sum(hits) / 20 - always_yes)
    assert row["best_accuracy"]["accuracy"] >= max(row["accuracy"], tuned["test"]["accuracy"])
    # the same base in two validation reports is tuned once; a base that scores differently is an error, not a pick
    # (in-process: the command line was run above)
    from bench.pubmedqa_ceiling import main as ceiling_main

    other = json.loads((tmp_path / "validation/report.json").read_text())
    first = next(iter(other["pubmedqa_outputs"]["base"]))
    other["pubmedqa_outputs"]["base"][first] = [0.0, -50.0, -50.0]
    (tmp_path / "other.json").write_text(json.dumps(other))
    ceiling_main([*cmd[2:], str(tmp_path / "validation/report.json")])
    assert json.loads(out.read_text())["results"] == [row]
    with pytest.raises(SystemExit, match="scores differently"):
        ceiling_main([*cmd[2:], str(tmp_path / "other.json")])


@pytest.mark.parametrize("mode", ["loglikelihood", "chat"])
def test_one_forward_per_question_equals_one_per_choice(tiny_llama, pubmedqa_test_questions, mode):
    model, tokenizer = _load(tiny_llama)
    from medsft.modeling.loading import DEFAULT_CHAT_TEMPLATE

    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    requests = build_requests(pubmedqa_test_questions[:10], tokenizer, mode)
    # " yes"/" no"/" maybe" are single GPT-2 tokens; after the chat template's newline "maybe" is two
    assert all(len(c) == 1 for r in requests for c in r.choices) == (mode == "loglikelihood")
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    fast = score_choices(model, tokenizer, requests, 512, batch_size=4)
    hook.remove()
    assert len(calls) == 3  # 10 questions in batches of 4: one forward per batch, also with the 2-token "maybe"
    slow = score_choices(model, tokenizer, requests, 512, batch_size=1, single_forward=False)
    assert torch.allclose(torch.tensor(fast), torch.tensor(slow), atol=1e-4)
    # batching by length with padding changes nothing either
    assert torch.allclose(
        torch.tensor(fast), torch.tensor(score_choices(model, tokenizer, requests, 512, 1)), atol=1e-4
    )
    # left truncation (contexts are longer than 64 tokens) cuts the same tokens on both paths
    short_fast = score_choices(model, tokenizer, requests, 64, batch_size=4)
    short_slow = score_choices(model, tokenizer, requests, 64, batch_size=1, single_forward=False)
    assert torch.allclose(torch.tensor(short_fast), torch.tensor(short_slow), atol=1e-4)
    assert not torch.allclose(torch.tensor(short_fast), torch.tensor(fast), atol=1e-4)  # it did truncate


@pytest.mark.parametrize("split", [1, 2], ids=["one-multi-token-choice", "two-multi-token-choices"])
def test_multi_token_choices_are_summed(tiny_gpt2, pubmedqa_test_questions, split):
    """A tokenizer that splits the answers: every choice token's log-probability is summed, whether the choices share
    one forward (one of them split) or need one forward each (two of them split)."""
    model, tokenizer = _load(tiny_gpt2)
    requests = build_requests(pubmedqa_test_questions[:3], tokenizer, "loglikelihood")
    requests[0].choices[2] = tokenizer.encode(" may") + tokenizer.encode("be")  # force 2-token choices
    if split == 2:
        requests[0].choices[1] = tokenizer.encode(" n") + tokenizer.encode("o")
    scores = score_choices(model, tokenizer, requests, 512, batch_size=2)
    n = len(requests[0].context)
    for c in (1, 2):
        ids = torch.tensor([requests[0].context + requests[0].choices[c]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        expected = sum(logp[n - 1 + k, ids[0, n + k]] for k in range(ids.shape[1] - n))
        assert scores[0][c] == pytest.approx(expected.item(), abs=1e-4)


def test_parse_generated_answers():
    assert parse_answer("Yes, the study shows") == "yes"
    assert parse_answer("The answer is: no.") == "no"
    assert parse_answer("Maybe; evidence is mixed") == "maybe"
    assert parse_answer("nobody knows, yes") == "yes"  # whole words only
    assert parse_answer("It depends on the cohort") == "unparsable"


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def adapter_run(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pubmedqa") / "pubmedqa_lora"
    return train_quickly(
        "pubmedqa_lora",
        tiny_gpt2,
        out,
        "--dataset_name",
        str(PUBMEDQA_DIR),
        "--max_steps",
        "3",
        "--max_length",
        "1024",
    )


def _eval_args(model: str, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", model, "--perplexity_dataset", str(WIKIDOC_JSON),
        "--pubmedqa_dataset", str(PUBMEDQA_DIR), "--limit", "12", "--batch_size", "4", "--bootstrap_samples", "200",
        *extra,
    ]  # fmt: skip


def test_base_and_adapter_in_one_report(tiny_gpt2, adapter_run, pubmedqa_test_questions):
    out = io.StringIO()
    report = evaluate_main(_eval_args(tiny_gpt2, "--adapters", str(adapter_run)), console=Console(file=out, width=150))
    report_dir = Path(report["output_dir"])
    assert report_dir == adapter_run / "eval"
    saved = json.loads((report_dir / "report.json").read_text())
    assert list(saved["results"]) == ["base", "pubmedqa_lora"]
    # the typed schema reads back exactly what was written (evaluate, the card and bench/ all go through it)
    typed = EvalReport.from_dict(saved)
    assert typed.to_dict() == saved and typed.label_of("pubmedqa_lora") == "pubmedqa_lora"
    assert (
        typed.results["pubmedqa_lora"].pubmedqa.vs_base.fixed
        == saved["results"]["pubmedqa_lora"]["pubmedqa"]["vs_base"]["fixed"]
    )
    for name in ("base", "pubmedqa_lora"):
        result = saved["results"][name]
        assert result["perplexity"]["texts"] == 12 and result["pubmedqa"]["n"] == 12
        predictions = json.loads((report_dir / f"pubmedqa_predictions_{name}.json").read_text())
        assert list(predictions) == [r["pmid"] for r in pubmedqa_test_questions[:12]]
        assert set(predictions.values()) <= set(LABELS)
        assert (report_dir / f"pubmedqa_confusion_{name}.png").stat().st_size > 1000
    assert (report_dir / "comparison.png").is_file()
    # the adapter changed the model, and the base column is the plain base model
    assert saved["results"]["base"]["perplexity"] != saved["results"]["pubmedqa_lora"]["perplexity"]
    model, tokenizer = _load(tiny_gpt2)
    predicted, _ = predict(model, tokenizer, pubmedqa_test_questions[:12], "loglikelihood", 512, batch_size=4)
    assert list(json.loads((report_dir / "pubmedqa_predictions_base.json").read_text()).values()) == predicted
    # the adapter is compared with the base on the same questions
    paired = saved["results"]["pubmedqa_lora"]["pubmedqa"]["vs_base"]
    base_hits = saved["results"]["base"]["pubmedqa"]["accuracy"] * 12
    assert round(base_hits) + paired["fixed"] - paired["broken"] == round(
        saved["results"]["pubmedqa_lora"]["pubmedqa"]["accuracy"] * 12
    )
    assert "vs_base" not in saved["results"]["base"]["pubmedqa"] and "fixed/broken vs base" in out.getvalue()
    # the ranking AUC is computed from the saved choice scores of the questions answered yes or no
    truth = [r["final_decision"] for r in pubmedqa_test_questions[:12]]
    for name in ("base", "pubmedqa_lora"):
        scores = [saved["pubmedqa_outputs"][name][r["pmid"]] for r in pubmedqa_test_questions[:12]]
        assert saved["results"][name]["pubmedqa"]["yes_no_auc"] == pytest.approx(yes_no_auc(truth, scores))
    assert "yes-vs-no ranking AUC" in out.getvalue()
    # the console names the models, how the base was held, and what each task scored (a subset marked as one)
    printed, base = out.getvalue(), Path(tiny_gpt2).name
    assert f"medsft evaluation: {base} (float32) vs pubmedqa_lora" in printed
    assert "PubMedQA: pubmedqa test, first 12 of 500 questions" in printed
    assert f"base ({base}): PubMedQA confusion" in printed and "pubmedqa_lora: PubMedQA confusion" in printed
    assert saved["model"]["precision"] == "float32" and saved["model"]["load_in_4bit"] is False
    # never overwritten: the default directory gets a sibling, an explicit one is refused
    again = _quiet(_eval_args(tiny_gpt2, "--adapters", str(adapter_run), "--tasks", "pubmedqa"))
    assert Path(again["output_dir"]) == adapter_run / "eval-2"
    with pytest.raises(MedsftError, match="already holds an evaluation report"):
        _quiet(_eval_args(tiny_gpt2, "--output_dir", str(report_dir)))
    assert json.loads((report_dir / "report.json").read_text()) == saved


def test_generate_mode_counts_unparsable_answers(tiny_gpt2, tmp_path):
    report = _quiet(
        _eval_args(tiny_gpt2, "--tasks", "pubmedqa", "--pubmedqa_mode", "generate", "--max_new_tokens", "4",
                   "--output_dir", str(tmp_path / "gen"))
    )  # fmt: skip
    scores = report["results"]["base"]["pubmedqa"]
    distribution = scores["prediction_distribution"]
    assert sum(distribution.values()) == 12 and scores["unparsable"] == distribution.get("unparsable", 0)
    assert "yes_no_auc" not in scores  # generated text has no choice scores to rank
    generated = report["pubmedqa_outputs"]["base"]
    assert all(isinstance(text, str) for text in generated.values())


def test_eval_recipe_parses_and_runs(tiny_gpt2, tmp_path):
    report = _quiet(
        [str(ROOT / "recipes/eval_medical.yaml"), *_eval_args(tiny_gpt2, "--output_dir", str(tmp_path / "r"))]
    )
    assert set(report["results"]["base"]) == {"perplexity", "pubmedqa"}


def test_leaderboard_recipe_names_the_suite():
    from medsft.configs import EvalArguments, parse_args
    from medsft.configs.commands import EvalModelArguments

    args, _, _ = parse_args((EvalArguments, EvalModelArguments), [str(ROOT / "recipes/eval_leaderboard.yaml")])
    assert args.task_list == ["pubmedqa", "medqa", "medmcqa", "mmlu"] and args.num_fewshot == 0
    assert args.subject_list == ("anatomy", "clinical_knowledge", "college_biology", "college_medicine",
                                 "medical_genetics", "professional_medicine")  # fmt: skip


def test_checkpoint_of_a_gguf_run_is_matched_to_its_base(tmp_path):
    """A checkpoint has no run manifest of its own (and an unfinished run none at all): its adapter_config names
    the dequantized GGUF cache directory, whose name carries the file's hash."""
    from medsft.modeling.adapters import check_adapter_base, read_adapter
    from medsft.modeling.source import ModelSource

    sha = "b179c9523d0e6a0f" + "0" * 48
    checkpoint = tmp_path / "run" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    cached = f"/root/.cache/medsft/gguf/SmolLM2-135M-Instruct.Q4_1-{sha[:16]}"
    (checkpoint / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": cached}))
    gguf = ModelSource(
        f"/elsewhere/gguf/SmolLM2-135M-Instruct.Q4_1-{sha[:16]}", "SmolLM2-135M-Instruct.Q4_1.gguf", sha
    )
    adapter = read_adapter(str(checkpoint))
    assert adapter.name == "run-checkpoint-10" and adapter.base_gguf_sha256 is None
    assert adapter.base_name == Path(cached).name  # what goes into reports: no local absolute path
    check_adapter_base(adapter, gguf)  # same file hash, another cache location: accepted
    other = ModelSource(
        "/c/gguf/SmolLM2-135M-Instruct.Q8_0-0123456789abcdef", "SmolLM2-135M-Instruct.Q8_0.gguf", "01" * 32
    )
    with pytest.raises(MedsftError, match="trained on base model"):
        check_adapter_base(adapter, other)
    # once the run has finished, its manifest (one level up) is what counts
    manifest = {"model": {"name": gguf.name, "gguf_sha256": sha, "load_in_4bit": True}}
    (tmp_path / "run" / "run_manifest.json").write_text(json.dumps(manifest))
    adapter = read_adapter(str(checkpoint))
    assert (adapter.base_gguf_sha256, adapter.load_in_4bit) == (sha, True)
    check_adapter_base(adapter, gguf)
    with pytest.raises(MedsftError, match="trained on base model"):
        check_adapter_base(adapter, other)


def test_bad_input_is_a_one_line_error(tiny_gpt2, tiny_llama, adapter_run, tmp_path):
    with pytest.raises(MedsftError, match="unknown task.*bleu.*choose from perplexity, pubmedqa"):
        _quiet(_eval_args(tiny_gpt2, "--tasks", "pubmedqa,bleu"))
    with pytest.raises(
        MedsftError, match=rf"trained on base model '{Path(tiny_gpt2).name}'.*'{Path(tiny_llama).name}'"
    ):
        _quiet(_eval_args(tiny_llama, "--adapters", str(adapter_run)))
    with pytest.raises(MedsftError, match="adapter not found: .*nothing-here"):
        _quiet(_eval_args(tiny_gpt2, "--adapters", str(tmp_path / "nothing-here")))
    with pytest.raises(MedsftError, match="holds a full model with no medsft run record.*--model_name_or_path"):
        _quiet(_eval_args(tiny_gpt2, "--adapters", tiny_llama))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(MedsftError, match="no texts"):
        _quiet(_eval_args(tiny_gpt2, "--perplexity_dataset", str(tmp_path / "empty.jsonl")))
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(MedsftError, match="bad.jsonl: row 1 has no 'text'"):
        _quiet(_eval_args(tiny_gpt2, "--perplexity_dataset", str(tmp_path / "bad.jsonl")))
    with pytest.raises(MedsftError, match="perplexity data file not found"):
        _quiet(_eval_args(tiny_gpt2, "--perplexity_dataset", str(tmp_path / "missing.jsonl")))
    with pytest.raises(MedsftError, match="--limit must be a positive"):
        _quiet(_eval_args(tiny_gpt2, "--limit", "0"))


def test_command_line_error_is_one_line(tiny_gpt2):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "medsft.evaluate", "--model_name_or_path", tiny_gpt2, "--tasks", "bleu"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("medsft.evaluate: error: unknown task(s) bleu")
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- MedQA, MedMCQA, MMLU


def test_a_merged_adapter_scores_as_the_unmerged_one(tiny_gpt2, adapter_run, tmp_path, caplog):
    """--merge_adapters (default): the adapter merged into the float32 base gives the unmerged adapter's answers and
    log-likelihoods to float32 rounding; never merged into a 4-bit or 16-bit base."""
    from medsft.configs.training import MedModelConfig
    from medsft.evaluation.runner import mergeable
    from tests.conftest import MEDQA_DIR

    caplog.set_level(logging.INFO)
    reports = {}
    for merge in ("true", "false"):
        argv = _eval_args(tiny_gpt2, "--adapters", str(adapter_run), "--tasks", "perplexity,pubmedqa,medqa",
                          "--medqa_dataset", str(MEDQA_DIR), "--limit", "6", "--merge_adapters", merge,
                          "--output_dir", str(tmp_path / merge))  # fmt: skip
        _quiet(argv)
        reports[merge] = json.loads((tmp_path / merge / "report.json").read_text())
    merged, unmerged = reports["true"], reports["false"]
    assert merged["settings"]["adapters_merged"] is True and unmerged["settings"]["adapters_merged"] is False
    assert "pubmedqa_lora merged into the float32 base for scoring" in caplog.text
    for task in ("pubmedqa", "medqa"):
        for name in ("base", "pubmedqa_lora"):
            m = json.loads((tmp_path / f"true/{task}_predictions_{name}.json").read_text())
            assert m == json.loads((tmp_path / f"false/{task}_predictions_{name}.json").read_text())
        # per question, each choice's log-likelihood
        a = merged["pubmedqa_outputs"] if task == "pubmedqa" else merged["choice_outputs"][task]
        b = unmerged["pubmedqa_outputs"] if task == "pubmedqa" else unmerged["choice_outputs"][task]
        assert a["base"] == b["base"]  # the base is never touched
        a, b = a["pubmedqa_lora"], b["pubmedqa_lora"]
        assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-4, rtol=1e-5) for k in a)
    ppl = merged["results"]["pubmedqa_lora"]["perplexity"]["perplexity"]
    assert ppl == pytest.approx(unmerged["results"]["pubmedqa_lora"]["perplexity"]["perplexity"], rel=1e-5)

    float32 = AutoModelForCausalLM.from_pretrained(tiny_gpt2, dtype=torch.float32)
    assert mergeable(float32, MedModelConfig(model_name_or_path=tiny_gpt2))
    assert not mergeable(float32, MedModelConfig(model_name_or_path=tiny_gpt2, load_in_4bit=True, use_peft=True))
    assert not mergeable(float32.to(torch.bfloat16), MedModelConfig(model_name_or_path=tiny_gpt2))


def test_a_full_fine_tune_is_paired_with_its_base(tiny_gpt2, tiny_llama, adapter_run, tmp_path, caplog):
    """A full fine-tune's run directory (use_peft: false) among --adapters: scored exactly as when it is evaluated
    alone as --model_name_or_path, and paired with the base on the same questions, beside a LoRA adapter."""
    import shutil

    full = train_quickly(
        "pubmedqa_lora", tiny_gpt2, tmp_path / "pubmedqa_full", "--dataset_name", str(PUBMEDQA_DIR),
        "--max_steps", "2", "--max_length", "1024", "--use_peft", "false", "--learning_rate", "1e-3",
        "--adapter_strength", "0.5",
    )  # fmt: skip
    # the LoRA recipe's lora_* keys (and a strength, which scales only an adapter) are not silently dropped: one line
    # says they were not used
    assert (
        "adapter_strength, lora_alpha, lora_dropout, lora_r, lora_target_modules set but not used: use_peft is false"
        in caplog.text
    )
    argv = _eval_args(tiny_gpt2, "--tasks", "pubmedqa", "--limit", "8", "--adapters", str(full), str(adapter_run))
    together = _quiet([*argv, "--output_dir", str(tmp_path / "together")])
    assert list(together["results"]) == ["base", "pubmedqa_full", "pubmedqa_lora"]
    assert together["adapters"]["pubmedqa_full"]["full_model"] is True
    assert together["adapters"]["pubmedqa_lora"]["full_model"] is False
    alone = _quiet(_eval_args(str(full), "--tasks", "pubmedqa", "--limit", "8", "--output_dir", str(tmp_path / "a")))
    scores, own = together["pubmedqa_outputs"]["pubmedqa_full"], alone["pubmedqa_outputs"]["base"]
    assert scores.keys() == own.keys() and all(np.allclose(scores[k], own[k], atol=1e-5) for k in scores)
    assert scores != together["pubmedqa_outputs"]["base"]  # its own weights, not the base's
    paired = together["results"]["pubmedqa_full"]["pubmedqa"]["vs_base"]
    hits = {name: round(together["results"][name]["pubmedqa"]["accuracy"] * 8) for name in ("base", "pubmedqa_full")}
    assert hits["base"] + paired["fixed"] - paired["broken"] == hits["pubmedqa_full"]

    # refused before anything is scored: another base, or a vocabulary the base's tokenizer does not share
    with pytest.raises(MedsftError, match=f"trained on base model '{Path(tiny_gpt2).name}'"):
        _quiet(_eval_args(tiny_llama, "--tasks", "pubmedqa", "--adapters", str(full)))
    grown = tmp_path / "grown"
    shutil.copytree(full, grown)
    tokenizer = AutoTokenizer.from_pretrained(grown)
    tokenizer.add_tokens(["<new_token>"])
    tokenizer.save_pretrained(grown)
    with pytest.raises(MedsftError, match="another vocabulary than .*evaluate it alone"):
        _quiet(_eval_args(tiny_gpt2, "--tasks", "pubmedqa", "--adapters", str(grown)))
    assert not (grown / "eval").exists()


def test_medical_suite_base_and_adapter_in_one_report(tiny_gpt2, adapter_run, tmp_path):
    from tests.conftest import MEDQA_DIR, MMLU_DIR
    from tests.test_data_medmcqa import record, write_release

    medmcqa_dir = write_release(tmp_path / "medmcqa", [record(i, cop=1 + i % 4) for i in range(5)])
    loaders = {"medqa": str(MEDQA_DIR), "medmcqa": str(medmcqa_dir), "mmlu": str(MMLU_DIR)}

    def truth_of(task: str, ids: list[str]) -> list[int]:
        benchmark = mc.load_benchmark(task, loaders[task], subjects=("anatomy", "college_medicine"))
        by_id = {r["id"]: r["answer"] for r in benchmark.rows}
        return [by_id[i] for i in ids]

    out = io.StringIO()
    argv = [
        "--model_name_or_path", tiny_gpt2, "--adapters", str(adapter_run), "--tasks", "medqa,medmcqa,mmlu",
        "--medqa_dataset", str(MEDQA_DIR), "--medmcqa_dataset", str(medmcqa_dir), "--mmlu_dataset", str(MMLU_DIR),
        "--mmlu_subjects", "anatomy,college_medicine", "--limit", "4", "--batch_size", "4",
        "--bootstrap_samples", "200", "--output_dir", str(tmp_path / "eval"),
    ]  # fmt: skip
    report = evaluate_main(argv, console=Console(file=out, width=200))
    saved = json.loads((tmp_path / "eval/report.json").read_text())
    assert EvalReport.from_dict(saved).to_dict() == saved
    settings = saved["settings"]
    assert settings["medqa"]["questions"] == 4 and settings["medqa"]["questions_in_split"] == 1273
    assert settings["mmlu"]["subjects"] == ["anatomy", "college_medicine"] and settings["mmlu"]["questions"] == 8
    assert (
        settings["medmcqa"]["harness_task"] == "medmcqa"
        and settings["medmcqa"]["hub_id"] == "openlifescienceai/medmcqa"
    )
    for task, ids in (("medqa", ["0", "1", "2", "3"]), ("medmcqa", ["0", "1", "2", "3"]),
                      ("mmlu", [f"{s}/{i}" for s in ("anatomy", "college_medicine") for i in range(4)])):  # fmt: skip
        for name in ("base", "pubmedqa_lora"):
            predictions = json.loads((tmp_path / f"eval/{task}_predictions_{name}.json").read_text())
            assert list(predictions) == ids and set(predictions.values()) <= set("ABCD")
            # the saved letter scores give the predictions: the report can be rescored without the model
            scores = saved["choice_outputs"][task][name]
            assert [p for p in predictions.values()] == ["ABCD"[max(range(4), key=scores[i].__getitem__)] for i in ids]
        base, adapter = saved["results"]["base"][task], saved["results"]["pubmedqa_lora"][task]
        n = base["n"]
        assert round(base["accuracy"] * n) + adapter["vs_base"]["fixed"] - adapter["vs_base"]["broken"] == round(
            adapter["accuracy"] * n
        )
        assert "vs_base" not in base and sum(base["prediction_distribution"].values()) == n
        # the letter prior removed: each letter's mean score over the task's questions (per MMLU subject) subtracted
        answers = np.array(truth_of(task, ids))
        groups = np.array([i.split("/")[0] if task == "mmlu" else "" for i in ids])
        for name, result in (("base", base), ("pubmedqa_lora", adapter)):
            scores = np.array([saved["choice_outputs"][task][name][i] for i in ids])
            for group in set(groups):
                scores[groups == group] -= scores[groups == group].mean(axis=0)
            assert result["centred_accuracy"] == (scores.argmax(axis=1) == answers).mean()
            assert 0 <= result["prior_chance"] <= 1
            assert result["letter_auc"] is None or 0 <= result["letter_auc"] <= 1
        paired = adapter["centred_vs_base"]
        assert round(base["centred_accuracy"] * n) + paired["fixed"] - paired["broken"] == round(
            adapter["centred_accuracy"] * n
        )
    assert set(saved["results"]["base"]["mmlu"]["subjects"]) == {"anatomy", "college_medicine"}
    text = out.getvalue()
    assert "MedQA accuracy" in text and "MMLU medical accuracy (micro)" in text and "college_medicine" in text
    assert "letter prior removed" in text and "letter-prior chance" in text
    assert (tmp_path / "eval/comparison.png").stat().st_size > 1000
    assert report["settings"]["tasks"] == ["medqa", "medmcqa", "mmlu"]

    # the model card: one model-index result per task, subsets marked
    from medsft.publishing.card_evaluation import eval_results, evaluation_section

    typed = EvalReport.from_dict(saved)
    results = eval_results(typed, "pubmedqa_lora")
    assert [r.dataset_type for r in results] == [
        "GBaker/MedQA-USMLE-4-options", "openlifescienceai/medmcqa", "cais/mmlu",
    ]  # fmt: skip
    assert all("subset" in r.metric_name for r in results) and results[0].dataset_split == "test[:4]"
    section = evaluation_section(typed, "pubmedqa_lora")
    assert "MMLU anatomy" in section and "**a subset**" in section and "medqa_4options" in section
    assert section.count("| accuracy with the answer-letter prior removed |") == 3 and "using no answers" in section


def test_letter_tasks_score_the_split_asked_for_and_say_so(tiny_gpt2, tmp_path):
    """--mmlu_split / --medqa_split: another split than the leaderboard's test (to choose between runs without the
    test questions), named in the report and the model card; refused where it cannot be scored honestly."""
    from medsft.publishing.card_evaluation import eval_results, evaluation_section
    from tests.conftest import MEDQA_DIR, MMLU_DIR

    argv = [
        "--model_name_or_path", tiny_gpt2, "--tasks", "mmlu", "--mmlu_dataset", str(MMLU_DIR), "--mmlu_split", "dev",
        "--mmlu_subjects", "anatomy,college_medicine", "--batch_size", "4", "--bootstrap_samples", "50",
        "--output_dir", str(tmp_path / "eval"),
    ]  # fmt: skip
    _quiet(argv)
    saved = json.loads((tmp_path / "eval/report.json").read_text())
    mmlu_settings = saved["settings"]["mmlu"]
    assert mmlu_settings["split"] == "dev" and mmlu_settings["questions"] == mmlu_settings["questions_in_split"] == 10
    predictions = json.loads((tmp_path / "eval/mmlu_predictions_base.json").read_text())
    assert list(predictions) == [f"{s}/{i}" for s in ("anatomy", "college_medicine") for i in range(5)]
    typed = EvalReport.from_dict(saved)
    assert [r.dataset_split for r in eval_results(typed, "base")] == ["dev"]
    assert "questions of the `dev` split" in evaluation_section(typed, "base")

    # the dev rows are MMLU's few-shot exemplars: scoring them few-shot would show each its own answer
    with pytest.raises(MedsftError, match="--mmlu_split dev: the exemplars are the dev split's first rows"):
        _quiet([*argv[:-2], "--num_fewshot", "1", "--output_dir", str(tmp_path / "eval-2")])
    # ../shared's MedQA release holds only the test file: the error names the missing one
    with pytest.raises(MedsftError, match="no MedQA dev file"):
        _quiet(["--model_name_or_path", tiny_gpt2, "--tasks", "medqa", "--medqa_dataset", str(MEDQA_DIR),
                "--medqa_split", "dev", "--output_dir", str(tmp_path / "eval-3")])  # fmt: skip
    assert not (tmp_path / "eval-2").exists() and not (tmp_path / "eval-3").exists()


def test_medical_suite_bad_input(tiny_gpt2, tmp_path):
    from tests.conftest import MMLU_DIR

    base = ["--model_name_or_path", tiny_gpt2, "--mmlu_dataset", str(MMLU_DIR)]
    with pytest.raises(MedsftError, match="--mmlu_subjects: unknown astronomy"):
        _quiet([*base, "--tasks", "mmlu", "--mmlu_subjects", "astronomy"])
    with pytest.raises(MedsftError, match="medsft scores medqa zero-shot only .* draw their exemplars at random"):
        _quiet([*base, "--tasks", "medqa", "--medqa_dataset", str(tmp_path), "--num_fewshot", "5"])
    # before anything is loaded, and never a silently zero-shot PubMedQA beside a 5-shot MMLU
    with pytest.raises(MedsftError, match="scores pubmedqa zero-shot only"):
        _quiet([*base, "--tasks", "pubmedqa,mmlu", "--pubmedqa_dataset", str(tmp_path), "--num_fewshot", "5"])
    with pytest.raises(MedsftError, match="applies to mmlu only, which --tasks does not ask for"):
        _quiet([*base, "--tasks", "perplexity", "--num_fewshot", "5"])
    with pytest.raises(MedsftError, match="no MedQA test file"):
        _quiet([*base, "--tasks", "medqa", "--medqa_dataset", str(tmp_path)])
    with pytest.raises(MedsftError, match="unknown task"):
        _quiet([*base, "--tasks", "medqa,usmle"])


def test_adapters_are_evaluated_on_the_base_they_were_trained_on(caplog):
    """One rule with medsft.generate: a QLoRA adapter on its 4-bit base, a LoRA adapter on the full-precision one,
    unless --load_in_4bit is given; adapters trained on different bases need the flag."""
    from medsft.configs.commands import EvalModelArguments
    from medsft.evaluation.runner import choose_base_precision
    from medsft.modeling.adapters import AdapterInfo

    qlora = AdapterInfo("q", "q", "gpt2", load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    lora = AdapterInfo("l", "l", "gpt2", load_in_4bit=False)
    args = EvalModelArguments(model_name_or_path="gpt2")
    assert choose_base_precision(args, [qlora]) == "4-bit NF4, nested"
    assert (args.load_in_4bit, args.bnb_4bit_quant_type, args.use_bnb_nested_quant) == (True, "nf4", True)
    args = EvalModelArguments(model_name_or_path="gpt2")
    assert choose_base_precision(args, [lora]) == "float32" and args.load_in_4bit is False
    assert choose_base_precision(EvalModelArguments(model_name_or_path="gpt2"), []) == "float32"
    with pytest.raises(MedsftError, match=r"different bases: q \(4-bit\), l \(full-precision\).*--load_in_4bit"):
        choose_base_precision(EvalModelArguments(model_name_or_path="gpt2"), [qlora, lora])
    caplog.set_level(logging.INFO)
    args = EvalModelArguments(model_name_or_path="gpt2", load_in_4bit=False)
    assert choose_base_precision(args, [qlora, lora]) == "float32"
    assert "q was trained on a 4-bit base; evaluating it on a full-precision one" in caplog.text
    assert "base model in float32 (as --load_in_4bit asked" in caplog.text


def test_nothing_is_cut_or_written_over_silently(tiny_gpt2, adapter_run, tmp_path, caplog, monkeypatch):
    """Contexts longer than --max_length are cut as the harness cuts them, and the log says how many (once for the
    base and its adapter, again in the next evaluation); chat scoring
    of the letter benchmarks works for a tokenizer without a chat template (medsft's default one) whatever the
    perplexity flags say; a folder of the user's is never written into."""
    from tests.conftest import MEDQA_DIR

    base = ["--model_name_or_path", tiny_gpt2, "--tasks", "medqa", "--medqa_dataset", str(MEDQA_DIR), "--limit", "3",
            "--bootstrap_samples", "10"]  # fmt: skip
    for again in ("cut", "cut-again"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="medsft"):
            cut = _quiet(
                [*base, "--max_length", "16", "--adapters", str(adapter_run), "--output_dir", str(tmp_path / again)]
            )
        assert caplog.text.count("medqa: 3 of 3 inputs are longer than max_length=16 tokens") == 1, again
        assert len(cut["results"]) == 2  # base and adapter, both scored on the cut inputs
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medsft"):
        report = _quiet([*base, "--output_dir", str(tmp_path / "whole")])
    assert "longer than max_length" not in caplog.text and report["settings"]["max_length"] == 1024
    chat = _quiet([*base, "--choice_mode", "chat", "--perplexity_format", "text", "--output_dir", str(tmp_path / "c")])
    assert chat["results"]["base"]["medqa"]["n"] == 3
    mine = tmp_path / "evals" / Path(tiny_gpt2).name
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)  # the default folder (evals/<model>) holds the user's notes: a numbered sibling
    report = _quiet(base)
    assert Path(report["output_dir"]).name == f"{mine.name}-2"
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
