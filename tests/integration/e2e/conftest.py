"""The whole-loop test reuses the fake NVML build fixture (compiled once per session)."""

from tests.fixtures.nvml import fake_nvml_lib_dir  # noqa: F401  (fixture)
