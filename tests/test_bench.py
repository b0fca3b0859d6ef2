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
