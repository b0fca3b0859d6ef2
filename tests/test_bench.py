"""bench/train_throughput.py's accounting: real sequence lengths per batch and model FLOPs per token (for MFU)."""

from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from bench.train_throughput import TokenMeter, sequence_lengths


def test_sequence_lengths_from_the_mask_or_from_restarting_positions():
    padded = {"input_ids": torch.zeros(2, 5), "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    assert sequence_lengths(padded) == [3, 5]
    # padding-free: one row, position_ids restart at 0 for each packed example
    packed = {"input_ids": torch.zeros(1, 9), "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])}
    assert sequence_lengths(packed) == [3, 2, 4]
    # one row per packed bin, padded at the end (position 0 at every pad): the pads are no sequence
    rows = {"input_ids": torch.zeros(2, 6), "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])}
    assert sequence_lengths(rows) == [3, 2, 6]


def test_model_flops_count_frozen_matmuls_four_times_and_lora_six_times(tiny_gpt2):
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    config = model.config
    d, layers, vocab = config.n_embd, config.n_layer, config.vocab_size
    # GPT-2 block matmuls: c_attn d->3d, attn c_proj d->d, mlp c_fc d->4d, mlp c_proj 4d->d; plus the LM head d->vocab
    frozen = layers * (d * 3 * d + d * d + d * 4 * d + 4 * d * d) + d * vocab
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))
    lora = layers * 4 * (d + 3 * d)  # A: d->r, B: r->3d
    assert model.get_nb_trainable_parameters()[0] == lora
    meter = TokenMeter()
    meter.on_train_begin(SimpleNamespace(bf16=False, fp16=False), None, None, model=model)
    assert meter.flops_per_token == 4 * frozen + 6 * lora
    assert meter.attention_flops_per_square_token == 12 * layers * d
    assert meter.dtype == "float32"


def test_anonymous_peak_sees_a_freed_allocation():
    """bench/qlora_memory.py's RssAnon sampler catches a peak that is gone by the time it stops."""
    import time

    from bench.qlora_memory import AnonymousPeak

    with AnonymousPeak() as peak:
        before = AnonymousPeak.now()
        block = torch.ones(64 * 2**20)  # 256 MiB of float32, touched
        time.sleep(0.1)
        del block
    assert peak.peak - before >= 200 * 2**20
    assert AnonymousPeak.now() < peak.peak


def test_plot_training_redraws_a_figure_but_never_writes_over_anything_else(tmp_path, monkeypatch):
    """bench/plot_training.py --out: an image file name only; an adapter given by mistake stays as it was."""
    import json
    import subprocess
    import sys

    from bench.plot_training import main as plot_training
    from tests.conftest import ROOT

    run = tmp_path / "run"
    run.mkdir()
    history = [{"step": s, "loss": 2.0 - 0.1 * s} for s in (1, 2, 3)] + [{"step": 3, "eval_loss": 1.9}]
    (run / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 3}))
    adapter = run / "adapter_model.safetensors"
    adapter.write_bytes(b"weights")
    script = [sys.executable, str(ROOT / "bench/plot_training.py"), str(run), "--out"]
    monkeypatch.setattr(sys, "argv", script[1:] + [str(adapter)])  # the refusal, in this process
    with pytest.raises(SystemExit, match="not an image file name"):
        plot_training()
    assert adapter.read_bytes() == b"weights"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "trainer_state.json").write_text('{"log_history": [')  # cut short: one line naming it
    monkeypatch.setattr(sys, "argv", [script[1], str(broken), "--out", str(tmp_path / "broken.png")])
    with pytest.raises(SystemExit, match=r"broken/trainer_state.json, line 1 .*malformed JSON"):
        plot_training()
    drawn = subprocess.run([*script, str(tmp_path / "loss.png")], capture_output=True, text=True, cwd=ROOT)
    assert drawn.returncode == 0, drawn.stderr
    assert "3 training and 1 validation points" in drawn.stdout and (tmp_path / "loss.png").stat().st_size > 1000


def test_choice_prior_reads_a_report_pairs_with_the_base_and_names_bad_input(tmp_path):
    import json

    from bench.choice_prior import main
    from medsft.data.medqa import load_medqa
    from tests.conftest import MEDQA_DIR

    rows, _ = load_medqa(str(MEDQA_DIR))
    rows = rows[:120]
    settings = {"dataset": "medqa", "hub_id": "GBaker/MedQA-USMLE-4-options", "split": "test", "mode": "loglikelihood",
                "num_fewshot": 0, "harness_task": "medqa_4options", "questions": 120}  # fmt: skip
    base = {r["id"]: [0.0, -1.0, -2.0, -3.0] for r in rows}  # always "A"
    right = {r["id"]: [-5.0 + 4 * (k == r["answer"]) for k in range(4)] for r in rows}  # always right
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"settings": {"tasks": ["medqa"], "medqa": settings},
                                  "choice_outputs": {"medqa": {"base": base, "adapter": right}}}))  # fmt: skip
    out = tmp_path / "out.json"
    main([str(report), "--medqa", str(MEDQA_DIR), "--out", str(out)])
    base_row, adapter_row = json.loads(out.read_text())["results"]
    share_a = sum(r["answer"] == 0 for r in rows) / len(rows)
    assert base_row["accuracy"] == share_a and "centred_vs_base" not in base_row
    assert adapter_row["accuracy"] == adapter_row["centred_accuracy"] == 1.0 and adapter_row["letter_auc"] == 1.0
    paired = adapter_row["centred_vs_base"]
    assert paired["fixed"] == len(rows) - round(base_row["centred_accuracy"] * len(rows)) and paired["broken"] == 0

    # an id the release does not have, a report without letter tasks, no report: one line naming the file
    right["99999"] = [0.0] * 4
    report.write_text(json.dumps({"settings": {"medqa": settings}, "choice_outputs": {"medqa": {"base": right}}}))
    with pytest.raises(SystemExit, match=r"report\.json: medqa: 1 question ids \(e\.g\. '99999'\)"):
        main([str(report), "--medqa", str(MEDQA_DIR), "--out", str(out)])
    report.write_text(json.dumps({"settings": {}}))
    with pytest.raises(SystemExit, match=r"report\.json: no letter-choice scores"):
        main([str(report), "--out", str(out)])
    with pytest.raises(SystemExit, match=r"missing\.json: no such report"):
        main([str(tmp_path / "missing.json"), "--out", str(out)])


def test_pubmedqa_contrast_picks_the_share_on_validation_and_scores_the_test_once(tmp_path):
    """bench/pubmedqa_contrast.py: the question-only copy keeps every question and split; the rule removes a lean the
    question alone carries when validation says so, and the test numbers are those of that rule applied by hand."""
    import json
    from pathlib import Path

    import numpy as np

    from bench.pubmedqa_ceiling import ceiling
    from bench.pubmedqa_contrast import main
    from medsft.data.pubmedqa import LABELS, load_pubmedqa
    from medsft.evaluation.metrics import yes_no_auc
    from tests.conftest import PUBMEDQA_DIR

    copy = tmp_path / "question_only"
    main(["--pubmedqa", str(PUBMEDQA_DIR), "--write_question_only", str(copy)])
    splits, _ = load_pubmedqa(str(PUBMEDQA_DIR))
    copied, _ = load_pubmedqa(str(copy))
    for name in ("train", "validation", "test"):  # the same questions in the same splits, without their abstracts
        for column in ("pmid", "question", "final_decision"):
            assert list(copied[name][column]) == list(splits[name][column])
        assert all(c == [] for c in copied[name]["contexts"])
    with pytest.raises(SystemExit, match="question_only: exists and is not an empty folder"):
        main(["--pubmedqa", str(PUBMEDQA_DIR), "--write_question_only", str(copy)])

    rng = np.random.default_rng(0)

    def reports(split: str) -> list[str]:
        """A model whose with-abstract yes-no margin is a weak signal plus a large question-only lean: only
        subtracting the lean (lam = 1) ranks well."""
        rows = splits[split]
        lean = rng.normal(0, 3, len(rows))
        signal = np.array([{"yes": 1.0, "no": -1.0, "maybe": 0.0}[t] for t in rows["final_decision"]])
        alone = {p: [float(x), 0.0, -4.0] for p, x in zip(rows["pmid"], lean)}
        full = {p: [float(x + s + rng.normal(0, 0.3)), 0.0, -4.0] for p, x, s in zip(rows["pmid"], lean, signal)}
        paths = []
        for name, outputs in (("with", full), ("alone", alone)):
            settings = {"dataset": "pubmedqa", "split": split, "mode": "loglikelihood", "questions": len(rows)}
            path = tmp_path / f"{split}_{name}.json"
            path.write_text(json.dumps({"settings": {"tasks": ["pubmedqa"], "pubmedqa": settings},
                                        "pubmedqa_outputs": {"base": outputs}}))  # fmt: skip
            paths.append(str(path))
        return paths

    validation, test = reports("validation"), reports("test")
    out = tmp_path / "contrast.json"
    main(["--pubmedqa", str(PUBMEDQA_DIR), "--test", *test, "--validation", *validation, "--out", str(out)])
    [row] = json.loads(out.read_text())["results"]
    assert row["model"] == "base" and (row["validation_questions"], row["test_questions"]) == (50, 500)
    curve = {c["lambda"]: c for c in row["curve"]}
    assert row["picked_lambda"] == 1.0 and curve[1.0]["validation_auc"] > curve[0.0]["validation_auc"]
    assert curve[1.0]["test_auc_diagnostic"] > 0.9 > curve[0.0]["test_auc_diagnostic"]

    # the picked rule by hand: offsets from the validation questions' contrast, applied to the test's
    def scores(path_with: str, path_alone: str) -> tuple[list[str], np.ndarray]:
        full, alone = (json.loads(Path(p).read_text())["pubmedqa_outputs"]["base"] for p in (path_with, path_alone))
        truth = {r["pmid"]: r["final_decision"] for name in ("validation", "test") for r in splits[name]}
        return [truth[p] for p in full], np.array([np.subtract(full[p], alone[p]) for p in full])

    truth_v, contrast_v = scores(*validation)
    truth_t, contrast_t = scores(*test)
    assert curve[1.0]["test_auc_diagnostic"] == yes_no_auc(truth_t, contrast_t.tolist())
    alone_t = json.loads(Path(test[1]).read_text())["pubmedqa_outputs"]["base"].values()
    assert row["question_only_auc"]["test"] == yes_no_auc(truth_t, list(alone_t))
    best = ceiling(truth_v, contrast_v)["best_accuracy"]
    assert row["picked"]["on_validation"]["offset_no"] == best["offset_no"]
    maybe = best["offset_maybe"]
    preds = [LABELS[i] for i in (contrast_t + [0.0, best["offset_no"], -np.inf if maybe is None else maybe]).argmax(1)]
    assert row["picked"]["test"]["accuracy"] == pytest.approx(np.mean([t == p for t, p in zip(truth_t, preds)]))

    # validation reports of questions all answered alike: no AUC, no share to pick; one line naming the report
    for name in ("with", "alone"):
        kept = {r["pmid"] for r in splits["validation"] if r["final_decision"] == "yes"}
        report = json.loads(Path(tmp_path / f"validation_{name}.json").read_text())
        report["pubmedqa_outputs"]["base"] = {p: v for p, v in report["pubmedqa_outputs"]["base"].items() if p in kept}
        (tmp_path / f"yes_{name}.json").write_text(json.dumps(report))
    yes_only = [str(tmp_path / "yes_with.json"), str(tmp_path / "yes_alone.json")]
    with pytest.raises(SystemExit, match=r"yes_with\.json: 'base' was scored on no question answered yes or on none"):
        main(["--pubmedqa", str(PUBMEDQA_DIR), "--test", *test, "--validation", *yes_only, "--out", str(out)])
    # a question-only report scored another way (through the chat template): refused, not paired
    chat = json.loads(Path(validation[1]).read_text())
    chat["settings"]["pubmedqa"]["mode"] = "chat"
    (tmp_path / "chat_alone.json").write_text(json.dumps(chat))
    with pytest.raises(SystemExit, match=r"chat_alone\.json: mode chat; the contrast is defined for"):
        main(["--pubmedqa", str(PUBMEDQA_DIR), "--test", *test, "--validation", validation[0],
              str(tmp_path / "chat_alone.json"), "--out", str(out)])  # fmt: skip
    # a question-only report of other questions: one line naming it
    with pytest.raises(SystemExit, match=r"test_alone\.json: has no question-only scores of 'base'"):
        main(
            [
                "--pubmedqa",
                str(PUBMEDQA_DIR),
                "--test",
                *test,
                "--validation",
                validation[0],
                test[1],
                "--out",
                str(out),
            ]
        )
