from __future__ import annotations

import logging

import torch

from medsft import hardware


def test_one_cpu_thread_of_several_cores_is_warned_about(monkeypatch, caplog):
    """`accelerate launch` sets OMP_NUM_THREADS=1 on a machine without GPUs; the log says how to use the cores."""
    logger = logging.getLogger("medsft.test")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    with caplog.at_level(logging.WARNING, "medsft.test"):
        hardware.warn_if_one_cpu_thread(1, logger)
        assert "1 CPU thread of 8 cores" in caplog.text and "OMP_NUM_THREADS=8" in caplog.text
        caplog.clear()
        hardware.warn_if_one_cpu_thread(2, logger)  # 2 processes: 4 threads each
        assert "--num_cpu_threads_per_process 4" in caplog.text
        caplog.clear()
        hardware.warn_if_one_cpu_thread(8, logger)  # one core per process: nothing to gain
        monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
        hardware.warn_if_one_cpu_thread(1, logger)
        assert caplog.text == ""
    assert hardware.describe_device() == {
        "device": "cpu",
        "machine": hardware.platform.machine(),
        "cpus": 8,
        "torch_threads": 8,
    }


def test_padding_free_packing_on_dense_attention_is_warned_about(monkeypatch, caplog):
    """A packed batch becomes one row; SDPA/eager attention computes it densely (docs/RESULTS.md, section 4)."""
    logger = logging.getLogger("medsft.test")
    with caplog.at_level(logging.WARNING, "medsft.test"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert hardware.warn_if_dense_packed_attention("sdpa", True, 16, logger)
        assert "16 concatenated rows" in caplog.text and "flash_attention_2" in caplog.text
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert hardware.warn_if_dense_packed_attention("eager", True, 4, logger)
        assert "--packing false" in caplog.text
        caplog.clear()
        assert not hardware.warn_if_dense_packed_attention("flash_attention_2", True, 16, logger)  # varlen kernel
        assert not hardware.warn_if_dense_packed_attention("sdpa", False, 16, logger)  # padded batches
        assert not hardware.warn_if_dense_packed_attention("sdpa", True, 1, logger)  # nothing concatenated
        assert caplog.text == ""
