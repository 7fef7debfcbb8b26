"""The one Kubernetes error hierarchy: each HTTP status to its class, the kinds (the planner's error labels),
what is transient; and that the agent can load it without the official client."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.kube.errors import (
    TRANSIENT_KINDS,
    ApiStatusError,
    BadResponse,
    Conflict,
    Forbidden,
    Invalid,
    KubeErrorKind,
    KubernetesError,
    NotFound,
    ServerError,
    ShapeError,
    Timeout,
    Unreachable,
    error_for_status,
)


@pytest.mark.parametrize(("status", "cls"), [
    (400, Invalid), (401, Forbidden), (403, Forbidden), (404, NotFound), (405, Invalid), (409, Conflict),
    (410, Invalid), (422, Invalid), (429, ServerError), (500, ServerError), (502, ServerError),
    (503, ServerError), (504, ServerError), (200, BadResponse), (302, BadResponse),
])
def test_each_status_maps_to_its_class(status: int, cls: type[KubernetesError]) -> None:
    err = error_for_status(status, f"get x: HTTP {status}")
    assert type(err) is cls and err.status == status and err.message == f"get x: HTTP {status}"
    assert isinstance(err, ApiStatusError) == (status >= 400)


@given(st.integers(400, 599))
def test_every_error_status_is_an_api_status_error_and_only_server_trouble_is_transient(status: int) -> None:
    err = error_for_status(status, "x")
    assert isinstance(err, ApiStatusError)
    assert err.transient == (status >= 500 or status == 429)


def test_kinds_are_the_planners_error_labels() -> None:
    """``powerplanner_errors_total{kind="kubernetes_<kind>"}`` (docs/operations.md): these values are an
    interface, and f-strings show the value."""
    assert {k.value for k in KubeErrorKind} == {"not_found", "conflict", "forbidden", "invalid", "server", "timeout",
                                               "unreachable", "bad_response", "shape", "not_leader"}
    assert f"kubernetes_{Timeout('x').kind}" == "kubernetes_timeout"
    assert {KubeErrorKind.SERVER, KubeErrorKind.TIMEOUT, KubeErrorKind.UNREACHABLE} == TRANSIENT_KINDS


def test_the_class_is_the_kind() -> None:
    assert issubclass(Timeout, Unreachable) and Timeout.kind is KubeErrorKind.TIMEOUT
    assert Unreachable("x").transient and Timeout("x").transient
    assert not ShapeError("x").transient and not BadResponse("x").transient and not NotFound("x").transient
    assert str(ShapeError("no prefill service")) == "no prefill service"
    with pytest.raises(TypeError, match="subclass"):
        KubernetesError("what went wrong is not said")


def test_the_agent_loads_the_hierarchy_without_the_official_client() -> None:
    """The agent runs on every GPU node: importing the kubernetes package would double its memory
    (agent/kubeapi.py). Its client and the shared errors must not pull it in."""
    code = ("import sys, powerplanner.agent.kubeapi, powerplanner.agent.handover, powerplanner.agent.pods, "
            "powerplanner.kube.dgd; print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
