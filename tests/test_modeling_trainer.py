"""The loss head a run uses: TRL's fused LM head on a GPU, the model's own logits on CPU and for added tokens."""

from __future__ import annotations

import pytest

from medsft.core.errors import MedsftError
from medsft.modeling.trainer import choose_loss_head


def test_loss_head_follows_the_device_and_added_tokens():
    assert choose_loss_head("auto", on_gpu=True, added_tokens=False)[0] == "fused"
    assert choose_loss_head("auto", on_gpu=False, added_tokens=False)[0] == "full_logits"
    assert choose_loss_head("fused", on_gpu=False, added_tokens=False)[0] == "fused"
    assert choose_loss_head("full_logits", on_gpu=True, added_tokens=False)[0] == "full_logits"
    head, why = choose_loss_head("fused", on_gpu=True, added_tokens=True)
    assert head == "full_logits" and "added special tokens" in why


def test_unknown_loss_head_is_refused_by_name(tmp_path):
    from medsft.configs.training import MedSFTConfig

    with pytest.raises(MedsftError, match="--loss_head must be one of auto, fused, full_logits, got 'fast'"):
        MedSFTConfig(output_dir=str(tmp_path), loss_head="fast")
