"""The real agent process at exit and at start-up: it hands over, and restores only on an uninstall.

Safety property: the limits in force on the node's GPUs never rise when an agent stops or restarts, unless
its DaemonSet is gone or being deleted (an uninstall), or ``agent.restore_on_exit: always``. Each test runs
``powerplanner agent`` against the fake NVML, the fake kubelet and kmock's emulator, which also serves the
agent's own pod and its DaemonSet (read at exit with env POD_NAME / POD_NAMESPACE, as the chart sets them).
A sampler reads the fake NVML's limits every few milliseconds across the stop and the restart.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kmock import ResourceInfo

from tests.fixtures.k8s import EmulatedCluster
from tests.fixtures.kubelet import FakeKubelet
from tests.fixtures.nvml import FakeNvml
from tests.integration.agent.harness import NODE, AgentProcess, metric_value
from tests.integration.agent.test_agent_process import Env

pytestmark = pytest.mark.integration

AGENT_NS = "powerplanner"
AGENT_POD = "pp-powerplanner-agent-x7k2q"
DAEMONSET = "pp-powerplanner-agent"
DS_UID = "5e1f0000-0000-4000-8000-000000000001"
DAEMONSETS = "apps/v1/daemonsets"
ENVIRON = {"POD_NAME": AGENT_POD, "POD_NAMESPACE": AGENT_NS}


@pytest.fixture()
def env(fake_nvml: FakeNvml, fake_kubelet: FakeKubelet, tmp_path: Path) -> Iterator[Env]:
    with EmulatedCluster() as cluster:
        environment = Env(cluster, kubernetes.client.CoreV1Api(cluster.api_client()), fake_nvml, fake_kubelet,
                          tmp_path / "agent", [])
        try:
            yield environment
        finally:
            for agent in environment.agents:
                agent.kill()


def install(env: Env, deleting: bool = False) -> None:
    """The agent's DaemonSet and its pod (owned by it), as the chart and the DaemonSet controller make them."""
    env.cluster.call(lambda: env.cluster.emulator.resources.__setitem__(DAEMONSETS, ResourceInfo()))
    meta: dict[str, Any] = {"name": DAEMONSET, "namespace": AGENT_NS, "uid": DS_UID}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    env.cluster.put(DAEMONSETS, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta})
    env.cluster.put("v1/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": AGENT_POD, "namespace": AGENT_NS, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": DAEMONSET, "uid": DS_UID, "controller": True}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "agent", "image": "powerplanner-agent"}]},
        "status": {"phase": "Running"},
    })


class Sampler:
    """The sum of the node's limits, read from the fake NVML every few ms in a thread; ``peak_watts`` is the
    highest sum seen."""

    def __init__(self, env: Env) -> None:
        self._env = env
        self._stop = threading.Event()
        self.sums: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sums.append(sum(self._env.limits()))
            self._stop.wait(0.003)

    @property
    def peak_watts(self) -> float:
        return max(self.sums)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


def passes(agent: AgentProcess) -> float:
    return metric_value(agent.metrics(), "powerplanner_agent_reconcile_duration_seconds_count") or 0


def capped(env: Env, **config: Any) -> AgentProcess:
    """Worker pods on all 4 GPUs at 300 W each (a 1,200 W share; the originals are 2,800 W). Returns the agent
    once the caps are in force."""
    env.add_pod("prefill-0", [0, 1], "300")
    env.add_pod("decode-0", [2, 3], "300")
    agent = env.agent(environ=ENVIRON, **config)
    env.until(lambda: env.limits() == [300, 300, 300, 300])
    return agent



def test_sigterm_with_pods_running_leaves_the_limits_and_the_state_file(env: Env) -> None:
    install(env)
    agent = capped(env)
    recorded = env.state_file()
    with Sampler(env).running() as sampler:
        assert agent.terminate() == 0
    assert sampler.peak_watts == 1200 and env.limits() == [300, 300, 300, 300]
    assert env.state_file() == recorded == {env.uuid(i): 700.0 for i in range(4)}
    assert f"DaemonSet {AGENT_NS}/{DAEMONSET} is still there" in agent.log()
    assert "restored power limit" not in agent.log()


def test_a_restart_hands_over_without_a_watt_more(env: Env) -> None:
    install(env)
    first = capped(env, park=False)  # explicit: the release below goes to the original
    sets = len(env.nvml.set_calls())
    with Sampler(env).running() as sampler:
        assert first.terminate() == 0
        second = env.agent(environ=ENVIRON, park=False)
        env.until(lambda: passes(second) >= 1)
    assert sampler.peak_watts == 1200  # before, during and after the restart: never the 2,800 W of originals
    assert len(env.nvml.set_calls()) == sets  # the successor found every limit where it wanted it
    assert env.state_file() == {env.uuid(i): 700.0 for i in range(4)}
    env.delete_pod("decode-0")  # the successor knows the originals it did not record itself
    env.until(lambda: env.limits() == [300, 300, 700, 700] and env.state_file() == {env.uuid(0): 700.0,
                                                                                       env.uuid(1): 700.0})
    assert second.terminate() == 0 and env.limits() == [300, 300, 700, 700]


@pytest.mark.parametrize("how", ["deleted", "being_deleted"])
def test_sigterm_with_the_daemonset_gone_restores_every_gpu(env: Env, how: str) -> None:
    install(env, deleting=how == "being_deleted")
    agent = capped(env)
    if how == "deleted":
        env.cluster.delete(DAEMONSETS, AGENT_NS, DAEMONSET)
    assert agent.terminate() == 0
    assert env.limits() == [700, 700, 700, 700] and env.state_file() == {}
    assert "uninstall" in agent.log() and "restored power limit" in agent.log()


def test_restore_on_exit_never_keeps_the_limits_even_on_an_uninstall(env: Env) -> None:
    install(env)
    agent = capped(env, restore_on_exit="never")
    env.cluster.delete(DAEMONSETS, AGENT_NS, DAEMONSET)
    assert agent.terminate() == 0 and env.limits() == [300, 300, 300, 300]
    assert "restore_on_exit is never" in agent.log()


def test_restore_on_exit_always_restores_on_a_restart(env: Env) -> None:
    install(env)
    agent = capped(env, restore_on_exit="always")
    assert agent.terminate() == 0 and env.limits() == [700, 700, 700, 700] and env.state_file() == {}


def test_any_doubt_at_exit_keeps_the_limits_with_one_line_saying_why(env: Env) -> None:
    install(env)
    agent = capped(env)
    env.cluster.delete(DAEMONSETS, AGENT_NS, DAEMONSET)  # an uninstall, but the API fails the check
    env.cluster.inject("GET", "pods", name=AGENT_POD, status=503, times=100)
    assert agent.terminate() == 0 and env.limits() == [300, 300, 300, 300]
    [line] = [line for line in agent.log().splitlines() if "leaving the limits in force" in line]
    assert f"cannot read the agent's own pod {AGENT_NS}/{AGENT_POD}" in line and "503" in line

    second = env.agent()  # no POD_NAME / POD_NAMESPACE at all
    env.until(lambda: passes(second) >= 1)
    assert second.terminate() == 0 and env.limits() == [300, 300, 300, 300]
    assert "POD_NAME or POD_NAMESPACE is not set" in second.log()


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00garbage", b"", b'{"version": 2, "node": "gpu-node-2", "originals": {}}'],
    ids=["not_utf8", "empty", "other_node"],
)
def test_a_bad_state_file_is_kept_and_the_agent_starts(env: Env, raw: bytes) -> None:
    path = env.workdir / "agent-state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    env.nvml.update_gpu(3, limit_mw=300_000)  # a predecessor left GPU 3 capped; no pod holds it any more
    env.add_pod("p", [0], "250")
    agent = env.agent(environ=ENVIRON, park=False)  # explicit: GPU 3 is released to its original
    # No crash loop; GPU 3 gets NVML's default as its original (not stuck at 300 W), the cap applies.
    env.until(lambda: env.limits() == [250, 700, 700, 700])
    assert agent.proc is not None and agent.proc.poll() is None
    [aside] = sorted(Path(env.workdir).glob("agent-state.json.*.bad"))
    assert aside.read_bytes() == raw
    state = json.loads(path.read_text())
    assert state["version"] == 2 and state["node"] == NODE and state["originals"][env.uuid(0)] == 700.0
    assert agent.terminate() == 0
