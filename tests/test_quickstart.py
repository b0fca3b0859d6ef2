"""``make quickstart``'s job (scripts/quickstart.sh) runs as a new user runs it, offline, at the smallest size: train,
evaluate base vs adapter, dry-run publish; each step's outputs where the script says they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHARED, SMOLLM2_GGUF


@pytest.mark.slow
def test_quickstart_trains_evaluates_and_prepares_the_card(tmp_path, medsft_cache):
    if not SMOLLM2_GGUF.is_file():
        pytest.skip(f"needs {SMOLLM2_GGUF}")
    run = tmp_path / "quickstart"
    env = {
        **os.environ, "MEDSFT_PYTHON": sys.executable, "MEDSFT_SHARED": str(SHARED), "HF_HUB_OFFLINE": "1",
        "QUICKSTART_DIR": str(run), "QUICKSTART_STEPS": "1", "QUICKSTART_LIMIT": "2",
        "MEDSFT_CACHE": str(medsft_cache),  # the GGUF dequantized once per test session, not into ~/.cache
    }  # fmt: skip
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "quickstart.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "offline copies" in done.stdout and "== done in" in done.stdout
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == 1
    assert (run / "loss_curve.png").is_file() and any((run / "runs").rglob("events.out.tfevents.*"))
    report = json.loads((run / "eval" / "report.json").read_text())
    assert set(report["results"]) == {"base", "quickstart"}
    assert set(report["results"]["base"]) == {"perplexity", "pubmedqa", "medqa", "mmlu"}
    assert report["model"]["load_in_4bit"] is True  # the QLoRA adapter is evaluated on its 4-bit base
    card = (tmp_path / "quickstart-publish" / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and str(tmp_path) not in card
    # a second run changes nothing and says why
    again = subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh")], env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and "nothing was changed" in again.stderr
