"""Which packed-batch attention a run gets, and the warning when it computes more than it needs."""

from __future__ import annotations

import logging

import torch


def warn_if_dense_packed_attention(
    attn_implementation: str | None, padding_free: bool, batch_size: int, logger: logging.Logger
) -> bool:
    """Say so when padding-free packing runs on an attention without variable-length support.

    TRL's padding-free collator concatenates a batch into one row with ``position_ids`` restarting per example;
    transformers then masks SDPA or eager attention to the examples' blocks. The result is right
    (tests/test_packing.py) but the row x row attention is computed in full: a batch of 16 rows of 1,024 becomes one
    16,384-token attention, 16x the work of 16 rows. Measured on an H100 (docs/RESULTS.md, section 4): a packed GPT-2
    step took 5.8x the time of a padded one over the same 16,384 positions. Flash-attention's varlen kernels skip the
    masked blocks. TRL does not warn about this, hence this check. Returns whether it warned.
    """
    varlen = attn_implementation is not None and ("flash" in attn_implementation or "flex" in attn_implementation)
    if not padding_free or varlen or batch_size < 2:
        return False
    if torch.cuda.is_available():
        advice = "install flash-attn and pass --attn_implementation flash_attention_2, or keep the batch small"
    else:
        advice = (
            "on CPU, --packing false (padding to each batch's longest example) was faster on WikiDoc at 1024 tokens"
        )
    logger.warning(
        "padding-free packing with %s attention computes one dense attention over the %d concatenated rows of a batch "
        "(correct, but up to %dx the attention work): %s",
        attn_implementation or "the default",
        batch_size,
        batch_size,
        advice,
    )
    return True
