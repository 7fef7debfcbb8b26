"""Device-id resolution, the cgroup fallback and the mapper chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplanner.agent.cgroup import CgroupMapper, parse_cgroup
from powerplanner.agent.gpu import GpuInfo
from powerplanner.agent.mapping import FallbackMapper, MappingError, PodSnapshot, resolve_device_id
from powerplanner.agent.policy import Holding, PodInfo
from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus

UID = "1234abcd-12ab-34cd-56ef-1234567890ab"
CID = "a" * 64


@pytest.fixture()
def backend() -> SimGpuBackend:
    gpus = sim_gpus(3)
    gpus[2].mig_uuids = ["MIG-11111111-2222-3333-4444-555555555555"]
    return SimGpuBackend(gpus)


@pytest.mark.parametrize(
    ("device_id", "index"),
    [
        ("GPU-sim-0001", 1),
        ("2", 2),
        ("GPU-sim-0000::3", 0),
        ("1::0", 1),
        ("MIG-11111111-2222-3333-4444-555555555555", 2),
        ("MIG-GPU-sim-0001/1/0", 1),
        ("GPU-other", None),
        ("7", None),
        ("MIG-unknown", None),
    ],
)
def test_resolve_device_id(backend: SimGpuBackend, device_id: str, index: int | None) -> None:
    gpus = backend.gpus()
    expected = gpus[index].uuid if index is not None else None
    assert resolve_device_id(device_id, gpus, backend) == expected


@pytest.mark.parametrize(
    "text",
    [
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
        f"cri-containerd-{CID}.scope\n",
        f"12:pids:/\n11:memory:/kubepods/burstable/pod{UID}/{CID}\n0::/\n",
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/docker-{CID}.scope\n",
        f"5:cpuset:/kubepods/pod{UID}/{CID}\n",
    ],
    ids=["v2-systemd-burstable", "v1-cgroupfs-burstable", "v2-systemd-guaranteed", "v1-cgroupfs-guaranteed"],
)
def test_parse_cgroup_layouts(text: str) -> None:
    assert parse_cgroup(text) == (UID, CID)


def test_parse_cgroup_non_pod_process() -> None:
    assert parse_cgroup("0::/user.slice/user-1000.slice/session-1.scope\n") is None


def test_cgroup_mapper_maps_pids_to_pods_and_containers(tmp_path: Path, backend: SimGpuBackend) -> None:
    for pid, text in ((101, f"0::/kubepods/burstable/pod{UID}/{CID}\n"), (102, "0::/system.slice/x.service\n")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    backend.set_pids("GPU-sim-0001", [101, 102, 999])  # 999: exited between the two reads
    pod = PodInfo("llm", "decode-0", uid=UID, containers=(("main", CID),))
    holdings = CgroupMapper(backend, tmp_path).holdings({pod.key: pod}, backend.gpus())
    assert holdings == [Holding("GPU-sim-0001", "llm", "decode-0", "main")]


class _Failing:
    def __init__(self) -> None:
        self.fail = False

    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        if self.fail:
            raise MappingError("kubelet timed out", "kubelet_timeout")
        return [Holding("G", "llm", p) for _, p in pods]


class _Fixed:
    def holdings(self, pods: PodSnapshot, gpus: list[GpuInfo]) -> list[Holding]:
        return [Holding("G", "llm", "from-cgroup")]


def test_fallback_chain(tmp_path: Path) -> None:
    socket = tmp_path / "kubelet.sock"
    primary = _Failing()
    mapper = FallbackMapper(primary, _Fixed(), socket)
    pods = {("llm", "a"): PodInfo("llm", "a"), ("llm", "b"): PodInfo("llm", "b")}
    assert mapper.holdings(pods, []) == [Holding("G", "llm", "from-cgroup")]  # no socket: cgroups
    assert mapper.last_source == "cgroup"
    socket.touch()
    assert len(mapper.holdings(pods, [])) == 2 and mapper.last_source == "podresources"
    primary.fail = True
    del pods[("llm", "b")]
    assert mapper.holdings(pods, []) == [Holding("G", "llm", "a")]  # stale answer, deleted pods dropped
    assert mapper.last_source == "podresources-stale" and mapper.last_error is not None
