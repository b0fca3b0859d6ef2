"""medsft.core.environment: the device description and the one-CPU-thread warning."""

from __future__ import annotations

import logging

import pytest
import torch

from medsft.core import environment


def test_one_cpu_thread_of_several_cores_is_warned_about(monkeypatch, caplog):
    """`accelerate launch` sets OMP_NUM_THREADS=1 on a machine without GPUs; the log says how to use the cores."""
    logger = logging.getLogger("medsft.test")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(environment.os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    with caplog.at_level(logging.WARNING, "medsft.test"):
        environment.warn_if_one_cpu_thread(1, logger)
        assert "1 CPU thread of 8 cores" in caplog.text and "OMP_NUM_THREADS=8" in caplog.text
        caplog.clear()
        environment.warn_if_one_cpu_thread(2, logger)  # 2 processes: 4 threads each
        assert "--num_cpu_threads_per_process 4" in caplog.text
        caplog.clear()
        environment.warn_if_one_cpu_thread(8, logger)  # one core per process: nothing to gain
        monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
        environment.warn_if_one_cpu_thread(1, logger)
        assert caplog.text == ""
    assert environment.describe_device() == {
        "device": "cpu",
        "machine": environment.platform.machine(),
        "cpus": 8,
        "torch_threads": 8,
    }


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch, caplog):
    """torch emulates bf16 where the CPU has neither AVX512-BF16 nor AMX: slower than float32, so the log says so."""
    logger = logging.getLogger("medsft.test")
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, "medsft.test"):
        monkeypatch.setattr(environment, "cpu_has_bf16", lambda: False)
        environment.warn_if_slow_cpu_bf16(True, True, logger)
        assert "without bf16 instructions" in caplog.text and "--bf16 false" in caplog.text
        caplog.clear()
        environment.warn_if_slow_cpu_bf16(False, False, logger)  # float32: nothing to say
        monkeypatch.setattr(environment, "cpu_has_bf16", lambda: True)
        environment.warn_if_slow_cpu_bf16(True, True, logger)  # AMX / AVX512-BF16: bf16 is the faster one
        assert caplog.text == ""


def test_cpu_bf16_instructions_are_read_as_the_kernel_reports_them():
    flags = next((line.split()[2:] for line in open("/proc/cpuinfo") if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags here")
    assert environment.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))
