"""How a packed batch reaches the attention: the layout a run uses, chosen from the attention it has.

TRL packs examples best-fit-decreasing into bins of at most ``max_length`` tokens (each dataset row one bin, with
its examples' lengths in ``seq_lengths``). Its padding-free collator then concatenates a whole batch into **one**
row with ``position_ids`` restarting per example and ``cu_seq_lens_q/k`` marking the examples. That is ideal for
flash-attention's varlen kernels, which attend within each example only. On PyTorch SDPA or eager attention —
every install without flash-attn, and all of CPU — transformers instead applies a block-diagonal mask to one dense
(batch x max_length)^2 attention: a batch of 4 x 1,024 becomes one 4,096-token attention, 4x the work of 4 rows
and 16x the mask (docs/RESULTS.md, section 4: packing ran at 0.80x dynamic padding on CPU).

The layouts (``--packed_layout``, default ``auto``):

- ``padding_free``: TRL's one row, unchanged. Chosen for flash/flex attention, which skip the masked blocks.
- ``segments``: TRL's one row, with attention computed per example: SDPA (causal) on each ``cu_seq_lens`` slice,
  concatenated. The projections and MLP run on real tokens only (no padding anywhere) and the attention costs the sum
  of the examples' squared lengths, as a varlen kernel's does. A Python loop over the examples of each layer — cheap
  against the matrix products on CPU; on a GPU each slice is a kernel launch. Chosen on CPU.
- ``rows``: each bin its own row, the batch stacked as rows padded to the longest bin, ``position_ids`` restarting
  per example and no ``attention_mask``, so transformers derives a block-diagonal mask per row
  (``masking_utils.find_packed_sequence_indices``). Attention is dense per row (max_length^2), as padded-to-
  max_length training's is, but every row is mostly real tokens. Chosen on a GPU without a varlen kernel (one
  batched SDPA call per layer instead of a launch per example).

TRL offers no such options: its collator is one row (``padding_free``) or padded examples without packing, and a
custom ``data_collator`` is refused with packing, so medsft adjusts the collator TRL built (``rows``) or registers
an attention function (``segments``) with transformers' ``AttentionInterface``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

PACKED_LAYOUTS = ("auto", "padding_free", "segments", "rows")
SEGMENT_ATTENTION = "medsft_sdpa_segments"


def has_varlen_kernel(attn_implementation: str | None) -> bool:
    """Whether the attention skips masked blocks of a packed row by itself (flash-attention's varlen, flex)."""
    return attn_implementation is not None and ("flash" in attn_implementation or "flex" in attn_implementation)


def choose_packed_layout(requested: str, attn_implementation: str | None, on_gpu: bool) -> tuple[str, str]:
    """The layout a packed run uses and why, for the run log.

    Parameters:
        requested: the recipe's ``packed_layout`` (``auto`` or one of the layouts).
        attn_implementation: the model's attention (``model.config._attn_implementation``).
        on_gpu: whether training runs on a CUDA device.
    """
    attention = attn_implementation or "sdpa"
    if requested != "auto":
        return requested, f"packed_layout: {requested} was asked for ({attention} attention)"
    if has_varlen_kernel(attention):
        return "padding_free", f"{attention} has a varlen kernel: TRL's padding-free row, masked blocks skipped"
    if on_gpu:
        return "rows", f"{attention} attention on a GPU: one row per packed bin, a block-diagonal mask per row"
    return "segments", f"{attention} attention on CPU: SDPA per example on TRL's padding-free row"


def segment_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: causal SDPA per example of a padding-free row, plain SDPA otherwise.

    A padding-free row (batch 1, ``cu_seq_lens_q`` from TRL's collator, no KV cache) is cut at the example
    boundaries; anything else (padded batches, generation with a cache) is transformers' own SDPA with its mask.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    if cu_seq_lens_q is None or query.shape[0] != 1 or key.shape[2] != length:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    bounds = cu_seq_lens_q.tolist()
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    # split, not one slice per example: a slice's gradient is a zero tensor of the whole row with the slice filled
    # in, one per example and layer (15% of a CPU step on MedQuAD); split's is one concatenation.
    pieces = [
        sdpa_attention_forward(module, q, k, v, None, dropout, scaling, is_causal=True)[0]
        for q, k, v in zip(*(t.split(lengths, dim=2) for t in (query, key, value)))
        if q.shape[2]
    ]
    return torch.cat(pieces, dim=1), None


def register_segment_attention() -> str:
    """Make ``SEGMENT_ATTENTION`` a name transformers accepts; its masks are SDPA's (for the padded fallback)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SEGMENT_ATTENTION, segment_sdpa_attention)
    AttentionMaskInterface.register(SEGMENT_ATTENTION, sdpa_mask)
    return SEGMENT_ATTENTION


@dataclass
class PackedRowsCollator:
    """One row per packed bin: TRL's collator in its padded mode with restarting ``position_ids``, minus the mask.

    Without ``attention_mask`` transformers builds a block-diagonal causal mask per row from ``position_ids``; the
    row-end padding (position 0, label -100) is never attended by the real tokens before it (causality) and carries
    no loss. As TRL's padding-free row does, the first token of every example is no label, so no example's loss
    depends on the example before it.

    Parameters:
        collator: TRL's ``DataCollatorForLanguageModeling`` (the one ``SFTTrainer`` built).
    """

    collator: Any

    def __post_init__(self) -> None:
        self.collator.padding_free = False
        self.collator.return_position_ids = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        batch.pop("attention_mask")
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch


def apply_packed_layout(trainer: Any, layout: str) -> str | None:
    """Set ``layout`` up on a built ``SFTTrainer`` whose collator is TRL's padding-free one.

    Returns the attention implementation to restore (``set_attention``) once training is over, when ``segments``
    swapped it; else None.
    """
    if layout == "rows":
        trainer.data_collator = PackedRowsCollator(trainer.data_collator)
    elif layout == "segments":
        previous = _base_model(trainer.model).config._attn_implementation
        set_attention(trainer.model, register_segment_attention())
        return previous
    return None


def set_attention(model: torch.nn.Module, attn_implementation: str) -> None:
    """Switch the attention of a model, or of the base model under a peft adapter."""
    _base_model(model).set_attn_implementation(attn_implementation)


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def warn_if_dense_packed_attention(
    attn_implementation: str | None, layout: str, batch_size: int, logger: logging.Logger
) -> bool:
    """Say so when TRL's one-row layout runs on an attention without variable-length support.

    Only ``padding_free`` asked for explicitly on SDPA/eager gets here: the result is right (tests/test_packing.py)
    but the row x row attention is computed in full, ``batch_size`` x the attention work of separate rows.
    Returns whether it warned.
    """
    if layout != "padding_free" or has_varlen_kernel(attn_implementation) or batch_size < 2:
        return False
    logger.warning(
        "packed_layout padding_free with %s attention computes one dense attention over the %d concatenated rows of "
        "a batch (correct, but up to %dx the attention work): use packed_layout auto (segments on CPU, rows on GPU) "
        "or a flash-attention kernel",
        attn_implementation or "the default",
        batch_size,
        batch_size,
    )
    return True
