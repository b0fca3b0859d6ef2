"""What a run computes on: recorded in manifests and reports, and the one CPU pitfall worth a warning."""

from __future__ import annotations

import logging
import os
import platform

import torch


def describe_device() -> dict:
    """The device and, on CPU, the threads torch uses (throughput numbers mean little without them)."""
    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(), "count": torch.cuda.device_count()}
    threads = torch.get_num_threads()
    return {"device": "cpu", "machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": threads}


def warn_if_one_cpu_thread(num_processes: int, logger: logging.Logger) -> None:
    """Say so when a CPU run uses one thread of several cores.

    ``accelerate launch`` sets ``OMP_NUM_THREADS`` to 1 on a machine without GPUs unless the variable is already set
    (it only spreads threads when ``--cpu``/``use_cpu`` and several physical cores are reported). Measured on a 2-core
    machine: an optimizer step of the SmolLM2 PubMedQA LoRA recipe took 510 s with one thread, 328 s with two.
    medsft does not override the variable (a user may have set it on purpose); it says how to change it.
    """
    cores = os.cpu_count() or 1
    per_process = cores // max(num_processes, 1)
    if torch.cuda.is_available() or torch.get_num_threads() > 1 or per_process < 2:
        return
    logger.warning(
        "torch is using 1 CPU thread of %d cores (OMP_NUM_THREADS=%s); for a faster CPU run export OMP_NUM_THREADS=%d "
        "before `accelerate launch`, or pass --num_cpu_threads_per_process %d",
        cores,
        os.environ.get("OMP_NUM_THREADS", "unset"),
        per_process,
        per_process,
    )


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
