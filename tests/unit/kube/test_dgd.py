"""The one DGD reader (powerplanner.kube.dgd) the planner and verify share: both shapes, the role rules, the two
rules the planner and verify used to disagree on (a typed service beside an untyped fallback name; the
``Successful`` state), replica status, the replicas patch; properties over arbitrary input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.kube.dgd import (
    FALLBACK_NAMES,
    ServiceSpec,
    adapter_name,
    adapter_replicas,
    dgd_ready,
    identify_roles,
    read_roles,
    replica_status,
    replicas_patch,
    services_of,
)
from powerplanner.kube.errors import KubeErrorKind, ShapeError
from powerplanner.model.roles import ROLES, Role

V1ALPHA1 = {
    "spec": {"services": {
        "Frontend": {"replicas": 1},
        "Pre": {"subComponentType": "prefill", "replicas": 2, "resources": {"limits": {"gpu": "4"}}},
        "Dec": {"subComponentType": "decode", "replicas": 3, "resources": {"limits": {"gpu": "8"}}},
    }},
    "status": {"conditions": [{"type": "Ready", "status": "True"}],
               "services": {"Dec": {"readyReplicas": 2, "availableReplicas": 2}}},
}
V1BETA1 = {
    "spec": {"components": [
        {"name": "frontend", "type": "frontend", "replicas": 1},
        {"name": "p", "type": "prefill", "replicas": 1,
         "podTemplate": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}},
        {"name": "d", "type": "decode", "replicas": 4},
    ]},
    "status": {"state": "pending", "components": {"p": {"readyReplicas": 1}}},
}


def alpha(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"services": services}}


def beta(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The same services in the v1beta1 shape (the role in ``type``)."""
    comps = [{"name": n, **({"type": s["subComponentType"]} if "subComponentType" in s else {}),
              **({"replicas": s["replicas"]} if "replicas" in s else {})} for n, s in services.items()]
    return {"spec": {"components": comps}}


def names(dgd: dict[str, Any], overrides: dict[Role, str | None] | None = None) -> tuple[str | None, str | None]:
    roles = read_roles(dgd, overrides)
    return roles.name(Role.PREFILL), roles.name(Role.DECODE)


def test_v1alpha1_services() -> None:
    roles = identify_roles(V1ALPHA1)
    assert roles[Role.PREFILL] == ServiceSpec("Pre", "prefill", 2, 4)
    assert roles[Role.DECODE] == ServiceSpec("Dec", "decode", 3, 8)
    assert dgd_ready(V1ALPHA1) == (True, "Ready")
    assert replica_status(V1ALPHA1, "Dec") == (2, 2)
    assert replica_status(V1ALPHA1, "Pre") == (None, None)


def test_v1beta1_components() -> None:
    roles = identify_roles(V1BETA1)
    assert roles[Role.PREFILL] == ServiceSpec("p", "prefill", 1, 2)
    assert roles[Role.DECODE].name == "d" and roles[Role.DECODE].gpus_per_replica is None
    ready, why = dgd_ready(V1BETA1)
    assert not ready and "pending" in why
    assert replica_status(V1BETA1, "p") == (1, None)
    listed = {"status": {"components": [{"name": "d", "readyReplicas": "3", "availableReplicas": 2}]}}
    assert replica_status(listed, "d") == (3, 2)


def test_v1beta1_sub_component_type_wins_over_a_generic_type() -> None:
    dgd = {"spec": {"components": [{"name": "a", "type": "worker", "subComponentType": "prefill"},
                                   {"name": "b", "type": "decode"}]}}
    assert names(dgd) == ("a", "b")


def test_a_typed_service_wins_over_an_untyped_fallback_name() -> None:
    """Divergence (a): the planner managed P while verify counted "2 prefill services". One rule now: the
    fallback names apply only when no service is typed with the role, so P it is, for both."""
    for shape in (alpha, beta):
        dgd = shape({"P": {"subComponentType": "prefill"}, "prefill": {}, "D": {"subComponentType": "decode"}})
        roles = read_roles(dgd)
        assert (roles.name(Role.PREFILL), roles.name(Role.DECODE), roles.problems) == ("P", "D", ())


def test_fallback_names_when_no_service_is_typed() -> None:
    assert names(alpha({"TRTLLMPrefillWorker": {}, "VllmDecodeWorker": {}, "Frontend": {}})) == (
        "TRTLLMPrefillWorker", "VllmDecodeWorker")
    generic = {"spec": {"components": [{"name": "prefill", "type": "worker"}, {"name": "decode", "type": "worker"}]}}
    assert names(generic) == ("prefill", "decode")
    # a service typed with the other role is never taken by its name
    assert names(alpha({"prefill": {"subComponentType": "decode"}, "VllmPrefillWorker": {}})) == (
        "VllmPrefillWorker", "prefill")


def test_two_fallback_names_are_ambiguous_and_an_override_settles_it() -> None:
    dgd = alpha({"TRTLLMPrefillWorker": {}, "VllmDecodeWorker": {}, "decode": {}})
    roles = read_roles(dgd)
    assert roles.name(Role.PREFILL) == "TRTLLMPrefillWorker" and roles.name(Role.DECODE) is None
    assert roles.problems == ("2 decode services by name (VllmDecodeWorker, decode) and none has subComponentType "
                              "decode; mark the one to manage with subComponentType: decode or set "
                              "kubernetes.decode_service",)
    assert names(dgd, {Role.DECODE: "decode"}) == ("TRTLLMPrefillWorker", "decode")


def test_problems_name_what_is_wrong_and_the_fix() -> None:
    two = alpha({"P1": {"subComponentType": "prefill"}, "P2": {"subComponentType": "prefill"}})
    assert read_roles(two).problems == (
        "2 prefill services (P1, P2): each has subComponentType prefill; set kubernetes.prefill_service to the "
        "one to manage",
        "no decode service in the DGD (no subComponentType decode, none of VllmDecodeWorker, decode, "
        "TRTLLMDecodeWorker); mark the worker with subComponentType: decode or set kubernetes.decode_service",
    )
    assert "no prefill service in the DGD (no type prefill," in read_roles(beta({"d": {"subComponentType": "decode"}}
                                                                                 )).problems[0]
    missing = read_roles(two, {Role.PREFILL: "P3", Role.DECODE: "P1"})
    assert missing.problems == ("service 'P3' (kubernetes.prefill_service) is not in the DGD; it has: P1, P2",)
    assert missing.name(Role.DECODE) == "P1"


def test_one_service_cannot_be_both_roles() -> None:
    dgd = alpha({"W": {"subComponentType": "decode"}})
    roles = read_roles(dgd, {Role.PREFILL: "W"})
    assert roles.services == {} and "'W' is both the prefill and the decode service" in roles.problems[0]


def test_identify_roles_raises_every_problem_as_one_shape_error() -> None:
    with pytest.raises(ShapeError) as info:
        identify_roles(alpha({"x": {}}))
    assert info.value.kind is KubeErrorKind.SHAPE
    assert "no prefill service" in info.value.message and "no decode service" in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(("status", "ready"), [
    ({"conditions": [{"type": "Ready", "status": "True"}]}, True),
    ({"conditions": [{"type": "Ready", "status": "False"}], "state": "successful"}, False),  # the condition wins
    ({"state": "successful"}, True),
    ({"state": "Successful"}, False),  # divergence (b): not the operator's spelling, so not Ready for both
    ({"state": "SUCCESSFUL"}, False),
    ({"state": "pending"}, False),
    ({}, False),
    ({"conditions": "odd", "state": None}, False),
])
def test_ready_is_the_condition_else_the_operators_state(status: dict[str, Any], ready: bool) -> None:
    ok, why = dgd_ready({"status": status})
    assert ok is ready and why and "\n" not in why


def test_not_ready_says_why() -> None:
    ok, why = dgd_ready({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Rolling",
                                                     "message": "2/3 ready"}]}})
    assert not ok and why == "Ready=False (Rolling: 2/3 ready)"
    assert dgd_ready({"status": {"state": "Successful"}}) == (False, "state='Successful', no Ready condition")


def test_adapter_name_and_replicas() -> None:
    assert adapter_name("llm", "VllmDecodeWorker") == "llm-vllmdecodeworker"
    assert adapter_replicas({"spec": {"replicas": 3}}) == 3
    assert adapter_replicas({"spec": {}}) is None and adapter_replicas("odd") is None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


SERVICE_NAMES = st.sampled_from(["A", "B", "C", *FALLBACK_NAMES[Role.PREFILL], *FALLBACK_NAMES[Role.DECODE]])
HINTS = st.sampled_from([None, "prefill", "decode", "worker", "frontend"])
SERVICES = st.dictionaries(SERVICE_NAMES, st.builds(
    lambda hint, replicas: {**({"subComponentType": hint} if hint else {}), "replicas": replicas},
    HINTS, st.integers(0, 9)), max_size=6)


@given(SERVICES)
def test_both_shapes_give_the_same_roles_by_the_rules(services: dict[str, dict[str, Any]]) -> None:
    a, b = read_roles(alpha(services)), read_roles(beta(services))
    assert a.services == b.services
    assert [p.replace("subComponentType", "type") for p in a.problems] == list(b.problems)
    for role in ROLES:
        found = a.services.get(role)
        typed = [n for n, s in services.items() if s.get("subComponentType") == role.value]
        if found is not None:  # rule 2, else rule 3
            assert [found.name] == typed or (not typed and found.name in FALLBACK_NAMES[role]
                                             and found.role_hint not in ("prefill", "decode"))
    assert (not a.problems) == (len(a.services) == 2)
    if len(a.services) == 2:
        assert a.services[Role.PREFILL].name != a.services[Role.DECODE].name


@given(SERVICES, st.integers(0, 20))
def test_replicas_patch_changes_that_service_only(services: dict[str, dict[str, Any]], replicas: int) -> None:
    if not services:
        return
    service = sorted(services)[0]
    for dgd in (alpha(services), {**beta(services), "metadata": {"resourceVersion": "7"}}):
        patch = replicas_patch(dgd, service, replicas)
        after = {s.name: s.replicas for s in services_of(merge_patch(dgd, patch))}
        before = {s.name: s.replicas for s in services_of(dgd)}
        assert after == {**before, service: replicas}
        if "components" in dgd["spec"]:
            assert patch["metadata"] == {"resourceVersion": "7"}  # a concurrent writer makes it fail with 409


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["spec", "status", "services", "components", "name", "type", "replicas",
                                         "subComponentType", "conditions", "state", "resources", "limits", "gpu",
                                         "podTemplate", "containers", "readyReplicas", "prefill", "decode"]),
                        inner, max_size=4), max_leaves=20)


@given(st.dictionaries(st.sampled_from(["spec", "status", "metadata"]), JSON, max_size=3))
def test_any_object_gives_an_answer_never_a_crash(dgd: dict[str, Any]) -> None:
    roles = read_roles(dgd)
    assert all(isinstance(p, str) and p for p in roles.problems)
    ready, why = dgd_ready(dgd)
    assert isinstance(ready, bool) and isinstance(why, str)
    for svc in services_of(dgd):
        replica_status(dgd, svc.name)
