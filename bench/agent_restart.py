"""Provisioned power of a node's GPUs before, during and after an agent restart, per ``agent.restore_on_exit``.

Runs the real agent process (``powerplanner agent``) against the test peers (fake NVML through the real pynvml,
the fake kubelet, kmock's emulator serving the pods, the agent's own pod and its DaemonSet, as in a DaemonSet
rollout). Every GPU of the node is held by a worker pod capped at ``--cap-watts``; then, ``--restarts`` times,
the agent gets SIGTERM and a new one is started on the same state file, and the sum of the limits in force is
read from the fake NVML every ``--poll-ms`` from before the SIGTERM until the new agent's first pass plus
``--tail-s``.

Prints one JSON object: per mode, ``share_watts`` (the caps' sum), ``peak_watts``, ``worst_ratio`` (peak/share),
``seconds_over`` (time above the share, summed over the restarts) and ``after_watts``.

    .venv/bin/python bench/agent_restart.py [--restarts 5] [--gpus 4] [--modes uninstall,always]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the peers live in tests/fixtures

AGENT_NS, AGENT_POD, DAEMONSET, DS_UID = "powerplanner", "pp-agent-x7k2q", "pp-agent", "5e1f-0001"


def register_daemonsets(cluster: Any, info: Any) -> None:
    """kmock serves only the resources it is told about."""
    cluster.call(lambda: cluster.emulator.resources.__setitem__("apps/v1/daemonsets", info))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--cap-watts", type=int, default=300)
    parser.add_argument("--poll-ms", type=float, default=2.0)
    parser.add_argument("--tail-s", type=float, default=0.5)
    parser.add_argument("--modes", default="uninstall,always")
    args = parser.parse_args(argv)

    import kubernetes
    from kmock import ResourceInfo
    from tests.fixtures.k8s import EmulatedCluster
    from tests.fixtures.kubelet import FakeKubelet, PodDevices, short_socket_dir
    from tests.fixtures.nvml import build_fake_nvml, default_gpus, new_fake_nvml
    from tests.integration.agent.harness import (
        NODE,
        AgentProcess,
        free_port,
        metric_value,
        pod_body,
        write_agent_config,
    )

    work = Path(tempfile.mkdtemp(prefix="agent-restart-"))
    socket_dir = short_socket_dir()
    kubelet = FakeKubelet(socket_dir / "kubelet.sock")
    kubelet.start()
    agents: list[AgentProcess] = []
    results: dict[str, Any] = {}
    try:
        lib = build_fake_nvml(work / "lib")
        for mode in args.modes.split(","):
            nvml = new_fake_nvml(lib, work / mode / "nvml", default_gpus(args.gpus))
            uuids = [g.uuid for g in nvml.read().gpus]
            with EmulatedCluster() as cluster:
                api: Any = kubernetes.client.CoreV1Api(cluster.api_client())
                register_daemonsets(cluster, ResourceInfo())
                cluster.put("apps/v1/daemonsets", {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                                   "metadata": {"name": DAEMONSET, "namespace": AGENT_NS,
                                                                "uid": DS_UID}})
                cluster.put("v1/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": AGENT_POD, "namespace": AGENT_NS, "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": DAEMONSET, "uid": DS_UID,
                         "controller": True}]}, "spec": {"nodeName": NODE}, "status": {"phase": "Running"}})
                for i in range(args.gpus):
                    api.create_namespaced_pod("llm", pod_body(f"worker-{i}", "llm", str(args.cap_watts)))
                kubelet.set_pods([PodDevices("llm", f"worker-{i}", "main", (uuids[i],)) for i in range(args.gpus)])
                share = float(args.cap_watts * args.gpus)
                port = free_port()
                config = write_agent_config(work / mode / "agent", cluster.url, kubelet.socket_path, port,
                                            restore_on_exit=mode)

                def start(index: int, config: Path = config, port: int = port, nvml: Any = nvml,
                          mode: str = mode) -> AgentProcess:
                    agent = AgentProcess(config, nvml, port, work / mode / f"agent-{index}.log",
                                         extra_env={"POD_NAME": AGENT_POD, "POD_NAMESPACE": AGENT_NS}).start()
                    agents.append(agent)
                    agent.wait_ready(60)
                    return agent

                def passes(agent: AgentProcess) -> float:
                    try:
                        return metric_value(agent.metrics(), "powerplanner_agent_reconcile_duration_seconds_count") or 0
                    except Exception:  # not listening yet
                        return 0

                agent = start(0)
                deadline = time.monotonic() + 30
                while sum(nvml.limits_watts()) != share and time.monotonic() < deadline:
                    time.sleep(0.01)
                before = sum(nvml.limits_watts())
                peak, over_s = before, 0.0
                poll_s = args.poll_ms / 1000.0
                for n in range(1, args.restarts + 1):
                    last = time.monotonic()
                    agent.signal(15)
                    nxt: AgentProcess | None = None
                    done_at: float | None = None
                    exited = False
                    while True:
                        watts = sum(nvml.limits_watts())
                        now = time.monotonic()
                        if watts > share + 1e-6:
                            over_s += now - last
                        last = now
                        peak = max(peak, watts)
                        if not exited and agent.proc is not None and agent.proc.poll() is not None:
                            agent.wait()
                            exited = True
                            nxt = AgentProcess(config, nvml, port, work / mode / f"agent-{n}.log",
                                               extra_env={"POD_NAME": AGENT_POD, "POD_NAMESPACE": AGENT_NS}).start()
                            agents.append(nxt)
                        if nxt is not None and done_at is None and passes(nxt) >= 1:
                            done_at = now
                        if done_at is not None and now - done_at >= args.tail_s:
                            break
                        time.sleep(poll_s)
                    assert nxt is not None
                    agent = nxt
                after = sum(nvml.limits_watts())
                agent.terminate()
                results[mode] = {
                    "share_watts": share,
                    "before_watts": before,
                    "peak_watts": peak,
                    "worst_ratio": round(peak / share, 3),
                    "seconds_over": round(over_s, 2),
                    "seconds_over_per_restart": round(over_s / args.restarts, 2),
                    "after_watts": after,
                    "originals_watts": sum(g.default_mw for g in nvml.read().gpus) / 1000,
                }
    finally:
        for agent in agents:
            agent.kill()
        kubelet.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"restarts": args.restarts, "gpus": args.gpus, "modes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
