"""The exit decision: restore the originals only on a proven uninstall (or ``always``); any doubt hands over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.agent.handover import decide_exit
from powerplanner.agent.kubeapi import ApiError, ApiUnreachable, BadResponse, KubeApiError, NotFound

ENV = {"POD_NAME": "pp-agent-x7k2q", "POD_NAMESPACE": "powerplanner"}
DS_UID = "1111-2222"


def own_pod(owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    refs = owners if owners is not None else [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "pp-agent", "uid": DS_UID, "controller": True}
    ]
    return {"metadata": {"name": ENV["POD_NAME"], "namespace": ENV["POD_NAMESPACE"], "ownerReferences": refs}}


@dataclass
class FakeApi:
    pod: dict[str, Any] | KubeApiError = field(default_factory=own_pod)
    daemonset: dict[str, Any] | KubeApiError = field(
        default_factory=lambda: {"metadata": {"name": "pp-agent", "uid": DS_UID}}
    )
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def get_pod(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]:
        self.calls.append(("pod", namespace, name))
        if isinstance(self.pod, KubeApiError):
            raise self.pod
        return self.pod

    def get_daemonset(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]:
        self.calls.append(("daemonset", namespace, name))
        if isinstance(self.daemonset, KubeApiError):
            raise self.daemonset
        return self.daemonset


def test_a_daemonset_still_there_is_a_restart_or_rollout_hand_over() -> None:
    api = FakeApi()
    decision = decide_exit("uninstall", api, ENV)
    assert not decision.restore and "still there" in decision.reason
    assert api.calls == [("pod", "powerplanner", "pp-agent-x7k2q"), ("daemonset", "powerplanner", "pp-agent")]


def test_a_daemonset_gone_is_an_uninstall() -> None:
    decision = decide_exit("uninstall", FakeApi(daemonset=NotFound(404, "not found")), ENV)
    assert decision.restore and "gone" in decision.reason


def test_a_daemonset_being_deleted_is_an_uninstall() -> None:
    deleting = {"metadata": {"name": "pp-agent", "uid": DS_UID, "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    decision = decide_exit("uninstall", FakeApi(daemonset=deleting), ENV)
    assert decision.restore and "being deleted" in decision.reason


def test_a_daemonset_recreated_under_the_same_name_hands_over_to_its_agent() -> None:
    other = {"metadata": {"name": "pp-agent", "uid": "another-uid", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not decide_exit("uninstall", FakeApi(daemonset=other), ENV).restore


@pytest.mark.parametrize(
    ("api", "environ", "words"),
    [
        (FakeApi(), {}, "POD_NAME"),
        (FakeApi(), {"POD_NAME": "x"}, "POD_NAMESPACE"),
        (FakeApi(), {"POD_NAME": "../../secrets", "POD_NAMESPACE": "pp"}, "not a Kubernetes name"),
        (None, ENV, "no Kubernetes API"),
        (FakeApi(pod=ApiUnreachable("connection refused")), ENV, "connection refused"),
        (FakeApi(pod=NotFound(404, "gone")), ENV, "own pod"),
        (FakeApi(pod=ApiError(403, "forbidden")), ENV, "forbidden"),
        (FakeApi(pod=BadResponse("not JSON")), ENV, "not JSON"),
        (FakeApi(pod=own_pod([])), ENV, "no owning DaemonSet"),
        (FakeApi(pod=own_pod([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x"}])), ENV, "no owning"),
        (FakeApi(pod={"metadata": "odd"}), ENV, "no owning DaemonSet"),
        (FakeApi(daemonset=ApiError(403, "daemonsets is forbidden")), ENV, "forbidden"),
        (FakeApi(daemonset=ApiUnreachable("timeout")), ENV, "timeout"),
    ],
)
def test_any_doubt_hands_over_with_one_line_saying_why(api: FakeApi | None, environ: dict[str, str],
                                                        words: str) -> None:
    decision = decide_exit("uninstall", api, environ)
    assert not decision.restore
    assert words in decision.reason and "\n" not in decision.reason


def test_always_and_never_do_not_ask_the_api() -> None:
    api = FakeApi(daemonset=NotFound(404, "gone"))
    assert decide_exit("always", api, {}).restore
    assert not decide_exit("never", api, ENV).restore
    assert api.calls == []


POD_SHAPES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=10,
)


@given(st.one_of(POD_SHAPES.map(lambda meta: {"metadata": meta}),
                 st.lists(POD_SHAPES, max_size=3).map(lambda refs: own_pod(refs))),  # type: ignore[arg-type]
       POD_SHAPES)
def test_odd_objects_never_raise_and_only_a_missing_daemonset_restores(pod: dict[str, Any], ds_meta: Any) -> None:
    decision = decide_exit("uninstall", FakeApi(pod=pod, daemonset={"metadata": ds_meta}), ENV)
    if decision.restore:
        assert isinstance(ds_meta, dict) and ds_meta.get("deletionTimestamp")
