"""Reading both DGD versions: services, roles, readiness, replica status; the annotation value."""

from __future__ import annotations

from typing import Any

import pytest

from powerplanner.live.kubernetes import (
    KubernetesError,
    ServiceSpec,
    cap_annotation_value,
    dgd_ready,
    identify_roles,
    replica_status,
    services_of,
)
from powerplanner.model.roles import Role

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


def test_v1alpha1_services() -> None:
    roles = identify_roles(services_of(V1ALPHA1))
    assert roles[Role.PREFILL] == ServiceSpec("Pre", "prefill", 2, 4)
    assert roles[Role.DECODE] == ServiceSpec("Dec", "decode", 3, 8)
    assert dgd_ready(V1ALPHA1) == (True, "Ready")
    assert replica_status(V1ALPHA1, "Dec") == (2, 2)
    assert replica_status(V1ALPHA1, "Pre") == (None, None)


def test_v1beta1_components() -> None:
    roles = identify_roles(services_of(V1BETA1))
    assert roles[Role.PREFILL] == ServiceSpec("p", "prefill", 1, 2)
    assert roles[Role.DECODE].name == "d" and roles[Role.DECODE].gpus_per_replica is None
    ready, why = dgd_ready(V1BETA1)
    assert not ready and "pending" in why
    assert replica_status(V1BETA1, "p") == (1, None)


def test_fallback_names_and_overrides() -> None:
    dgd: dict[str, Any] = {"spec": {"services": {"TRTLLMPrefillWorker": {}, "VllmDecodeWorker": {}, "decode": {}}}}
    roles = identify_roles(services_of(dgd))
    assert roles[Role.PREFILL].name == "TRTLLMPrefillWorker" and roles[Role.DECODE].name == "VllmDecodeWorker"
    roles = identify_roles(services_of(dgd), {Role.DECODE: "decode"})
    assert roles[Role.DECODE].name == "decode"
    with pytest.raises(KubernetesError, match=r"kubernetes\.prefill_service"):
        identify_roles(services_of(dgd), {Role.PREFILL: "nope"})
    two = {"spec": {"services": {"a": {"subComponentType": "prefill"}, "b": {"subComponentType": "prefill"},
                                 "c": {"subComponentType": "decode"}}}}
    with pytest.raises(KubernetesError, match="2 services"):
        identify_roles(services_of(two))
    with pytest.raises(KubernetesError, match="no decode service"):
        identify_roles(services_of({"spec": {"services": {"prefill": {}}}}))


def test_cap_annotation_is_a_positive_integer_rounded_down() -> None:
    assert cap_annotation_value(412.9) == "412"
    assert cap_annotation_value(400.0) == "400"
    assert cap_annotation_value(399.9999999999) == "400"  # float noise, not a real fraction
    with pytest.raises(ValueError):
        cap_annotation_value(0.5)
