"""The NVML backend on the real pynvml against the fake libnvidia-ml (preloaded in this process), and the
PodResources mapper on the real grpc against the fake kubelet: every device-id shape the kubelet reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from powerplanner.agent.gpu import GpuLost, InvalidArgument, NoPermission, NotSupported
from powerplanner.agent.mapping import MappingError
from powerplanner.agent.nvml_backend import NvmlBackend
from powerplanner.agent.podresources import PodResourcesMapper
from powerplanner.agent.policy import Holding, PodInfo
from tests.fixtures.kubelet import FakeKubelet, PodDevices
from tests.fixtures.nvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeNvml,
    FakeState,
)

pytestmark = pytest.mark.integration
MIG = "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.fixture()
def backend(fake_nvml_in_process: FakeNvml) -> Iterator[NvmlBackend]:
    fake_nvml_in_process.write(
        FakeState(
            gpus=(
                FakeGpu(uuid="GPU-a", procs=(11, 12), energy_mj=5_000_000),
                FakeGpu(uuid="GPU-b", name="NVIDIA A100-SXM4-80GB", min_mw=100_000, max_mw=400_000,
                        default_mw=400_000, limit_mw=400_000, demand_mw=500_000),
                FakeGpu(uuid="GPU-c", mig=(MIG,)),
            )
        )
    )
    nvml = NvmlBackend.open()
    try:
        yield nvml
    finally:
        nvml.close()


def test_inventory_and_readings(backend: NvmlBackend) -> None:
    gpus = backend.gpus()
    assert [(g.index, g.uuid) for g in gpus] == [(0, "GPU-a"), (1, "GPU-b"), (2, "GPU-c")]
    assert (gpus[1].name, gpus[1].min_limit_watts, gpus[1].max_limit_watts, gpus[1].default_limit_watts) == (
        "NVIDIA A100-SXM4-80GB", 100.0, 400.0, 400.0)
    assert backend.limit_watts("GPU-b") == 400.0 and backend.enforced_limit_watts("GPU-b") == 400.0
    assert backend.power_draw_watts("GPU-b") == 400.0  # demand above the limit: draws the limit
    assert backend.energy_joules("GPU-a") == 5000.0
    assert backend.running_pids("GPU-a") == [11, 12] and backend.running_pids("GPU-b") == []
    assert backend.parent_uuid(MIG) == "GPU-c" and backend.parent_uuid("GPU-a") == "GPU-a"
    assert backend.parent_uuid("MIG-nope") is None


def test_set_uses_the_v1_setter_in_milliwatts_and_reads_back(
    backend: NvmlBackend, fake_nvml_in_process: FakeNvml
) -> None:
    assert backend.set_limit_watts("GPU-a", 312.5) == 312.5
    assert fake_nvml_in_process.set_calls() == [(0, 312_500)]
    with pytest.raises(InvalidArgument):
        backend.set_limit_watts("GPU-a", 150)  # below the constraint: the driver refuses


@pytest.mark.parametrize(
    ("code", "error"),
    [(NVML_ERROR_NO_PERMISSION, NoPermission), (NVML_ERROR_NOT_SUPPORTED, NotSupported),
     (NVML_ERROR_GPU_IS_LOST, GpuLost), (NVML_ERROR_INVALID_ARGUMENT, InvalidArgument)],
)
def test_nvml_errors_become_typed_errors(backend: NvmlBackend, fake_nvml_in_process: FakeNvml, code: int,
                                         error: type[Exception]) -> None:
    fake_nvml_in_process.inject_error("nvmlDeviceSetPowerManagementLimit", 1, code, times=1)
    with pytest.raises(error):
        backend.set_limit_watts("GPU-b", 300)
    assert backend.set_limit_watts("GPU-b", 300) == 300.0


def test_podresources_device_id_shapes(backend: NvmlBackend, fake_kubelet: FakeKubelet) -> None:
    fake_kubelet.set_pods([
        PodDevices("llm", "by-uuid", "main", ("GPU-a",)),
        PodDevices("llm", "by-index", "main", ("1",)),
        PodDevices("llm", "sliced", "worker", ("GPU-a::0", "GPU-a::1")),
        PodDevices("llm", "mig", "main", (MIG,), resource_name="nvidia.com/mig-1g.10gb"),
        PodDevices("llm", "other-resource", "main", ("GPU-b",), resource_name="example.com/fpga"),
        PodDevices("llm", "unknown", "main", ("GPU-zzz",)),
    ])
    mapper = PodResourcesMapper(fake_kubelet.socket_path, backend, 1.0, "nvidia.com/gpu")
    pods = {("llm", n): PodInfo("llm", n) for n in ("by-uuid", "by-index", "sliced", "mig")}
    assert mapper.holdings(pods, backend.gpus()) == [
        Holding("GPU-a", "llm", "by-uuid", "main"),
        Holding("GPU-a", "llm", "sliced", "worker"),
        Holding("GPU-b", "llm", "by-index", "main"),
        Holding("GPU-c", "llm", "mig", "main"),
    ]
    fake_kubelet.hang_s = 1.0
    with pytest.raises(MappingError) as info:
        PodResourcesMapper(fake_kubelet.socket_path, backend, 0.2, "nvidia.com/gpu").holdings(pods, backend.gpus())
    assert info.value.reason == "kubelet_timeout"
    fake_kubelet.hang_s = 0.0
