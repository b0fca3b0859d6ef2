"""What a run computes on and with: device, library versions, commit, time (recorded in manifests and reports),
and the CPU pitfalls worth a warning."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

_LIBRARIES = ("medsft", "torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")


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


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX), as torch's CPU dispatch reads them. (oneDNN's
    ``_is_mkldnn_bf16_supported`` is no test: it also says yes for plain AVX512, where bf16 is emulated.)"""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(check is None for check in checks):  # a torch without them: do not warn on a guess
        return True
    return any(check() for check in checks if check is not None)


def warn_if_slow_cpu_bf16(bf16: bool, use_cpu: bool, logger: logging.Logger) -> None:
    """Say so when bf16 mixed precision is asked for on a CPU without bf16 instructions, where torch emulates it
    and a step is slower than in float32 (with them it is faster: docs/RESULTS.md, section 4)."""
    if bf16 and use_cpu and not cpu_has_bf16():  # MedSFTConfig sets use_cpu for bf16 without a GPU
        logger.warning(
            "bf16 mixed precision on a CPU without bf16 instructions (AVX512-BF16 or AMX): torch emulates it, slower "
            "than float32; pass --bf16 false"
        )


def git_commit() -> str | None:
    """The medsft checkout's commit (``+dirty`` if it has uncommitted changes), or None outside a git checkout."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
