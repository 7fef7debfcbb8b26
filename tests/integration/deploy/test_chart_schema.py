"""The chart refuses what it cannot run: values.schema.json (generated from values.yaml and the config model)
rejects typos through Helm's own engine, an install without an image tag or digest fails with one line, and the
optional objects (the `helm test` pod, the PrometheusRule, NOTES.txt) say what docs/install.md promises."""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

import pytest

from tests.integration.deploy.chart import CHART_DIR, VALUE_SETS, config_of, one, render_manifests, render_objects
from tests.integration.deploy.test_dashboard import planner_and_agent_names
from tests.support.repo import load_script

helm = pytest.importorskip("helm_python")


def _generator() -> ModuleType:
    return load_script("tools/gen_values_schema.py")


def test_committed_schema_is_what_the_tool_prints() -> None:
    committed = (CHART_DIR / "values.schema.json").read_text(encoding="utf-8")
    assert committed == _generator().render(), "values.schema.json is stale: run `python tools/gen_values_schema.py`"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"agent": {"nodeSelecter": {"pool": "gpu"}}}, "'/agent': additional properties 'nodeSelecter'"),
        ({"config": {"planner": {"adjustment_interval": 60}}},
         "'/config/planner': additional properties 'adjustment_interval'"),
        ({"config": {"planner": {"adjustment_interval_s": 0.5}}}, "'/config/planner/adjustment_interval_s'"),
        ({"config": {"budget": {"watts": None}}}, "'/config/budget': missing property 'watts'"),
        ({"image": {"digest": "latest"}}, "'/image/digest'"),
        ({"agent": {"metricsPort": "9401"}}, "'/agent/metricsPort': got string, want integer"),
    ],
)
def test_helm_refuses_values_the_schema_does_not_allow(values: dict[str, Any], where: str) -> None:
    # Helm's engine (helm-python-sdk) validates against values.schema.json before rendering anything.
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render_manifests(values)


def test_every_value_set_passes_the_schema_and_the_config_model_agrees() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from powerplanner.config import config_from_mapping

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    for name, values in VALUE_SETS.items():
        with helm.Chart.load(str(CHART_DIR)) as chart:
            chart.validate_schema(values)
        if "config" in values and "budget" in values["config"]:
            config_from_mapping(values["config"], name)  # what the schema admits, the model loads
    # The schema's config subtree is the model's: a field the model refuses, the schema refuses.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"config": {"budget": {"watts": 1000, "mode": "bogus"}}}, schema)


@pytest.mark.parametrize("key", ["image", "agentImage"])
def test_an_install_without_tag_or_digest_fails_with_one_line(key: str) -> None:
    with pytest.raises(helm.HelmRenderError) as failure:
        render_manifests({key: {"tag": ""}})
    message = str(failure.value).split("): ", 1)[-1]
    assert message.startswith(f"{key}.tag or {key}.digest is required") and "\n" not in message


def test_a_digest_wins_over_the_tag() -> None:
    objects = render_objects(VALUE_SETS["image-digests"])
    planner = one(objects, "Deployment", "-planner")["spec"]["template"]["spec"]["containers"][0]
    agent = one(objects, "DaemonSet", "-agent")["spec"]["template"]["spec"]["containers"][0]
    assert planner["image"] == "ghcr.io/powerplanner/powerplanner@sha256:" + "a" * 64
    assert agent["image"] == "ghcr.io/powerplanner/powerplanner-agent@sha256:" + "b" * 64
    tagged = one(render_objects({}), "Deployment", "-planner")["spec"]["template"]["spec"]["containers"][0]
    assert tagged["image"] == "ghcr.io/powerplanner/powerplanner:0.1.0"


def test_agent_is_node_critical_by_default() -> None:
    pod = one(render_objects({}), "DaemonSet", "-agent")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    pod = one(render_objects({"agent": {"priorityClassName": ""}}), "DaemonSet", "-agent")["spec"]["template"]["spec"]
    assert "priorityClassName" not in pod


def test_helm_test_pod_runs_verify_json_as_the_planner() -> None:
    objects = render_objects({})
    pod = one(objects, "Pod", "-verify")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == one(objects, "ServiceAccount", "-planner")["metadata"]["name"]
    container = spec["containers"][0]
    assert container["args"][0] == "verify" and "--json" in container["args"]
    config_path = container["args"][container["args"].index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == one(objects, "ConfigMap", "-planner-config")["metadata"]["name"]
    assert config_of(objects, "planner")["kubernetes"]["dgd_name"] == "llm"
    assert not [o for o in render_objects(VALUE_SETS["agent-only"]) if o["kind"] == "Pod"]


def test_notes_give_a_port_forward_recipe() -> None:
    notes = render_manifests({})["powerplanner/templates/NOTES.txt"]
    assert "kubectl -n dynamo port-forward svc/pp-powerplanner-planner 9400:9400" in notes
    assert "curl -s http://127.0.0.1:9400/metrics" in notes
    assert "helm test pp" in notes


def test_prometheus_rule_alerts_on_exported_metrics_only() -> None:
    assert not [o for o in render_objects({}) if o["kind"] == "PrometheusRule"]
    rule = one(render_objects(VALUE_SETS["alerts"]), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    rules = rule["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"PowerplannerBudgetExceeded", "PowerplannerAgentDown",
                                           "PowerplannerPlannerStale", "PowerplannerApplyFailures",
                                           "PowerplannerFeedbackBlind"}
    used = {m for r in rules for m in re.findall(r"\b(powerplanner_[a-z_]+)", r["expr"])}
    assert used - planner_and_agent_names() == set(), f"alerts on metrics nobody exports: {used}"
    for r in rules:
        assert r["labels"]["team"] == "inference" and r["labels"]["severity"] in {"warning", "critical"}
        assert re.fullmatch(r"\d+[smh]", r["for"])
    agent_down = next(r for r in rules if r["alert"] == "PowerplannerAgentDown")
    assert agent_down["expr"] == 'up{job=~"(.*/)?pp-powerplanner-agent"} == 0'
