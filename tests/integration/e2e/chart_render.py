"""What the Helm chart gives the agent and how a values change rolls the pods, from the chart's own render.

The agents of the fault paths and the whole-loop test run with the configuration file the chart mounts into the
agent DaemonSet for its default values (so "the default configuration" is the one a user installs), with only
the host-specific keys (metrics address, state file, kubelet socket, node name) pointed at this machine.
"""

from __future__ import annotations

import functools
import json
from pathlib import PurePosixPath
from typing import Any

import yaml

from tests.integration.deploy.chart import NAMESPACE, render_objects

# Host-specific keys the harness sets for each node (the chart fills them from host paths, ports and env).
HOST_KEYS = ("metrics_bind", "state_file", "kubelet_socket", "node_name", "proc_root")


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind]
    if len(found) != 1:
        raise AssertionError(f"the chart renders {len(found)} {kind} objects, expected 1")
    return found[0]


def mounted_config(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The config file the ``kind`` (DaemonSet: the agent, Deployment: the planner) reads: the ConfigMap key
    behind its container's ``--config`` path, parsed."""
    workload = _one(objects, kind)
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = [*container.get("command", []), *container.get("args", [])]
    path = PurePosixPath(args[args.index("--config") + 1])
    mount = max((m for m in container.get("volumeMounts", []) if path.is_relative_to(m["mountPath"])),
                key=lambda m: len(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    source = volume.get("configMap") or {}
    maps = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ConfigMap"}
    key = str(path.relative_to(mount["mountPath"])) if mount.get("subPath") is None else mount["subPath"]
    data = maps[source["name"]]["data"]
    parsed: dict[str, Any] = yaml.safe_load(data[key])
    return parsed


@functools.cache
def _default_agent_json() -> str:
    return json.dumps(mounted_config(render_objects({}), "DaemonSet").get("agent") or {})


def default_agent_settings() -> dict[str, Any]:
    """The agent section the chart renders for its default values, without the host-specific keys."""
    section: dict[str, Any] = json.loads(_default_agent_json())
    return {k: v for k, v in section.items() if k not in HOST_KEYS}


def pod_template_annotations(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The pod template annotations of the agent DaemonSet and the planner Deployment: a change of any of them
    makes Kubernetes roll that workload's pods."""
    return {name: dict(_one(objects, kind)["spec"]["template"]["metadata"].get("annotations") or {})
            for name, kind in (("agent", "DaemonSet"), ("planner", "Deployment"))}


def budget_change_rolls(old_watts: float, new_watts: float) -> dict[str, bool]:
    """Which workloads a ``helm upgrade --set config.budget.watts=<new>`` rolls (agent, planner)."""
    before = pod_template_annotations(render_objects({"config": {"budget": {"watts": old_watts}}}))
    after = pod_template_annotations(render_objects({"config": {"budget": {"watts": new_watts}}}))
    return {name: before[name] != after[name] for name in before}


__all__ = ["NAMESPACE", "budget_change_rolls", "default_agent_settings", "mounted_config"]
