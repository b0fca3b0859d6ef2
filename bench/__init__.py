"""Benchmark scripts: run each as ``python bench/NAME.py`` (see the Makefile); importable for tests."""
