"""What a `helm upgrade` restarts (docs/install.md, "Day two"). A budget change must restart nothing: rolling the
planner and every agent during an operation meant to cut power is the opposite of what was asked. The planner
reads the new budget from its mounted file (live/budget.py ConfigFileBudget); an agent setting rolls only the
agents; any other planner setting restarts only the planner.

Each test renders the chart twice with Helm's engine and compares what a Kubernetes controller compares: the
pod templates (a changed template is a rollout) and the ConfigMaps (a changed one reaches the pods through the
kubelet's volume update).
"""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from powerplanner.live.budget import ConfigFileBudget
from tests.integration.deploy.chart import VALUE_SETS, one, render_manifests, render_objects

PLANNER_CONFIG = ("ConfigMap", "pp-powerplanner-planner-config")
AGENT_CONFIG = ("ConfigMap", "pp-powerplanner-agent-config")
PLANNER = ("Deployment", "pp-powerplanner-planner")
AGENTS = ("DaemonSet", "pp-powerplanner-agent")
WORKLOAD_TEMPLATES = ("powerplanner/templates/planner-deployment.yaml", "powerplanner/templates/agent-daemonset.yaml")

# Base value sets to change from: the defaults and ones that switch optional branches on.
BASES = ("default", "monitoring", "admin-exposed-tls", "custom-scheduling")

budgets = st.one_of(st.integers(min_value=1, max_value=10**7),
                    st.floats(min_value=0.5, max_value=1e7, allow_nan=False, allow_infinity=False))

# Agent settings (config.agent) a user may change; each must roll the agents and nothing else.
AGENT_CHANGES: list[dict[str, Any]] = [
    {"park": False},
    {"park_watts": 150},
    {"resync_s": 10},
    {"floor_watts": 200, "ceiling_watts": 650},
    {"allowed_namespaces": ["dynamo", "other"]},
    {"new_pod_grace_s": 0},
    {"dry_run": True},
]
# Planner settings the planner reads only at start-up; each must restart the planner and leave the agents alone.
PLANNER_CHANGES: list[dict[str, Any]] = [
    {"sla": {"ttft_ms": 300}},
    {"budget": {"mode": "measured"}},
    {"budget": {"schedule": [{"start": "08:00", "watts": 9000}]}},
    {"planner": {"cap_interval_s": 2}},
    {"prometheus": {"url": "http://prom.example:9090"}},
    {"profile": {"name": "llama2-70b-h100-tp2"}},
]


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` merged in, as Helm merges a values file over another."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _objects(values: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render_objects(values)}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[tuple[str, str]]:
    """The objects whose rendering differs between two value sets (added or removed ones included)."""
    a, b = _objects(before), _objects(after)
    return {key for key in a.keys() | b.keys() if json.dumps(a.get(key), sort_keys=True) != json.dumps(b.get(key),
                                                                                                       sort_keys=True)}


def _pod_template(objects: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str]) -> dict[str, Any]:
    template: dict[str, Any] = objects[key]["spec"]["template"]
    return template


def _names(base: str) -> dict[str, tuple[str, str]]:
    """The object keys of a value set (fullnameOverride renames them)."""
    prefix = VALUE_SETS[base].get("fullnameOverride", "pp-powerplanner")
    return {key: (kind, name.replace("pp-powerplanner", prefix)) for key, (kind, name) in
            {"planner_config": PLANNER_CONFIG, "agent_config": AGENT_CONFIG, "planner": PLANNER,
             "agents": AGENTS}.items()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), before=budgets, after=budgets)
def test_a_budget_change_restarts_nothing_and_changes_only_the_planner_config(
    base: str, before: float, after: float
) -> None:
    assume(before != after)
    values = VALUE_SETS[base]
    old = _merged(values, {"config": {"budget": {"watts": before}}})
    new = _merged(values, {"config": {"budget": {"watts": after}}})
    old_text, new_text = render_manifests(old), render_manifests(new)
    for template in WORKLOAD_TEMPLATES:
        assert old_text[template] == new_text[template], f"{template} changed with the budget: a rollout"
    names = _names(base)
    assert _changed(old, new) == {names["planner_config"]}
    new_config = yaml.safe_load(_objects(new)[names["planner_config"]]["data"]["config.yaml"])
    assert new_config["budget"]["watts"] == after


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("change", AGENT_CHANGES, ids=lambda c: ",".join(c))
def test_an_agent_setting_rolls_only_the_agents(base: str, change: dict[str, Any]) -> None:
    values = VALUE_SETS[base]
    new = _merged(values, {"config": {"agent": change}})
    names = _names(base)
    assert _changed(values, new) == {names["agent_config"], names["agents"]}
    # The DaemonSet differs in its checksum only: the rollout comes from the agents' own config.
    old_template = _pod_template(_objects(values), names["agents"])
    new_template = _pod_template(_objects(new), names["agents"])
    assert old_template["metadata"]["annotations"]["checksum/config"] != (
        new_template["metadata"]["annotations"]["checksum/config"]
    )
    old_template["metadata"]["annotations"].pop("checksum/config")
    new_template["metadata"]["annotations"].pop("checksum/config")
    assert old_template == new_template


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("change", PLANNER_CHANGES, ids=lambda c: json.dumps(c, sort_keys=True))
def test_a_planner_setting_read_at_start_up_restarts_only_the_planner(base: str, change: dict[str, Any]) -> None:
    values = VALUE_SETS[base]
    new = _merged(values, {"config": change})
    names = _names(base)
    assert _changed(values, new) == {names["planner_config"], names["planner"]}


def test_without_hot_reload_a_budget_change_restarts_the_planner() -> None:
    # budget.reload_config: false means the planner reads budget.watts only at start-up; the checksum must then
    # cover it, or the new budget would never take effect.
    values = {"config": {"budget": {"reload_config": False}}}
    new = _merged(values, {"config": {"budget": {"watts": 9000}}})
    assert _changed(values, new) == {PLANNER_CONFIG, PLANNER}


def _kubelet_write(volume: Path, text: str, stamp: str) -> None:
    """Write a ConfigMap volume the way the kubelet's atomic writer does: files in a timestamped directory,
    the ``..data`` link swapped in one rename, the visible name a link through ``..data``."""
    target = volume / f"..{stamp}"
    target.mkdir()
    (target / "config.yaml").write_text(text)
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(target.name)
    old = (volume / "..data").resolve() if (volume / "..data").is_symlink() else None
    os.replace(tmp_link, volume / "..data")
    if not (volume / "config.yaml").is_symlink():
        (volume / "config.yaml").symlink_to("..data/config.yaml")
    if old is not None:
        for child in old.iterdir():
            child.unlink()
        old.rmdir()


def test_the_running_planner_reads_a_helm_budget_change_from_its_mounted_config(tmp_path: Path) -> None:
    """The path the checksum leaves to the file: Helm updates the ConfigMap in place, the kubelet swaps the
    mounted file, the planner's config source (the one `powerplanner run` builds) returns the new budget."""
    def planner_file(watts: float) -> str:
        objects = render_objects({"config": {"budget": {"watts": watts}}})
        text: str = one(objects, "ConfigMap", "-planner-config")["data"]["config.yaml"]
        return text

    volume = tmp_path / "etc-powerplanner"
    volume.mkdir()
    _kubelet_write(volume, planner_file(16000), "2026_01_01_00_00_00.1")
    source = ConfigFileBudget(volume / "config.yaml", 16000.0)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert source.read(now).watts == 16000
    _kubelet_write(volume, planner_file(9000), "2026_01_01_00_01_00.2")  # a cut: one digit shorter
    reading = source.read(now)
    assert (reading.watts, reading.error) == (9000, None)
    _kubelet_write(volume, planner_file(12000), "2026_01_01_00_02_00.3")
    assert source.read(now).watts == 12000
