"""The fake peers behave like the real ones as far as the agent relies on them (real pynvml, real grpc)."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from powerplanner.agent.proto_stubs import load_podresources_stubs
from tests.fixtures.kubelet import FakeKubelet, PodDevices
from tests.fixtures.nvml import NVML_ERROR_NO_PERMISSION, FakeGpu, FakeNvml, FakeState

pytestmark = pytest.mark.integration


def test_pynvml_reads_and_sets_through_the_fake_in_process(fake_nvml_in_process: FakeNvml) -> None:
    import pynvml

    fake_nvml_in_process.write(FakeState(gpus=(FakeGpu(uuid="GPU-a", procs=(7, 8)), FakeGpu(uuid="GPU-b"))))
    pynvml.nvmlInit()
    try:
        assert pynvml.nvmlDeviceGetCount() == 2
        handle = pynvml.nvmlDeviceGetHandleByIndex(1)
        assert pynvml.nvmlDeviceGetUUID(handle) == "GPU-b"
        assert pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle) == [200_000, 700_000]
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, 300_000)
        assert pynvml.nvmlDeviceGetPowerManagementLimit(handle) == 300_000
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0))
        assert [p.pid for p in procs] == [7, 8]
        fake_nvml_in_process.inject_error("nvmlDeviceSetPowerManagementLimit", 1, NVML_ERROR_NO_PERMISSION, times=1)
        with pytest.raises(pynvml.NVMLError_NoPermission):
            pynvml.nvmlDeviceSetPowerManagementLimit(handle, 400_000)
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, 400_000)  # the injected error was one-shot
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceSetPowerManagementLimit(handle, 100_000)  # below the minimum, as real NVML
    finally:
        pynvml.nvmlShutdown()
    assert fake_nvml_in_process.set_calls() == [(1, 300_000), (1, 400_000)]
    assert fake_nvml_in_process.limits_watts() == [700.0, 400.0]


def test_pynvml_loads_the_fake_through_ld_library_path(fake_nvml: FakeNvml) -> None:
    code = "import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())"
    out = subprocess.run([sys.executable, "-c", code], env=fake_nvml.env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"


def test_fake_kubelet_lists_and_hangs(fake_kubelet: FakeKubelet) -> None:
    stubs = load_podresources_stubs()
    fake_kubelet.set_pods([PodDevices("ns", "p", "c", ("GPU-a", "GPU-b::1"))])
    with grpc.insecure_channel(f"unix://{fake_kubelet.socket_path}") as channel:
        stub = stubs.pb2_grpc.PodResourcesListerStub(channel)
        reply = stub.List(stubs.pb2.ListPodResourcesRequest(), timeout=2)
        assert [list(d.device_ids) for d in reply.pod_resources[0].containers[0].devices] == [["GPU-a", "GPU-b::1"]]
        fake_kubelet.hang_s = 1.0
        with pytest.raises(grpc.RpcError) as info:
            stub.List(stubs.pb2.ListPodResourcesRequest(), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        fake_kubelet.hang_s = 0.0
