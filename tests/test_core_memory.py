"""medsft.core.memory: freed tensor memory goes back to the system (glibc), unless the user chose the setting."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from medsft.core import memory

# How much of five 8 MB tensors glibc serves as mappings of their own (returned to the system when freed) rather
# than from its heap (kept by the process), after a freed 16 MB block raised glibc's default threshold to 16 MB
PROBE = textwrap.dedent(
    """
    import ctypes, sys, torch
    from medsft.core.memory import return_freed_memory
    print(return_freed_memory() if sys.argv[1] == "on" else None)
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                         "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    big = torch.ones(16 << 20, dtype=torch.uint8)
    del big
    before = libc.mallinfo2().hblkhd
    held = [torch.ones(2 << 20) for _ in range(5)]
    print((libc.mallinfo2().hblkhd - before) >> 20)
    """
)


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc >= 2.33")
def test_activation_sized_tensors_get_mappings_returned_when_freed():
    def mapped_mb(mode: str) -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
        ).stdout.split()

    assert mapped_mb("off") == ["None", "0"]  # glibc's default: from the heap, kept after they are freed
    assert mapped_mb("on") == ["True", "40"]


def test_a_setting_the_user_chose_is_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.return_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert memory.return_freed_memory() is False
