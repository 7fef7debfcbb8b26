"""Agent integration fixtures: the fake NVML library and the fake kubelet (shared modules in tests/fixtures),
and ``env``, one node of them with the emulated cluster (:class:`~tests.integration.agent.harness.Env`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.fixtures.k8s import EmulatedCluster
from tests.fixtures.kubelet import FakeKubelet, fake_kubelet
from tests.fixtures.nvml import FakeNvml, fake_nvml, fake_nvml_in_process, fake_nvml_lib_dir
from tests.integration.agent.harness import Env

__all__ = ["env", "fake_kubelet", "fake_nvml", "fake_nvml_in_process", "fake_nvml_lib_dir"]


@pytest.fixture()
def env(fake_nvml: FakeNvml, fake_kubelet: FakeKubelet, tmp_path: Path) -> Iterator[Env]:
    with EmulatedCluster() as cluster:
        api = kubernetes.client.CoreV1Api(cluster.api_client())
        environment = Env(cluster, api, fake_nvml, fake_kubelet, tmp_path / "agent", [])
        try:
            yield environment
        finally:
            for agent in environment.agents:
                agent.kill()
