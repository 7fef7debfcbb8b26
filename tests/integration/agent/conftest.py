"""Agent integration fixtures: the fake NVML library and the fake kubelet (shared modules in tests/fixtures)."""

from tests.fixtures.kubelet import fake_kubelet
from tests.fixtures.nvml import fake_nvml, fake_nvml_in_process, fake_nvml_lib_dir

__all__ = ["fake_kubelet", "fake_nvml", "fake_nvml_in_process", "fake_nvml_lib_dir"]
