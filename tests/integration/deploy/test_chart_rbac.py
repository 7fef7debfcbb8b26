"""RBAC is exactly the least privilege the issue lists: any extra verb, resource or API group fails here,
and so does a missing one (the planner or agent would break in a real cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.deploy.chart import VALUE_SETS, by_kind, render_objects

# (apiGroup, resource, verb) each component may hold; nothing else.
PLANNER_ALLOWED: frozenset[tuple[str, str, str]] = frozenset(
    {("nvidia.com", "dynamographdeployments", v) for v in ("get", "list", "watch", "patch")}
    | {("nvidia.com", "dynamographdeploymentscalingadapters", v) for v in ("get", "list", "watch", "patch")}
    | {("nvidia.com", "dynamographdeploymentscalingadapters/scale", v) for v in ("get", "patch", "update")}
    # patch writes the power-limit annotation; get/list/watch are needed to find the worker pods by label.
    | {("", "pods", v) for v in ("get", "list", "watch", "patch")}
    | {("", "events", "create"), ("events.k8s.io", "events", "create")}
)
AGENT_ALLOWED: frozenset[tuple[str, str, str]] = frozenset({("", "pods", v) for v in ("get", "list", "watch")})


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """Expand a Role/ClusterRole into (group, resource, verb) triples; wildcards and extra fields are refused."""
    out: set[tuple[str, str, str]] = set()
    for rule in role.get("rules", []):
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields {sorted(rule)}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"{role['metadata']['name']}: wildcard in {field}"
        out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def check_rbac(objects: list[dict[str, Any]]) -> None:
    """The checks, separate from the tests so a test can prove they catch an over-broad role."""
    assert not by_kind(objects, "ClusterRole") or all(
        "aggregationRule" not in r for r in by_kind(objects, "ClusterRole")
    )
    for role in by_kind(objects, "Role") + by_kind(objects, "ClusterRole"):
        component = role["metadata"]["labels"]["app.kubernetes.io/component"]
        allowed = {"planner": PLANNER_ALLOWED, "agent": AGENT_ALLOWED}[component]
        if component == "planner":
            assert role["kind"] == "Role", "the planner's rights must be namespaced (a Role)"
        got = grants(role)
        assert got - allowed == set(), f"{role['metadata']['name']} grants more than allowed: {sorted(got - allowed)}"
        assert allowed - got == set(), f"{role['metadata']['name']} lacks {sorted(allowed - got)}"
    for binding in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        role_kind = "Role" if binding["kind"] == "RoleBinding" else "ClusterRole"
        assert binding["roleRef"]["kind"] == role_kind
        assert [r for r in by_kind(objects, role_kind) if r["metadata"]["name"] == binding["roleRef"]["name"]]
        accounts = {(o["metadata"]["name"], o["metadata"]["namespace"]) for o in by_kind(objects, "ServiceAccount")}
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and (subject["name"], subject["namespace"]) in accounts


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
    "extra_rule",
    [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": ["nvidia.com"], "resources": ["dynamographdeployments"], "verbs": ["delete"]},
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
    ],
)
def test_the_check_catches_an_over_broad_role(extra_rule: dict[str, Any]) -> None:
    objects = render_objects({})
    role = by_kind(objects, "Role")[0]
    role["rules"].append(extra_rule)
    with pytest.raises(AssertionError):
        check_rbac(objects)


def test_rbac_off_renders_no_roles() -> None:
    objects = render_objects({"rbac": {"create": False}})
    assert not [o for o in objects if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
