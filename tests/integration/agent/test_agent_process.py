"""The real agent process against real peers: the fake NVML library (through the real pynvml), the fake
kubelet over gRPC and kmock's Kubernetes emulator through the real ``kubernetes`` client.

Each test starts ``python -m powerplanner.cli agent`` in a subprocess, changes pods through the API
(create, merge-patch, delete, as a user or the planner would) and watches the limits in the fake NVML.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from powerplanner.agent.policy import EMPTY_NAMESPACES_LINE
from powerplanner.contract import AGENT_CONTAINER_LABEL, AGENT_NAMESPACE_LABEL, AGENT_POD_LABEL
from tests.fixtures.k8s import EmulatedCluster
from tests.fixtures.kubelet import FakeKubelet, PodDevices
from tests.fixtures.nvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeNvml,
)
from tests.integration.agent.harness import (
    ANNOTATION,
    AgentProcess,
    free_port,
    metric_value,
    pod_body,
    wait_for,
    write_agent_config,
)

pytestmark = pytest.mark.integration


@dataclass
class Env:
    cluster: EmulatedCluster
    api: Any
    nvml: FakeNvml
    kubelet: FakeKubelet
    workdir: Path
    agents: list[AgentProcess]

    def uuid(self, index: int) -> str:
        return self.nvml.read().gpus[index].uuid

    def add_pod(self, name: str, gpus: list[int], watts: str | None, namespace: str = "llm",
                uid: str | None = None, dgd: str | None = "llm", device_ids: tuple[str, ...] = ()) -> None:
        """A pod holding ``gpus`` (or the kubelet's ``device_ids``); a Dynamo worker unless ``dgd`` is None."""
        self.api.create_namespaced_pod(namespace, pod_body(name, namespace, watts, uid=uid, dgd=dgd))
        devices = device_ids or tuple(self.uuid(i) for i in gpus)
        self.kubelet.set_pods(
            [p for p in self.kubelet.pods if (p.namespace, p.pod) != (namespace, name)]
            + ([PodDevices(namespace, name, "main", devices)] if devices else [])
        )

    def annotate(self, name: str, watts: str, namespace: str = "llm") -> None:
        self.api.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {ANNOTATION: watts}}})

    def delete_pod(self, name: str, namespace: str = "llm") -> None:
        self.kubelet.set_pods([p for p in self.kubelet.pods if (p.namespace, p.pod) != (namespace, name)])
        self.api.delete_namespaced_pod(name, namespace)

    def agent(self, *args: str, environ: dict[str, str] | None = None, **agent_config: Any) -> AgentProcess:
        port = free_port()
        socket_path = agent_config.pop("kubelet_socket", self.kubelet.socket_path)
        config = write_agent_config(self.workdir, self.cluster.url, socket_path, port, **agent_config)
        process = AgentProcess(config, self.nvml, port, self.workdir / f"agent-{len(self.agents)}.log",
                               extra_env=environ)
        self.agents.append(process)
        process.start(*args)
        process.wait_ready()
        return process

    def limits(self) -> list[float]:
        return self.nvml.limits_watts()

    def until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        if not wait_for(predicate, timeout_s):
            logs = "\n".join(a.log() for a in self.agents)
            raise AssertionError(f"condition not met in {timeout_s} s; limits {self.limits()}\n{logs}")

    def state_file(self) -> dict[str, float]:
        path = self.workdir / "agent-state.json"
        return json.loads(path.read_text())["originals"] if path.exists() else {}


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


def test_annotations_become_limits_and_sigterm_restores_every_changed_gpu(env: Env) -> None:
    env.add_pod("prefill-0", [0, 1], "300")
    env.add_pod("decode-0", [2], None)
    # A pod of another node (the emulator ignores the field selector; the agent filters client-side).
    env.api.create_namespaced_pod("llm", pod_body("elsewhere", "llm", "210", node="gpu-node-2"))
    env.kubelet.set_pods([*env.kubelet.pods, PodDevices("llm", "elsewhere", "main", (env.uuid(3),))])
    # Parking off and grace off: a GPU without a cap goes back to its original limit, and a holder the watch
    # never delivers is released at once (parking on keeps it parked: see the parking tests below); either way
    # its 210 W annotation is never applied.
    # restore_on_exit always: this test is about the restore path (the default hands over: test_agent_lifecycle).
    agent = env.agent(new_pod_grace_s=0, park=False, restore_on_exit="always")
    env.until(lambda: env.limits() == [300, 300, 700, 700])
    assert env.state_file() == {env.uuid(0): 700.0, env.uuid(1): 700.0}

    env.annotate("prefill-0", "250")
    env.until(lambda: env.limits() == [250, 250, 700, 700])
    env.annotate("decode-0", "400")
    env.until(lambda: env.limits() == [250, 250, 400, 700])
    text = agent.metrics()
    workload = {AGENT_POD_LABEL: "prefill-0", AGENT_NAMESPACE_LABEL: "llm", AGENT_CONTAINER_LABEL: "main"}
    assert metric_value(text, "powerplanner_agent_gpu_power_limit_applied_watts", gpu="0", **workload) == 250
    assert metric_value(text, "powerplanner_agent_gpu_power_limit_requested_watts", gpu="2",
                        **{AGENT_POD_LABEL: "decode-0"}) == 400
    assert metric_value(text, "powerplanner_agent_gpu_power_draw_watts", gpu="0") == 250  # min(demand, limit)
    assert metric_value(text, "powerplanner_agent_gpu_energy_joules_total", gpu="1") == 2000

    def passes() -> float:
        return metric_value(agent.metrics(), "powerplanner_agent_reconcile_duration_seconds_count") or 0

    sets, before = len(env.nvml.set_calls()), passes()
    env.api.patch_namespaced_pod("decode-0", "llm", {"metadata": {"labels": {"unrelated": "change"}}})
    env.add_pod("idle-0", [], None)
    env.until(lambda: passes() > before)
    assert len(env.nvml.set_calls()) == sets  # a pass ran, nothing changed, nothing was written

    env.delete_pod("prefill-0")
    env.until(lambda: env.limits() == [700, 700, 400, 700] and env.state_file() == {env.uuid(2): 700.0})

    env.add_pod("prefill-1", [3], "220")
    env.until(lambda: env.limits() == [700, 700, 400, 220])
    assert agent.terminate() == 0
    assert env.limits() == [700, 700, 700, 700]
    assert env.state_file() == {}
    assert "restored power limit" in agent.log()


BAD = [("abc", "not_integer"), ("-5", "not_positive"), ("0", "not_positive"), ("1e9", "not_integer"),
       ("250.5", "not_integer"), ("", "empty"), ("２５０", "not_integer"), ("7" * 10_000, "too_long")]


def test_bad_annotations_are_refused_with_metric_and_log_and_the_gpu_keeps_its_limit(env: Env) -> None:
    env.add_pod("p", [0], "300")
    agent = env.agent()
    env.until(lambda: env.limits()[0] == 300)
    for raw, reason in BAD:
        before = metric_value(agent.metrics(), "powerplanner_agent_annotation_rejections_total", reason=reason) or 0
        env.annotate("p", raw)
        env.until(lambda r=reason, b=before: (  # type: ignore[misc]
            metric_value(agent.metrics(), "powerplanner_agent_annotation_rejections_total", reason=r) or 0) > b)
        assert env.limits()[0] == 300
        env.annotate("p", "300")  # back to a good value, so that the next bad one is a new rejection
    log = agent.log()
    assert log.count("gpu-power-limit") >= len(BAD) and "positive integer of watts" in log
    assert max(len(line) for line in log.splitlines()) < 500  # the 10 kB value is not echoed
    assert agent.terminate() == 0 and env.limits()[0] == 300  # handed over: SIGTERM leaves the cap


def test_nvml_errors_on_set_and_a_lost_gpu(env: Env) -> None:
    env.add_pod("p", [0, 1, 2, 3], "300")
    env.nvml.inject_error("nvmlDeviceSetPowerManagementLimit", 0, NVML_ERROR_NO_PERMISSION, times=1)
    env.nvml.inject_error("nvmlDeviceSetPowerManagementLimit", 1, NVML_ERROR_NOT_SUPPORTED, times=1)
    agent = env.agent(resync_s=0.5, restore_on_exit="always")
    env.nvml.inject_error("*", 3, NVML_ERROR_GPU_IS_LOST)  # falls off the bus after start-up
    env.until(lambda: env.limits()[:3] == [300, 300, 300])  # the failed sets are retried at the resync

    def counted() -> bool:
        text = agent.metrics()
        return all((metric_value(text, "powerplanner_agent_apply_failures_total", reason=reason) or 0) >= 1
                   for reason in ("no_permission", "not_supported", "gpu_lost"))

    env.until(counted)
    assert agent.proc is not None and agent.proc.poll() is None
    env.nvml.clear_errors()  # the GPU is back
    env.until(lambda: env.limits() == [300, 300, 300, 300])
    assert agent.terminate() == 0 and env.limits() == [700, 700, 700, 700]


def test_kubelet_socket_missing_falls_back_to_nvml_processes_and_cgroups(env: Env) -> None:
    uid = "0badc0de-1111-2222-3333-444455556666"
    proc = env.workdir / "proc" / "4242"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/"
        f"cri-containerd-{'e' * 64}.scope\n"
    )
    env.nvml.update_gpu(1, procs=(4242,))
    env.add_pod("decode-0", [], "280", uid=uid)
    agent = env.agent(kubelet_socket=str(env.workdir / "no-such-kubelet.sock"))
    env.until(lambda: env.limits() == [200, 280, 200, 200])  # the GPUs no process of a pod uses are parked
    assert agent.terminate() == 0 and env.limits()[1] == 280  # handed over


def test_kubelet_hanging_times_out_and_keeps_the_last_mapping(env: Env) -> None:
    env.add_pod("p", [0], "300")
    agent = env.agent(kubelet_timeout_s=0.3)
    env.until(lambda: env.limits()[0] == 300)
    env.kubelet.hang_s = 2.0
    env.annotate("p", "260")
    env.until(lambda: env.limits()[0] == 260)  # applied with the last known mapping
    env.until(lambda: (metric_value(agent.metrics(), "powerplanner_agent_mapping_failures_total",
                                    reason="kubelet_timeout") or 0) >= 1)
    env.kubelet.hang_s = 0.0
    assert agent.terminate() == 0 and env.limits()[0] == 260  # handed over


def _drop_watches(cluster: EmulatedCluster) -> None:
    """Break every open watch stream on the server side (kmock raises the error inside the stream)."""

    async def drop() -> None:
        for bus in list(cluster.emulator._buses.values()):
            await bus.put(ConnectionResetError("dropped by the test"))

    cluster._submit(drop())


def test_watch_5xx_and_dropped_watch_recover(env: Env) -> None:
    env.add_pod("p", [0], "300")
    env.cluster.inject("GET", "pods", status=500, times=2)
    env.cluster.inject("GET", "pods", status=503, times=1)
    agent = env.agent()
    env.until(lambda: env.limits()[0] == 300)
    restarts = agent.metrics()
    assert (metric_value(restarts, "powerplanner_agent_watch_restarts_total", reason="http_500") or 0) >= 2
    assert (metric_value(restarts, "powerplanner_agent_watch_restarts_total", reason="http_503") or 0) >= 1
    _drop_watches(env.cluster)
    env.annotate("p", "280")
    env.until(lambda: env.limits()[0] == 280)
    assert agent.terminate() == 0 and env.limits()[0] == 280  # handed over


def test_killed_mid_apply_then_restarted_recovers_and_restores_the_original(env: Env) -> None:
    env.add_pod("p", [0], "300")
    env.nvml.set_delay("nvmlDeviceSetPowerManagementLimit", 5000)
    first = env.agent(park=False)  # parking off: only GPU 0 is ever changed
    env.until(lambda: env.state_file() == {env.uuid(0): 700.0})  # recorded before the set, which now hangs
    first.signal(signal.SIGKILL)
    first.wait()
    env.nvml.clear_errors()
    assert env.limits()[0] == 700
    second = env.agent(park=False)
    env.until(lambda: env.limits()[0] == 300)
    assert env.state_file() == {env.uuid(0): 700.0}  # still the true original, not a cap
    env.delete_pod("p")
    env.until(lambda: env.limits()[0] == 700 and env.state_file() == {})
    env.add_pod("q", [1], "310")
    env.until(lambda: env.limits()[1] == 310)
    second.signal(signal.SIGKILL)
    second.wait()
    env.delete_pod("q")
    third = env.agent(park=False)  # start-up restores the GPU whose pod is gone
    env.until(lambda: env.limits() == [700, 700, 700, 700] and env.state_file() == {})
    assert third.terminate() == 0


def test_dry_run_changes_nothing(env: Env) -> None:
    env.add_pod("p", [0], "300")
    agent = env.agent("--dry-run")
    env.until(lambda: "would set GPU 0" in agent.log())
    assert agent.terminate() == 0
    assert env.nvml.set_calls() == [] and env.state_file() == {}


def test_nvml_init_failure_is_one_clear_line(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("budget: {watts: 1000}\nagent: {node_name: n1}\n")
    environ = fake_nvml.env()
    environ["FAKE_NVML_STATE"] = str(tmp_path / "missing")  # the fake then reports DRIVER_NOT_LOADED
    out = subprocess.run([sys.executable, "-m", "powerplanner.cli", "agent", "--config", str(config)],
                         env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "NVML" in lines[0] and "Traceback" not in out.stderr


def test_metrics_port_taken_is_one_clear_line(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_agent_config(tmp_path, "http://127.0.0.1:9", tmp_path / "none.sock", port)
        out = subprocess.run([sys.executable, "-m", "powerplanner.cli", "agent", "--config", str(config)],
                             env=fake_nvml.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "metrics_bind" in errors[0]
    assert fake_nvml.set_calls() == []


def test_simulated_gpus_for_a_demo(env: Env) -> None:
    env.api.create_namespaced_pod("llm", pod_body("p", "llm", "300"))
    env.kubelet.set_pods([PodDevices("llm", "p", "main", ("GPU-sim-0001",))])
    agent = env.agent("--simulate-gpus", "2")
    env.until(lambda: metric_value(agent.metrics(), "powerplanner_agent_gpu_power_limit_applied_watts",
                                   uuid="GPU-sim-0001") == 300)
    assert agent.terminate() == 0
    assert env.nvml.set_calls() == []  # the real (fake) NVML is never touched


def test_parking_by_default_new_workers_wait_parked_and_freed_gpus_go_back_to_the_park_limit(env: Env) -> None:
    """The defaults (parking on): free GPUs and a worker without its cap sit at the GPU minimum (200 W), the
    worker rises when its cap arrives, and a GPU whose pod is gone goes back to the park limit, not to 700 W."""
    env.add_pod("prefill-0", [0], None)
    env.add_pod("other-app", [3], "1", dgd=None)  # not a Dynamo worker: its GPU is released, its "1" ignored
    agent = env.agent()
    env.until(lambda: env.limits() == [200, 200, 200, 700])
    env.annotate("prefill-0", "450")
    env.until(lambda: env.limits() == [450, 200, 200, 700])
    env.add_pod("decode-0", [1], "380")
    env.until(lambda: env.limits() == [450, 380, 200, 700])
    env.delete_pod("prefill-0")
    env.until(lambda: env.limits() == [200, 380, 200, 700])
    assert agent.proc is not None and agent.proc.poll() is None


def test_a_time_sliced_gpu_keeps_the_workers_cap_whatever_tenants_ask(env: Env) -> None:
    """The issue's case: a worker asks 450 W on a time-sliced GPU; a DGD-labelled tenant in another namespace and
    an unlabelled pod in the worker's namespace both ask "1" on slices of the same GPU. Before, 200 W."""
    gpu = env.uuid(1)
    env.add_pod("decode-0", [], "450", device_ids=(f"{gpu}::0",))
    env.add_pod("job", [], "1", namespace="tenant", device_ids=(f"{gpu}::1",))
    env.add_pod("notebook", [], "1", dgd=None, device_ids=(f"{gpu}::2",))
    agent = env.agent()
    env.until(lambda: env.limits()[1] == 450)
    env.annotate("decode-0", "430")  # a pass after the tenants are known: still the worker's cap
    env.until(lambda: env.limits()[1] == 430)
    assert metric_value(agent.metrics(), "powerplanner_agent_gpu_power_limit_requested_watts", gpu="1",
                        **{AGENT_POD_LABEL: "decode-0", AGENT_NAMESPACE_LABEL: "llm"}) == 430
    assert "tenant/job" not in agent.log() and "llm/notebook" not in agent.log()  # their annotations are not read


@pytest.mark.parametrize("park", [True, False])
def test_a_holder_the_watch_cannot_deliver_stays_parked_while_parking_is_on(env: Env, park: bool) -> None:
    """The agent's API access fails mid-run (403 on every pod list and watch), and the kubelet hands a GPU to a
    pod the agent cannot see. Parking on: that GPU stays at the park limit past the grace, for as long as the
    API stays unreachable. Parking off: it goes back to 700 W once the grace (1 s here) is over."""
    env.add_pod("prefill-0", [0], "300")
    agent = env.agent(park=park, new_pod_grace_s=1.0, resync_s=0.5)
    env.until(lambda: env.limits()[0] == 300)
    env.cluster.inject("GET", "pods", status=403, times=100_000)
    _drop_watches(env.cluster)
    env.until(lambda: (metric_value(agent.metrics(), "powerplanner_agent_watch_restarts_total", reason="http_403")
                       or 0) >= 1)
    env.kubelet.set_pods([*env.kubelet.pods, PodDevices("llm", "prefill-1", "main", (env.uuid(1),))])

    def passes() -> float:
        return metric_value(agent.metrics(), "powerplanner_agent_reconcile_duration_seconds_count") or 0

    if park:
        env.until(lambda: env.limits()[1] == 200)  # parked: it may be a new worker
        time.sleep(1.5)  # past the grace; then let at least two more passes run
        seen = passes()
        env.until(lambda: passes() >= seen + 2)
        assert env.limits()[:2] == [300, 200]
    else:
        env.until(lambda: env.limits()[1] == 700)
    env.cluster.clear_faults()


def test_no_allowed_namespace_honours_no_cap_and_says_so(env: Env) -> None:
    env.add_pod("prefill-0", [0], "300")
    agent = env.agent(allowed_namespaces=[])
    # Free GPUs are parked; the pod is not managed (as any pod of a namespace not allowed), so its 300 W is
    # ignored and its GPU keeps its original limit.
    env.until(lambda: env.limits() == [700, 200, 200, 200])
    count = "powerplanner_agent_reconcile_duration_seconds_count"
    seen = metric_value(agent.metrics(), count) or 0
    env.annotate("prefill-0", "250")  # the pod change wakes a pass, which changes nothing
    env.until(lambda: (metric_value(agent.metrics(), count) or 0) > seen)
    assert env.limits() == [700, 200, 200, 200]
    assert agent.log().count(EMPTY_NAMESPACES_LINE) == 1
