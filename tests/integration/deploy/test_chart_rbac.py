"""RBAC is exactly the least privilege the issue lists: any extra verb, resource or API group fails here,
and so does a missing one (the planner or agent would break in a real cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.deploy.chart import VALUE_SETS, by_kind, config_of, one, render_objects

ANY_NAME = ""  # a rule without resourceNames

# (apiGroup, resource, verb, resourceName) each component may hold; nothing else.
PLANNER_ALLOWED: frozenset[tuple[str, str, str, str]] = frozenset(
    {("nvidia.com", "dynamographdeployments", v, ANY_NAME) for v in ("get", "list", "watch", "patch")}
    | {("nvidia.com", "dynamographdeploymentscalingadapters", v, ANY_NAME) for v in ("get", "list", "watch", "patch")}
    | {("nvidia.com", "dynamographdeploymentscalingadapters/scale", v, ANY_NAME) for v in ("get", "patch", "update")}
    # patch writes the power-limit annotation; get/list/watch are needed to find the worker pods by label.
    | {("", "pods", v, ANY_NAME) for v in ("get", "list", "watch", "patch")}
    | {("", "events", "create", ANY_NAME), ("events.k8s.io", "events", "create", ANY_NAME)}
    # The admin budget's ConfigMap: RBAC cannot name an object on create, so create is unnamed.
    | {("", "configmaps", "create", ANY_NAME)}
)
# get: its own pod (POD_NAME) at exit, to find its DaemonSet.
AGENT_CLUSTER_ALLOWED: frozenset[tuple[str, str, str, str]] = frozenset(
    {("", "pods", v, ANY_NAME) for v in ("get", "list", "watch")}
)


def planner_allowed(objects: list[dict[str, Any]]) -> frozenset[tuple[str, str, str, str]]:
    """The planner's rights, named after the budget ConfigMap its rendered config says it keeps."""
    state = config_of(objects, "planner")["budget"]["admin"]["state_configmap"]
    return PLANNER_ALLOWED | {("", "configmaps", v, state) for v in ("get", "patch", "update")}


def leader_role_allowed(objects: list[dict[str, Any]]) -> frozenset[tuple[str, str, str, str]]:
    """Leader election: create a Lease (unnamed: RBAC cannot name an object on create), get and patch its own."""
    lease = config_of(objects, "planner")["kubernetes"]["dgd_name"]
    return frozenset({("coordination.k8s.io", "leases", "create", ANY_NAME)}
                     | {("coordination.k8s.io", "leases", v, f"powerplanner-{lease}") for v in ("get", "patch")})


def agent_role_allowed(objects: list[dict[str, Any]]) -> frozenset[tuple[str, str, str, str]]:
    """Read its own DaemonSet (is it being uninstalled?) and no other."""
    return frozenset({("apps", "daemonsets", "get", one(objects, "DaemonSet")["metadata"]["name"])})


def grants(role: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """Expand a Role/ClusterRole into (group, resource, verb, name) tuples; wildcards and extra fields are refused."""
    out: set[tuple[str, str, str, str]] = set()
    for rule in role.get("rules", []):
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"unexpected fields {sorted(rule)}"
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: wildcard in {field}"
        names = rule.get("resourceNames") or [ANY_NAME]
        out |= {(g, r, v, n) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
                for n in names}
    return out


def check_rbac(objects: list[dict[str, Any]]) -> None:
    """The checks, separate from the tests so a test can prove they catch an over-broad role."""
    assert not by_kind(objects, "ClusterRole") or all(
        "aggregationRule" not in r for r in by_kind(objects, "ClusterRole")
    )
    for role in by_kind(objects, "Role") + by_kind(objects, "ClusterRole"):
        component = role["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "planner" and role["metadata"]["name"].endswith("-planner-leader"):
            assert role["kind"] == "Role" and role["metadata"]["namespace"] == one(objects, "Deployment")["metadata"][
                "namespace"], "the Lease rights are a Role in the release namespace"
            allowed = leader_role_allowed(objects)
        elif component == "planner":
            assert role["kind"] == "Role", "the planner's rights must be namespaced (a Role)"
            # The DGD's namespace, where the planner keeps its budget ConfigMap too.
            assert role["metadata"]["namespace"] == config_of(objects, "planner")["kubernetes"]["namespace"]
            allowed = planner_allowed(objects)
        elif role["kind"] == "Role":
            assert role["metadata"]["namespace"] == one(objects, "DaemonSet")["metadata"]["namespace"]
            allowed = agent_role_allowed(objects)
        else:
            allowed = AGENT_CLUSTER_ALLOWED
        got = grants(role)
        assert got - allowed == set(), f"{role['metadata']['name']} grants more than allowed: {sorted(got - allowed)}"
        assert allowed - got == set(), f"{role['metadata']['name']} lacks {sorted(allowed - got)}"
    for binding in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        role_kind = "Role" if binding["kind"] == "RoleBinding" else "ClusterRole"
        assert binding["roleRef"]["kind"] == role_kind
        bound = [r for r in by_kind(objects, role_kind) if r["metadata"]["name"] == binding["roleRef"]["name"]
                 and r["metadata"].get("namespace") == binding["metadata"].get("namespace")]
        assert len(bound) == 1, f"{binding['metadata']['name']} binds a role that is not rendered"
        accounts = {(o["metadata"]["name"], o["metadata"]["namespace"]) for o in by_kind(objects, "ServiceAccount")}
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and (subject["name"], subject["namespace"]) in accounts
        component = binding["metadata"]["labels"]["app.kubernetes.io/component"]
        workload = one(objects, "Deployment" if component == "planner" else "DaemonSet")
        assert [s["name"] for s in binding["subjects"]] == [workload["spec"]["template"]["spec"]["serviceAccountName"]]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_roles_grant_exactly_the_listed_rights(value_set: str) -> None:
    objects = render_objects(VALUE_SETS[value_set])
    check_rbac(objects)
    components = {r["metadata"]["labels"]["app.kubernetes.io/component"] for r in by_kind(objects, "Role")}
    components |= {r["metadata"]["labels"]["app.kubernetes.io/component"] for r in by_kind(objects, "ClusterRole")}
    values = VALUE_SETS[value_set]
    expected = {c for c in ("planner", "agent") if values.get(c, {}).get("enabled", True)}
    assert components == expected


def test_workloads_use_the_bound_service_accounts() -> None:
    objects = render_objects({})
    bound = {s["name"] for b in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding")
             for s in b["subjects"]}
    for workload in by_kind(objects, "Deployment") + by_kind(objects, "DaemonSet"):
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] in bound


@pytest.mark.parametrize(
    ("role_name", "extra_rule"),
    [
        ("pp-powerplanner-planner", {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}),
        ("pp-powerplanner-planner", {"apiGroups": ["nvidia.com"], "resources": ["dynamographdeployments"],
                                     "verbs": ["delete"]}),
        ("pp-powerplanner-planner", {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}),
        # Any ConfigMap, not only the budget's.
        ("pp-powerplanner-planner", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}),
        # Any DaemonSet, not only its own.
        ("pp-powerplanner-agent", {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get"]}),
        ("pp-powerplanner-agent", {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["patch"],
                                   "resourceNames": ["pp-powerplanner-agent"]}),
    ],
)
def test_the_check_catches_an_over_broad_role(role_name: str, extra_rule: dict[str, Any]) -> None:
    objects = render_objects({})
    check_rbac(objects)
    role = next(r for r in by_kind(objects, "Role") if r["metadata"]["name"] == role_name)
    role["rules"].append(extra_rule)
    with pytest.raises(AssertionError):
        check_rbac(objects)


@pytest.mark.parametrize("role_name", ["pp-powerplanner-planner", "pp-powerplanner-agent"])
def test_the_check_catches_a_missing_right(role_name: str) -> None:
    objects = render_objects({})
    role = next(r for r in by_kind(objects, "Role") if r["metadata"]["name"] == role_name)
    role["rules"].pop()
    with pytest.raises(AssertionError, match="lacks"):
        check_rbac(objects)


def test_rbac_off_renders_no_roles() -> None:
    objects = render_objects({"rbac": {"create": False}})
    assert not [o for o in objects if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
