"""Run the real agent (``python -m powerplanner.cli agent``) as a subprocess against the fake peers.

Shared by the agent's integration tests and ``bench/agent_latency.py``. The agent loads the fake NVML
through ``LD_LIBRARY_PATH`` (set in :meth:`FakeNvml.env`), talks to the emulated Kubernetes API through a
kubeconfig file, and to the fake kubelet through its unix socket. :class:`Env` is one node of those peers
(the ``env`` fixture in conftest.py builds it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from powerplanner.contract import DGD_LABEL, POWER_LIMIT_ANNOTATION
from tests.fixtures.k8s import EmulatedCluster
from tests.fixtures.kubelet import FakeKubelet, PodDevices
from tests.fixtures.nvml import FakeNvml
from tests.support.kubeconfig import write_kubeconfig
from tests.support.network import free_port

NODE = "gpu-node-1"
ANNOTATION = POWER_LIMIT_ANNOTATION
NAMESPACE = "llm"  # where pod_body puts pods, and the namespace the agent configs allow unless told otherwise


def write_agent_config(
    directory: Path, server_url: str, kubelet_socket: Path, metrics_port: int,
    kubeconfig_user: dict[str, object] | None = None, **agent: Any
) -> Path:
    """An agent config for the fake peers: the agent's defaults (parking on) except what ``agent`` overrides,
    with :data:`NAMESPACE` allowed (the agent's default allows no namespace)."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = write_kubeconfig(directory / "kubeconfig.yaml", server_url, kubeconfig_user)
    section = {
        "node_name": NODE,
        "state_file": str(directory / "agent-state.json"),
        "kubelet_socket": str(kubelet_socket),
        "kubelet_timeout_s": 0.5,
        "metrics_bind": f"127.0.0.1:{metrics_port}",
        "resync_s": 5.0,
        "proc_root": str(directory / "proc"),
        "allowed_namespaces": [NAMESPACE],
    }
    section.update(agent)
    config = {"budget": {"watts": 10000}, "kubernetes": {"kubeconfig": str(kubeconfig)}, "agent": section}
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def pod_body(name: str, namespace: str = NAMESPACE, watts: str | None = None, node: str = NODE,
             uid: str | None = None, dgd: str | None = "llm") -> dict[str, Any]:
    """A running pod on ``node``; a Dynamo worker of DGD ``dgd`` (its label) unless ``dgd`` is None."""
    annotations = {ANNOTATION: watts} if watts is not None else {}
    labels = {DGD_LABEL: dgd} if dgd is not None else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
                     "annotations": annotations, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "vllm"}]},
        "status": {"phase": "Running"},
    }


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


@dataclass
class AgentProcess:
    """One agent subprocess; stderr goes to a log file the test can read."""

    config_path: Path
    nvml: FakeNvml
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] | None = None  # e.g. POD_NAME / POD_NAMESPACE, as the chart's downward API sets

    def start(self, *extra_args: str) -> AgentProcess:
        env = self.nvml.env()
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env or {})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "powerplanner.cli", "agent", "--config", str(self.config_path), *extra_args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text

    def metrics_up(self) -> bool:
        try:
            return self.metrics().startswith("#")
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        if not wait_for(lambda: self.metrics_up() or (self.proc is not None and self.proc.poll() is not None),
                        timeout_s, 0.05) or not self.metrics_up():
            raise AssertionError(f"agent did not come up:\n{self.log()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def wait(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.close()

    def terminate(self, timeout_s: float = 15.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if hasattr(self, "_log"):
            self._log.close()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels`` (Prometheus text format)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


@dataclass
class Env:
    """One agent test's node: the emulated cluster (and a client of it), the fake NVML and kubelet, a work
    directory, and the agents started on it (killed when the test ends)."""

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

    def agent(self, *args: str, environ: dict[str, str] | None = None,
              kubeconfig_user: dict[str, object] | None = None, **agent_config: Any) -> AgentProcess:
        port = free_port()
        socket_path = agent_config.pop("kubelet_socket", self.kubelet.socket_path)
        config = write_agent_config(self.workdir, self.cluster.url, socket_path, port, kubeconfig_user, **agent_config)
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
