"""Measure integration fixtures: the fake NVML library (shared module in tests/fixtures)."""

from __future__ import annotations

from tests.fixtures.nvml import fake_nvml, fake_nvml_in_process, fake_nvml_lib_dir

__all__ = ["fake_nvml", "fake_nvml_in_process", "fake_nvml_lib_dir"]
