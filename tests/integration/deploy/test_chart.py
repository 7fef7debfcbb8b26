"""The chart renders for every value set, every object is valid Kubernetes, and the objects say what
docs/install.md promises (non-root planner, GPU-node agent with the host paths it needs, a config the
planner accepts)."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from powerplanner.config import config_from_mapping, load_agent_config
from powerplanner.hostport import split_host_port
from tests.integration.deploy.chart import (
    CHART_DIR,
    NAMESPACE,
    VALUE_SETS,
    by_kind,
    config_of,
    one,
    render_manifests,
    render_objects,
    with_images,
)
from tests.support.repo import REPO_ROOT

kubernetes_validate = pytest.importorskip("kubernetes_validate")

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema set shipped offline.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())

# Prometheus Operator objects are CRDs: kubernetes-validate ships schemas for built-in kinds only, so they are
# checked structurally below (fields the operator requires) instead of against an OpenAPI schema.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}


@functools.cache
def _objects(value_set: str) -> tuple[dict[str, Any], ...]:
    return tuple(render_objects(VALUE_SETS[value_set]))


def _objs(value_set: str) -> list[dict[str, Any]]:
    return json.loads(json.dumps(list(_objects(value_set))))  # a private copy per test


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid(value_set: str) -> None:
    objects = _objs(value_set)
    assert objects, "the chart rendered nothing"
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            if obj["kind"] != "PrometheusRule":  # checked in test_chart_schema.py
                _check_monitor(obj)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "two objects with the same kind and name"


def _check_monitor(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    assert spec["selector"]["matchLabels"]
    endpoints = spec["podMetricsEndpoints"] if obj["kind"] == "PodMonitor" else spec["endpoints"]
    assert endpoints and all(e["port"] == "metrics" and e["path"] == "/metrics" for e in endpoints)
    if obj["metadata"]["labels"]["app.kubernetes.io/component"] == "agent":
        # The agent's workload labels must survive any scrape-side label of the same name (docs/install.md).
        assert all(e["honorLabels"] is True for e in endpoints), obj["metadata"]["name"]


def test_default_renders_the_expected_objects() -> None:
    kinds = sorted(o["kind"] for o in _objs("default"))
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "ConfigMap", "DaemonSet", "Deployment", "Pod", "Role", "Role", "RoleBinding",
         "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Service", "Service", "ServiceAccount", "ServiceAccount"]
    )


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_each_rendered_config_is_accepted_by_the_loader_of_its_reader(value_set: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    objects = _objs(value_set)
    values = VALUE_SETS[value_set]
    expected_ns = values.get("config", {}).get("kubernetes", {}).get("namespace", NAMESPACE)
    ports: dict[str, str] = {}
    if values.get("planner", {}).get("enabled", True):
        planner = config_from_mapping(config_of(objects, "planner"), "chart planner config")
        assert "agent" not in config_of(objects, "planner"), "an agent setting in the planner's file would restart it"
        assert planner.kubernetes.namespace == expected_ns
        ports["Deployment"] = str(split_host_port(planner.serve.metrics_bind)[1])
    # The agent's own loader, on the file as the agent reads it.
    agent_file = tmp_path / "config.yaml"
    agent_file.write_text(one(objects, "ConfigMap", "-agent-config")["data"]["config.yaml"])
    agent = load_agent_config(agent_file).agent
    assert set(config_of(objects, "agent")) == {"agent"}, "the agents' file holds their section only"
    ports["DaemonSet"] = str(split_host_port(agent.metrics_bind)[1])
    for kind, port_number in ports.items():
        workload = one(objects, kind)
        container = workload["spec"]["template"]["spec"]["containers"][0]
        port = next(p for p in container["ports"] if p["name"] == "metrics")
        assert str(port["containerPort"]) == port_number, f"{kind} /metrics port disagrees with its config"
        # A directory mount (no subPath): the kubelet updates it in place, which is how a budget reaches the planner.
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["config"]["mountPath"] == "/etc/powerplanner" and mounts["config"].get("subPath") is None
        assert container["args"][2] == "/etc/powerplanner/config.yaml"
        volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        component = "planner" if kind == "Deployment" else "agent"
        assert volume["configMap"]["name"] == one(objects, "ConfigMap", f"-{component}-config")["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, [NAMESPACE]),
        ({"config": {"kubernetes": {"namespace": "inference"}}}, ["inference"]),
        ({"config": {"agent": {"allowed_namespaces": ["a", "b"]}}}, ["a", "b"]),
        ({"config": {"agent": {"allowed_namespaces": []}}}, []),  # explicit: no namespace may request caps
    ],
)
def test_agents_honour_caps_from_the_dgd_namespace_by_default(values: dict[str, Any], expected: list[str]) -> None:
    agent = config_of(render_objects(values), "agent")["agent"]
    assert agent["allowed_namespaces"] == expected
    assert agent["park"] is True


def test_parking_can_be_turned_off() -> None:
    assert config_of(render_objects({"config": {"agent": {"park": False}}}), "agent")["agent"]["park"] is False


def test_planner_is_non_root_read_only_without_capabilities() -> None:
    deployment = one(_objs("default"), "Deployment", "-planner")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["args"] == ["run", "--config", "/etc/powerplanner/config.yaml"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["serviceAccountName"] == one(_objs("default"), "ServiceAccount", "-planner")["metadata"]["name"]


def test_two_planners_elect_a_leader_and_roll_one_at_a_time() -> None:
    """planner.replicas > 1: leader election on (a Lease in the release namespace), RollingUpdate that never
    leaves zero planners, the identity from the downward API, probes a follower passes too."""
    objects = _objs("ha")
    deployment = one(objects, "Deployment", "-planner")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    le = config_of(objects, "planner")["leader_election"]
    assert le["enabled"] is True and le["namespace"] == deployment["metadata"]["namespace"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env[le.get("identity_env", "POD_NAME")]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any(r["metadata"]["name"].endswith("-planner-leader") for r in by_kind(objects, "Role"))
    alerts = render_objects({**VALUE_SETS["alerts"], "planner": {"replicas": 2}})
    no_leader = [r for r in one(alerts, "PrometheusRule")["spec"]["groups"][0]["rules"]
                 if r["alert"] == "PowerplannerNoLeader"]
    assert [r["expr"] for r in no_leader] == ['max(powerplanner_leader{job=~"(.*/)?pp-powerplanner-planner"}) < 1']
    single = _objs("default")
    assert "leader_election" not in config_of(single, "planner")
    assert not any(r["metadata"]["name"].endswith("-planner-leader") for r in by_kind(single, "Role"))


def test_agent_runs_on_gpu_nodes_with_pod_resources_read_only_and_nvml() -> None:
    objects = _objs("default")
    pod = one(objects, "DaemonSet", "-agent")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["agent", "--config", "/etc/powerplanner/config.yaml"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["runtimeClassName"] == "nvidia"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["pod-resources"]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    assert mounts["pod-resources"]["readOnly"] is True
    assert volumes["state"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert mounts["state"].get("readOnly") is not True
    sc = container["securityContext"]
    assert sc["runAsUser"] == 0 and sc.get("privileged") is not True
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert sc["readOnlyRootFilesystem"] is True
    # Its own pod and namespace, to find its DaemonSet at exit (hand over on restart, restore on uninstall).
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    config = config_of(objects, "agent")
    assert config["agent"]["kubelet_socket"].startswith(mounts["pod-resources"]["mountPath"] + "/")
    assert config["agent"]["state_file"].startswith(mounts["state"]["mountPath"] + "/")
    assert "hostPID" not in pod


def test_agent_privileged_option() -> None:
    pod = one(_objs("agent-privileged"), "DaemonSet", "-agent")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["privileged"] is True
    assert "runtimeClassName" not in pod
    assert pod["hostPID"] is True
    assert container["args"][-1] == "--dry-run"


def test_admin_endpoint_with_a_chart_made_secret_listens_on_loopback_only() -> None:
    objects = _objs("admin-token-secret")
    secret = one(objects, "Secret")
    assert secret["data"] == {"token": "czNjcmV0"}  # base64("s3cret")
    pod = one(objects, "Deployment", "-planner")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["admin-token"]["secret"]["secretName"] == secret["metadata"]["name"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "admin-token")
    admin = config_of(objects, "planner")["budget"]["admin"]
    assert admin == {"enabled": True, "bind": "127.0.0.1:8088", "token_file": mount["mountPath"] + "/token",
                     "state_configmap": "pp-powerplanner-budget"}
    # Not exposed: no port on the pod or the Service, no NetworkPolicy (kubectl port-forward reaches loopback).
    assert [p["name"] for p in pod["containers"][0]["ports"]] == ["metrics"]
    assert [p["name"] for p in one(objects, "Service", "-planner")["spec"]["ports"]] == ["metrics"]
    assert by_kind(objects, "NetworkPolicy") == [] and "hostname" not in pod


def test_admin_endpoint_with_an_existing_secret_creates_none() -> None:
    objects = _objs("admin-existing-secret")
    assert by_kind(objects, "Secret") == []
    pod = one(objects, "Deployment", "-planner")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "admin-token")
    assert volume["secret"] == {"secretName": "my-token", "items": [{"key": "t", "path": "t"}]}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_no_value_set_binds_the_admin_endpoint_to_every_interface(value_set: str) -> None:
    objects = _objs(value_set)
    if not VALUE_SETS[value_set].get("planner", {}).get("enabled", True):
        return
    bind = config_of(objects, "planner")["budget"]["admin"].get("bind", "127.0.0.1:8081")
    host = split_host_port(bind)[0]
    assert host not in ("0.0.0.0", "", "::"), bind


def test_exposed_admin_endpoint_binds_the_pod_ip_behind_a_network_policy_with_tls() -> None:
    objects = _objs("admin-exposed-tls")
    values = VALUE_SETS["admin-exposed-tls"]["planner"]["admin"]
    deployment = one(objects, "Deployment", "-planner")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    admin = config_of(objects, "planner")["budget"]["admin"]
    # The bind host is the pod's own hostname, which the kubelet's /etc/hosts maps to the pod IP (not 0.0.0.0).
    host, port = split_host_port(admin["bind"])
    assert host == pod["hostname"] and port == 8081
    assert {"name": "admin", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = one(objects, "Service", "-planner")
    assert {"name": "admin", "port": 8081, "targetPort": "admin", "protocol": "TCP"} in service["spec"]["ports"]
    # TLS: both files from the Secret's mount, the key not world-readable.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    tls_dir = mounts["admin-tls"]["mountPath"]
    assert mounts["admin-tls"]["readOnly"] is True
    assert volumes["admin-tls"]["secret"]["secretName"] == "admin-cert"
    assert volumes["admin-tls"]["secret"]["defaultMode"] & 0o007 == 0
    paths = {item["path"] for item in volumes["admin-tls"]["secret"]["items"]}
    assert admin["tls_cert_file"] == f"{tls_dir}/tls.crt" and admin["tls_key_file"] == f"{tls_dir}/tls.key"
    assert paths == {"tls.crt", "tls.key"}
    # The NetworkPolicy selects the planner pod and admits the admin port from the configured peers only.
    policy = one(objects, "NetworkPolicy", "-planner-admin")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    admin_rules = [r for r in policy["ingress"] if any(p["port"] == "admin" for p in r["ports"])]
    assert admin_rules == [{"ports": [{"port": "admin", "protocol": "TCP"}], "from": values["allowedFrom"]}]
    others = [r for r in policy["ingress"] if r not in admin_rules]
    assert others == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}], "only /metrics stays open to all"


def test_custom_scheduling_and_namespace() -> None:
    objects = _objs("custom-scheduling")
    values = VALUE_SETS["custom-scheduling"]["agent"]
    pod = one(objects, "DaemonSet", "power-agent")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "p5.48xlarge"}
    assert pod["affinity"] == values["affinity"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    role = one(objects, "Role", "power-planner")
    binding = one(objects, "RoleBinding", "power-planner")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "inference"
    assert binding["subjects"][0]["namespace"] == NAMESPACE  # the ServiceAccount lives with the release
    # The agent reads its own DaemonSet, which lives with the release.
    assert one(objects, "Role", "power-agent")["metadata"]["namespace"] == NAMESPACE
    assert config_of(objects, "agent")["agent"]["allowed_namespaces"] == ["inference"]
    assert all(o["metadata"]["labels"]["team"] == "inference" for o in objects)


def test_monitoring_objects_select_the_pods_they_scrape() -> None:
    objects = _objs("monitoring")
    workloads = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Deployment", "DaemonSet")}
    for monitor in by_kind(objects, "PodMonitor") + by_kind(objects, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [
            w for w in workloads.values() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, monitor["metadata"]["name"]
    assert len(by_kind(objects, "PodMonitor")) == 2 and len(by_kind(objects, "ServiceMonitor")) == 2
    assert one(objects, "PodMonitor", "-agent")["metadata"]["labels"]["release"] == "prometheus"
    for kind, endpoints in (("PodMonitor", "podMetricsEndpoints"), ("ServiceMonitor", "endpoints")):
        (endpoint,) = one(objects, kind, "-agent")["spec"][endpoints]
        assert endpoint["honorLabels"] is True, f"{kind}: the agent's pod_name/pod_namespace labels must win"
    assert one(objects, "ConfigMap", "-dashboard")["metadata"]["namespace"] == "monitoring"
    deployment = one(objects, "Deployment", "-planner")
    assert "prometheus.io/scrape" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_agent_only_renders_no_planner_objects() -> None:
    objects = _objs("agent-only")
    assert not [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "planner"]
    assert [r["metadata"]["name"] for r in by_kind(objects, "Role")] == ["pp-powerplanner-agent"]
    assert len(by_kind(objects, "DaemonSet")) == 1


def test_services_select_their_workloads() -> None:
    objects = _objs("default")
    for service in by_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        matched = [
            o for o in objects
            if o["kind"] in ("Deployment", "DaemonSet")
            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in matched[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_dashboard_configmap_carries_the_committed_dashboard() -> None:
    dashboard_file = REPO_ROOT / "deploy" / "grafana" / "powerplanner-dashboard.json"
    config_map = one(_objs("default"), "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["powerplanner-dashboard.json"]) == json.loads(dashboard_file.read_text())
    # The chart reads the dashboard through a link, so there is one copy to edit.
    link = CHART_DIR / "dashboards" / "powerplanner-dashboard.json"
    assert link.is_symlink() and link.resolve() == dashboard_file.resolve()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"planner": {"admin": {"enabled": True}}}, "planner.admin.enabled needs a bearer token"),
        ({"planner": {"admin": {"enabled": True, "token": "t", "expose": True}}},
         "planner.admin.expose needs planner.admin.allowedFrom"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_fix(values: dict[str, Any], message: str) -> None:
    helm = pytest.importorskip("helm_python")
    with pytest.raises(helm.HelmRenderError, match=message):
        render_manifests(values)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_finds_no_errors(value_set: str) -> None:
    helm = pytest.importorskip("helm_python")
    result = helm.lint(str(CHART_DIR), with_images(VALUE_SETS[value_set]))
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []  # only INFO (e.g. "icon is recommended")
