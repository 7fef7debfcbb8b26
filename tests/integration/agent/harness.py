"""Run the real agent (``python -m powerplanner.cli agent``) as a subprocess against the fake peers.

Shared by the agent's integration tests and ``bench/agent_latency.py``. The agent loads the fake NVML
through ``LD_LIBRARY_PATH`` (set in :meth:`FakeNvml.env`), talks to the emulated Kubernetes API through a
kubeconfig file, and to the fake kubelet through its unix socket.
"""

from __future__ import annotations

import os
import signal
import socket
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
from tests.fixtures.nvml import FakeNvml

NODE = "gpu-node-1"
ANNOTATION = POWER_LIMIT_ANNOTATION
NAMESPACE = "llm"  # where pod_body puts pods, and the namespace the agent configs allow unless told otherwise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_kubeconfig(path: Path, server_url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emu", "cluster": {"server": server_url}}],
                "users": [{"name": "emu", "user": {"token": "test"}}],
                "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
                "current-context": "emu",
            }
        ),
        encoding="utf-8",
    )
    return path


def write_agent_config(
    directory: Path, server_url: str, kubelet_socket: Path, metrics_port: int, **agent: Any
) -> Path:
    """An agent config for the fake peers: the agent's defaults (parking on) except what ``agent`` overrides,
    with :data:`NAMESPACE` allowed (the agent's default allows no namespace)."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = write_kubeconfig(directory / "kubeconfig.yaml", server_url)
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
