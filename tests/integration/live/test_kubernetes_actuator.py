"""The actuator with the real ``kubernetes`` client against kmock's emulator: both DGD versions, the scaling
adapter, cap annotations, injected 409/500/timeouts, and a proof of no lost update."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from powerplanner.contract import POWER_LIMIT_ANNOTATION as CAP_ANNOTATION
from powerplanner.contract import REVISION_ANNOTATION
from powerplanner.kube.errors import NotFound, ServerError
from powerplanner.live.actuator import ADAPTER_RECHECK_READS, KubernetesActuator
from powerplanner.model.roles import Role
from tests.fixtures.k8s import ADAPTER_PLURAL, DGD_PLURAL, EmulatedCluster, adapter_resource, dgd_resource

pytestmark = pytest.mark.integration


def actuator(cluster: EmulatedCluster, retries: int = 3, timeout_s: float = 2.0) -> KubernetesActuator:
    return KubernetesActuator(cluster.api_client(), "default", "llm", retries=retries, backoff_s=0.0,
                              timeout_s=timeout_s)


def must_get(cluster: EmulatedCluster, resource: str, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.get(resource, namespace, name)
    assert obj is not None, (resource, namespace, name)
    return obj


def caps(cluster: EmulatedCluster, role: str) -> list[str | None]:
    return [(p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION) for p in cluster.pods("llm", role)
            if not p["metadata"].get("deletionTimestamp")]


def test_reads_v1alpha1_state_with_pods(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1(prefill_replicas=2, decode_replicas=3)
    cluster.add_pod("llm-p-0", "llm", "prefill", cap_watts=400)
    cluster.add_pod("llm-p-1", "llm", "prefill", ready=False)
    cluster.add_pod("other-d-0", "other", "decode")  # another DGD's pod: filtered client-side
    for i in range(3):
        cluster.add_pod(f"llm-d-{i}", "llm", "decode", cap_watts=300)
    cluster.patch("v1/pods", "default", "llm-d-2", {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})
    state = actuator(cluster).read_state()
    assert state.api_version == "v1alpha1" and state.ready
    p, d = state.role(Role.PREFILL), state.role(Role.DECODE)
    assert (p.service, p.spec_replicas, p.gpus_per_replica) == ("VllmPrefillWorker", 2, 4)
    assert [x.name for x in p.pods] == ["llm-p-0", "llm-p-1"]
    assert p.annotated_cap_watts is None  # llm-p-1 has no annotation yet: its GPUs run at the default limit
    assert d.draining_replicas == 1 and d.annotated_cap_watts == 300.0
    assert p.adapter is None


def test_reads_the_dgd_as_verify_does(cluster: EmulatedCluster) -> None:
    """The rules verify applies (powerplanner.kube.dgd): a typed service wins over an untyped fallback name;
    ``state: Successful`` without a Ready condition is not Ready (the planner then only cuts power)."""
    cluster.add_dgd_v1alpha1()
    cluster.patch(dgd_resource(), "default", "llm", {"spec": {"services": {"prefill": {"replicas": 1}}},
                                                    "status": {"conditions": None, "state": "Successful"}})
    state = actuator(cluster).read_state()
    assert state.role(Role.PREFILL).service == "VllmPrefillWorker"
    assert not state.ready and state.ready_detail == "state='Successful', no Ready condition"


def test_scales_through_adapter_when_it_exists(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.add_scaling_adapter("llm", "VllmDecodeWorker", 1)
    act = actuator(cluster)
    assert act.read_state().role(Role.DECODE).adapter == "llm-vllmdecodeworker"
    act.scale(Role.DECODE, 3)
    act.scale(Role.PREFILL, 2)
    assert must_get(cluster, adapter_resource(), "default", "llm-vllmdecodeworker")["spec"]["replicas"] == 3
    dgd = must_get(cluster, dgd_resource(), "default", "llm")
    assert dgd["spec"]["services"]["VllmDecodeWorker"]["replicas"] == 1  # the operator copies it, not us
    assert dgd["spec"]["services"]["VllmPrefillWorker"]["replicas"] == 2  # no adapter: DGD merge patch
    assert any(path.endswith("/llm-vllmdecodeworker/scale") for _m, path in cluster.requests())
    pending = act.read_state().role(Role.DECODE)  # before the operator copies it: the adapter is the intent
    assert (pending.spec_replicas, pending.ready_replicas, pending.starting_replicas) == (3, 1, 2)
    cluster.reconcile()
    state = act.read_state()
    assert state.role(Role.DECODE).spec_replicas == 3 and state.role(Role.DECODE).ready_replicas == 3


def test_adapter_created_later_is_found(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1()
    act = actuator(cluster)
    assert act.read_state().role(Role.PREFILL).adapter is None
    cluster.add_scaling_adapter("llm", "VllmPrefillWorker", 1)
    for _ in range(ADAPTER_RECHECK_READS):
        state = act.read_state()
    assert state.role(Role.PREFILL).adapter == "llm-vllmprefillworker"


def test_v1beta1_scale_and_caps(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1beta1(prefill_replicas=1, decode_replicas=2)
    cluster.reconcile(version="v1beta1")
    act = actuator(cluster)
    state = act.read_state()
    assert state.api_version == "v1beta1" and state.role(Role.DECODE).service == "decode"
    act.scale(Role.DECODE, 1)
    assert act.set_cap(Role.DECODE, 333.7) == 2
    comps = {c["name"]: c for c in must_get(cluster, dgd_resource("v1beta1"), "default", "llm")["spec"]["components"]}
    assert comps["decode"]["replicas"] == 1 and comps["prefill"]["replicas"] == 1
    assert caps(cluster, "decode") == ["333", "333"]


def test_caps_reach_newest_pods_on_the_next_tick(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    act = actuator(cluster)
    assert act.set_cap(Role.PREFILL, 500) == 1
    assert act.set_cap(Role.PREFILL, 500) == 0  # already there: no write
    act.scale(Role.PREFILL, 3)
    cluster.reconcile(new_pods_ready=False)
    assert caps(cluster, "prefill").count(None) == 2
    assert act.set_cap(Role.PREFILL, 500) == 2  # starting pods get the cap before they load the model
    assert caps(cluster, "prefill") == ["500"] * 3


def test_every_cap_write_bumps_the_pods_revision(cluster: EmulatedCluster) -> None:
    """The revision is what the agents acknowledge (live/ledger.py); it goes up with each write, in the same
    patch as the cap, and not when the cap is already there."""
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    act = actuator(cluster)

    def revisions() -> list[str | None]:
        return [(p["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
                for p in cluster.pods("llm", "decode")]

    act.set_cap(Role.DECODE, 557)
    assert revisions() == ["1"]
    act.set_cap(Role.DECODE, 700)
    act.set_cap(Role.DECODE, 700)
    act.set_cap(Role.DECODE, 557)
    assert revisions() == ["3"] and caps(cluster, "decode") == ["557"]
    state = act.read_state()
    assert [(p.cap_watts, p.cap_revision) for p in state.role(Role.DECODE).pods] == [(557, 3)]


def test_draining_pods_follow_cuts_but_not_raises(cluster: EmulatedCluster) -> None:
    """A terminating pod holds its GPUs until it is gone and the plan counts it at the role's cap, so a lower
    cap reaches it too (it releases power at once); a higher one does not (it is leaving)."""
    cluster.add_dgd_v1alpha1(prefill_replicas=2, decode_replicas=1)
    cluster.reconcile()
    act = actuator(cluster)
    act.set_cap(Role.PREFILL, 500)
    act.scale(Role.PREFILL, 1)
    cluster.reconcile()  # one prefill pod is now terminating
    # The emulator removes a soft-deleted object on its next write unless a finalizer holds it; a real API
    # server keeps a terminating pod for its grace period. The finalizer stands in for that.
    leaving = next(p for p in cluster.pods("llm", "prefill") if p["metadata"].get("deletionTimestamp"))
    cluster.patch("v1/pods", "default", leaving["metadata"]["name"], {"metadata": {"finalizers": ["test/grace"]}})

    def all_caps() -> list[str | None]:
        return sorted((p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION)
                      for p in cluster.pods("llm", "prefill"))

    assert len(cluster.pods("llm", "prefill")) == 2 and caps(cluster, "prefill") == ["500"]
    assert act.set_cap(Role.PREFILL, 400) == 2
    assert all_caps() == ["400", "400"]
    assert act.set_cap(Role.PREFILL, 600) == 1
    assert all_caps() == ["400", "600"] and caps(cluster, "prefill") == ["600"]
    state = act.read_state()
    assert state.role(Role.PREFILL).draining_replicas == 1
    assert state.role(Role.PREFILL).annotated_cap_watts == 600.0


def test_500_and_timeouts_are_retried(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1()
    cluster.reconcile()
    act = actuator(cluster, timeout_s=0.3)
    cluster.inject("GET", DGD_PLURAL, status=500, times=2)
    cluster.inject("GET", "pods", status=None, delay_s=0.6)  # client times out, then retries
    assert act.read_state().ready
    cluster.inject("PATCH", "pods", status=503, times=2)
    assert act.set_cap(Role.DECODE, 420) == 1 and caps(cluster, "decode") == ["420"]
    cluster.inject("PATCH", DGD_PLURAL, status=500, times=10)
    with pytest.raises(ServerError) as info:
        act.scale(Role.DECODE, 2)
    assert info.value.kind == "server" and info.value.status == 500 and "HTTP 500" in info.value.message
    assert must_get(cluster, dgd_resource(), "default", "llm")["spec"]["services"]["VllmDecodeWorker"]["replicas"] == 1


def test_adapter_conflict_is_retried(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1()
    cluster.add_scaling_adapter("llm", "VllmPrefillWorker", 1)
    act = actuator(cluster)
    cluster.inject("PATCH", ADAPTER_PLURAL, status=409, times=2)
    act.scale(Role.PREFILL, 4)
    assert must_get(cluster, adapter_resource(), "default", "llm-vllmprefillworker")["spec"]["replicas"] == 4


def test_no_lost_update_under_a_concurrent_writer(cluster: EmulatedCluster) -> None:
    """v1beta1 replicas live in a list, so a merge patch rewrites the whole list: the actuator must carry
    the resourceVersion of a fresh read. A concurrent writer changes another component between our read
    and our write (its write lands, ours gets 409); after the retry both changes are there."""
    cluster.add_dgd_v1beta1(prefill_replicas=1, decode_replicas=2)
    act = actuator(cluster)
    act.read_state()

    def other_writer(c: EmulatedCluster) -> None:
        dgd = must_get(c, dgd_resource("v1beta1"), "default", "llm")
        comps = dgd["spec"]["components"]
        for comp in comps:
            if comp["name"] == "prefill":
                comp["replicas"] = 5
            if comp["name"] == "frontend":
                comp["replicas"] = 2
        c.patch(dgd_resource("v1beta1"), "default", "llm", {"spec": {"components": comps}})

    # The first PATCH arrives carrying the resourceVersion read just before; the writer lands first.
    cluster.inject("PATCH", DGD_PLURAL, status=None, before=other_writer)
    act.scale(Role.DECODE, 7)
    comps = {c["name"]: c["replicas"] for c in must_get(cluster, dgd_resource("v1beta1"), "default", "llm")["spec"]
             ["components"]}
    assert comps == {"frontend": 2, "prefill": 5, "decode": 7}
    patches = [p for m, p in cluster.requests() if m == "PATCH"]
    assert len(patches) == 2  # one 409, one success after a fresh read


def test_missing_dgd_is_a_clear_error(cluster: EmulatedCluster) -> None:
    with pytest.raises(NotFound) as info:
        actuator(cluster).read_state()
    assert info.value.kind == "not_found" and "kubernetes.dgd_name" in info.value.message


def test_events_are_created_on_the_dgd(cluster: EmulatedCluster) -> None:
    cluster.add_dgd_v1alpha1()
    act = actuator(cluster)
    act.read_state()
    act.emit_event("PowerPlanApplied", "decode cap=300W")
    events = cluster.list_objects("v1/events", "default")
    assert len(events) == 1 and events[0]["involvedObject"]["name"] == "llm"
    cluster.inject("POST", "events", status=500, times=10)
    act.emit_event("PowerPlanApplied", "again")  # best effort: no exception


def test_pod_watch_caps_new_pods_at_once(cluster: EmulatedCluster) -> None:
    """A replica the operator creates between cap ticks gets its role's current cap from the pod watch,
    without waiting for the next tick; existing annotations and terminating pods are left alone."""
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    act = actuator(cluster)
    act.set_cap(Role.DECODE, 350)
    stop = threading.Event()
    capped: list[str] = []

    def on_pod(_kind: str, pod: Any) -> None:
        if act.cap_new_pod(pod):
            capped.append(pod.metadata.name)

    watcher = threading.Thread(target=act.watch_pods, args=(on_pod, stop), kwargs={"read_timeout_s": 0.5},
                               daemon=True)
    watcher.start()
    try:
        cluster.add_pod("llm-decode-new", "llm", "decode")
        cluster.add_pod("llm-decode-own", "llm", "decode", cap_watts=300)  # someone else's choice: kept
        cluster.add_pod("llm-prefill-new", "llm", "prefill")  # no prefill cap written yet: nothing to copy
        assert wait_until(lambda: "llm-decode-new" in capped)
    finally:
        stop.set()
        watcher.join(timeout=5)
    annotations = {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION)
                   for p in cluster.pods("llm")}
    assert annotations["llm-decode-new"] == "350"
    new = next(p for p in cluster.pods("llm") if p["metadata"]["name"] == "llm-decode-new")
    assert new["metadata"]["annotations"][REVISION_ANNOTATION] == "1"  # acknowledgeable like any cap write
    assert annotations["llm-decode-own"] == "300"
    assert annotations["llm-prefill-new"] is None
    assert capped == ["llm-decode-new"]


def wait_until(condition: Callable[[], bool], limit_s: float = 10.0) -> bool:
    """Liveness wait (not a timing assertion): poll until ``condition`` holds or ``limit_s`` passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_new_pod_reported_twice_unannotated_is_capped_once(cluster: EmulatedCluster) -> None:
    """A restarted watch re-lists a pod whose event still shows it unannotated (CI saw the pod watch deliver
    llm-decode-new twice): the second report writes nothing, so the revision the agents acknowledge stays 1."""
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    act = actuator(cluster)
    act.set_cap(Role.DECODE, 350)
    cluster.add_pod("llm-decode-new", "llm", "decode")
    stale = act._core.read_namespaced_pod("llm-decode-new", "default")  # as the watch saw it: no annotation
    assert act.cap_new_pod(stale) is True
    assert act.cap_new_pod(stale) is False
    new = next(p for p in cluster.pods("llm") if p["metadata"]["name"] == "llm-decode-new")
    assert new["metadata"]["annotations"][CAP_ANNOTATION] == "350"
    assert new["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
