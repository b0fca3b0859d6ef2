"""Host memory: give freed tensor memory back to the system on Linux (glibc), so a CPU run's resident memory follows
what it holds, not the most it ever held."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

# glibc's M_MMAP_THRESHOLD parameter number (malloc.h)
_M_MMAP_THRESHOLD = -3
# Blocks at least this large get their own mapping, returned to the system when freed
MMAP_THRESHOLD = 1 << 20


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc map every allocation of ``threshold`` bytes or more on its own (``mallopt(M_MMAP_THRESHOLD)``).

    Why: glibc raises its mmap threshold each time a mapped block is freed, up to 32 MB; after that, the tensors of
    a CPU forward pass (a few MB to tens of MB each: hidden states, MLP activations) come from its heap, and what they
    leave behind is not given back. Measured on the SmolLM2 WikiDoc QLoRA recipe (one micro-batch of 4 x 1,024
    tokens, 2 cores; bench/host_memory.py): peak resident memory 6.82 GiB with glibc's default, 3.79 GiB with a
    fixed 1 MB threshold, the step no slower (docs/RESULTS.md, section 4). A fixed threshold also turns the dynamic
    raising off.

    Does nothing where it cannot apply (not Linux, not glibc) or where the user chose the setting
    (``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` with ``glibc.malloc.mmap_threshold``). Returns whether it set it.
    """
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: no mallopt
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    logger.debug("glibc mmap threshold %s to %d bytes", "set" if done else "not set", threshold)
    return done
