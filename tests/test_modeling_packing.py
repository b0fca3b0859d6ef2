"""medsft.modeling.packing: which packed layout a run gets, and the dense packed-attention warning."""

from __future__ import annotations

import logging

import pytest
import torch

from medsft.core.errors import MedsftError
from medsft.modeling import packing


def test_layout_follows_the_attention_and_the_device():
    assert packing.choose_packed_layout("auto", "flash_attention_2", on_gpu=True)[0] == "padding_free"
    assert packing.choose_packed_layout("auto", "flex_attention", on_gpu=False)[0] == "padding_free"
    assert packing.choose_packed_layout("auto", "sdpa", on_gpu=False)[0] == "segments"
    assert packing.choose_packed_layout("auto", "eager", on_gpu=False)[0] == "segments"
    assert packing.choose_packed_layout("auto", "sdpa", on_gpu=True)[0] == "rows"
    layout, why = packing.choose_packed_layout("rows", "sdpa", on_gpu=False)
    assert layout == "rows" and "asked for" in why  # a recipe key overrides the choice


def test_unknown_layout_is_refused_by_name(tmp_path):
    from medsft.configs.training import MedSFTConfig

    with pytest.raises(MedsftError, match="--packed_layout must be one of auto, padding_free, segments, rows"):
        MedSFTConfig(output_dir=str(tmp_path), packed_layout="diagonal", report_to="none")


def test_dense_one_row_attention_is_warned_about_only_when_still_true(caplog):
    """TRL's one row on SDPA/eager computes one dense attention (docs/RESULTS.md, section 4): only padding_free."""
    logger = logging.getLogger("medsft.test")
    with caplog.at_level(logging.WARNING, "medsft.test"):
        assert packing.warn_if_dense_packed_attention("sdpa", "padding_free", 16, logger)
        assert "16 concatenated rows" in caplog.text and "packed_layout auto" in caplog.text
        caplog.clear()
        assert not packing.warn_if_dense_packed_attention("flash_attention_2", "padding_free", 16, logger)
        assert not packing.warn_if_dense_packed_attention("sdpa", "segments", 16, logger)  # attention per example
        assert not packing.warn_if_dense_packed_attention("sdpa", "rows", 16, logger)  # attention per row
        assert not packing.warn_if_dense_packed_attention("sdpa", "padding_free", 1, logger)  # nothing concatenated
        assert caplog.text == ""


def test_segment_attention_gradients_equal_each_example_alone():
    """SDPA per example of a packed row: output and gradients (q, k, v) equal each example's own causal SDPA; an
    empty example (two equal bounds) is skipped."""
    from torch.nn.functional import scaled_dot_product_attention

    torch.manual_seed(0)
    bounds = [0, 3, 3, 7, 10]
    q, k, v = (torch.randn(1, 2, 10, 4, requires_grad=True) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 1
    out, _ = packing.segment_sdpa_attention(module, q, k, v, None, cu_seq_lens_q=torch.tensor(bounds))
    weights = torch.randn_like(out)  # a loss that weighs every output differently
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))

    pieces = [
        scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True).transpose(1, 2)
        for a, b in zip(bounds[:-1], bounds[1:])
        if b > a
    ]
    reference = torch.cat(pieces, dim=1)
    torch.testing.assert_close(out, reference)
    for grad, expected in zip(grads, torch.autograd.grad((reference * weights).sum(), (q, k, v))):
        torch.testing.assert_close(grad, expected)
