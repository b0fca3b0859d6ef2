"""An unreachable Hub is one line, at once: asked once with a short timeout, never through the libraries' retries."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from huggingface_hub import constants

from medsft.core import hub_access
from medsft.core.errors import MedsftError
from tests.conftest import ROOT, WIKIDOC_JSON


@pytest.fixture
def online(monkeypatch):
    """Offline mode off (the suite sets HF_HUB_OFFLINE=1), and a fresh probe cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_access, "_probed", {})


def closed_port_endpoint() -> str:
    """A loopback address nothing listens on: connecting is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_training_a_hub_model_with_the_hub_unreachable_is_one_line(online, monkeypatch, tmp_path):
    from medsft.train import main

    monkeypatch.setattr(constants, "ENDPOINT", closed_port_endpoint())
    asked = []
    real = hub_access.unreachable_reason
    monkeypatch.setattr(hub_access, "unreachable_reason", lambda *a: asked.append(1) or real(*a))
    # the literal mission command: the shipped recipe names gpt2 and WikiDoc by their Hub ids
    with pytest.raises(MedsftError) as e:
        main([str(ROOT / "recipes" / "wikidoc_qlora.yaml"), "--output_dir", str(tmp_path / "run")])
    message = str(e.value)
    assert "'gpt2'" in message and "'medalpaca/medical_meadow_wikidoc_patient_information'" in message
    assert "unreachable" in message and "HF_HUB_OFFLINE=1" in message and "local paths" in message
    assert len(asked) == 1 and "\n" not in message and not (tmp_path / "run").exists()


def test_evaluate_checks_every_hub_source_before_loading_a_model(online, monkeypatch, tiny_gpt2):
    from medsft.evaluate import main

    monkeypatch.setattr(constants, "ENDPOINT", closed_port_endpoint())
    monkeypatch.setattr(
        "medsft.evaluate.resolve_model_source", lambda *a: pytest.fail("a model was loaded before the Hub check")
    )
    with pytest.raises(MedsftError, match=r"needed for 'qiaojin/PubMedQA' but is unreachable"):
        main(["--model_name_or_path", tiny_gpt2, "--tasks", "pubmedqa"])


def test_a_mistyped_local_path_is_said_to_be_neither_local_nor_reachable(online, monkeypatch, tiny_gpt2):
    from medsft.evaluate import main

    monkeypatch.setattr(constants, "ENDPOINT", closed_port_endpoint())
    # "runz/adapter" exists nowhere here, so the one rule reads it as a Hub id; the error must say both
    with pytest.raises(MedsftError, match=r"'runz/adapter' but is unreachable .*: no local file or folder has"):
        main(["--model_name_or_path", tiny_gpt2, "--tasks", "perplexity", "--perplexity_dataset", str(WIKIDOC_JSON),
              "--adapters", "runz/adapter"])  # fmt: skip


def test_offline_mode_asks_nothing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_access, "unreachable_reason", lambda *a: pytest.fail("the Hub was asked"))
    hub_access.require_hub("model 'gpt2'")  # the libraries read their cache and fail on their own


def test_any_http_answer_is_reachable(online):
    class NoMethods(BaseHTTPRequestHandler):  # answers every request with 501: still a Hub that answers
        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NoMethods)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        assert hub_access.unreachable_reason(f"http://127.0.0.1:{server.server_port}") is None
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert "ConnectError" in hub_access.unreachable_reason(closed_port_endpoint())
