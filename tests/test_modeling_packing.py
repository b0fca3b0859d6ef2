"""medsft.modeling.packing: the dense packed-attention warning."""

from __future__ import annotations

import logging

import torch

from medsft.modeling import packing


def test_padding_free_packing_on_dense_attention_is_warned_about(monkeypatch, caplog):
    """A packed batch becomes one row; SDPA/eager attention computes it densely (docs/RESULTS.md, section 4)."""
    logger = logging.getLogger("medsft.test")
    with caplog.at_level(logging.WARNING, "medsft.test"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert packing.warn_if_dense_packed_attention("sdpa", True, 16, logger)
        assert "16 concatenated rows" in caplog.text and "flash_attention_2" in caplog.text
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert packing.warn_if_dense_packed_attention("eager", True, 4, logger)
        assert "--packing false" in caplog.text
        caplog.clear()
        assert not packing.warn_if_dense_packed_attention("flash_attention_2", True, 16, logger)  # varlen kernel
        assert not packing.warn_if_dense_packed_attention("sdpa", False, 16, logger)  # padded batches
        assert not packing.warn_if_dense_packed_attention("sdpa", True, 1, logger)  # nothing concatenated
        assert caplog.text == ""
