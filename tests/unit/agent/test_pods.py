"""The pod watch: client-side node filter, event handling, first-sync wake-up and relisting on failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from powerplanner.agent.pods import PodWatcher, pod_info
from powerplanner.kube.errors import ServerError, Timeout, Unreachable


def pod(name: str, node: str = "n1", watts: str | None = None, phase: str = "Running") -> dict[str, Any]:
    annotations = {"dynamo.nvidia.com/gpu-power-limit": watts} if watts else {}
    return {"metadata": {"name": name, "namespace": "llm", "uid": f"u-{name}", "annotations": annotations},
            "spec": {"nodeName": node}, "status": {"phase": phase,
                                                  "containerStatuses": [{"name": "main", "containerID": "containerd://abc"}]}}


class FakeApi:
    """Scripted answers: each list returns ``items``; each watch yields the next script (or raises it).
    After the last script the stop event is set, so the watcher returns without relisting."""

    def __init__(self, items: list[dict[str, Any]], watches: list[Any], stop: threading.Event) -> None:
        self.items = items
        self.watches = watches
        self.lists = 0
        self.stop = stop

    def list_pods(self, field_selector: str) -> tuple[list[dict[str, Any]], str]:
        assert field_selector == "spec.nodeName=n1"
        self.lists += 1
        return list(self.items), "1"

    def watch_pods(self, field_selector: str, resource_version: str, timeout_s: float) -> Iterator[dict[str, Any]]:
        script = self.watches.pop(0) if self.watches else []
        last = not self.watches
        if isinstance(script, Exception):
            if last:
                self.stop.set()
            raise script
        yield from script
        if last:
            self.stop.set()  # the last script: the watcher exits after it


def run(api: FakeApi, stop: threading.Event) -> tuple[PodWatcher, list[str], list[str]]:
    changes: list[str] = []
    restarts: list[str] = []
    watcher = PodWatcher(
        api, "n1", lambda: changes.append("x"), resync_s=1, on_restart=restarts.append, max_backoff_s=0.01  # type: ignore[arg-type]
    )
    watcher.run(stop)
    return watcher, changes, restarts


def test_first_list_wakes_the_reconciler_even_without_pods() -> None:
    stop = threading.Event()
    watcher, changes, _ = run(FakeApi([], [], stop), stop)
    assert watcher.synced.is_set() and changes == ["x"] and watcher.snapshot() == {}


def test_events_filter_by_node_and_phase() -> None:
    stop = threading.Event()
    script = [
        {"type": "ADDED", "object": pod("a", watts="300")},
        {"type": "ADDED", "object": pod("elsewhere", node="n2", watts="200")},
        {"type": "MODIFIED", "object": pod("a", watts="250")},
        {"type": "ADDED", "object": pod("b")},
        {"type": "MODIFIED", "object": pod("b", phase="Succeeded")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
    ]
    api = FakeApi([pod("z", node="n2")], [script], stop)
    watcher, _, restarts = run(api, stop)
    snapshot = watcher.snapshot()
    assert list(snapshot) == [("llm", "a")]
    assert snapshot[("llm", "a")].annotation == "250"
    assert snapshot[("llm", "a")].containers == (("main", "abc"),)
    assert restarts == []  # stopped after the script


def test_failures_relist() -> None:
    stop = threading.Event()
    gone = [{"type": "ERROR", "object": {"kind": "Status", "code": 410}}]
    api = FakeApi([pod("a")], [ServerError("HTTP 500: boom", status=500), Unreachable("refused"), gone,
                               Timeout("idle"), []], stop)
    _, _, restarts = run(api, stop)
    assert restarts == ["http_500", "connection", "expired", "timeout"]
    assert api.lists == 5


def test_pod_info_reads_the_creation_time_and_tolerates_a_bad_one() -> None:
    obj = {"metadata": {"namespace": "llm", "name": "p", "creationTimestamp": "2026-12-01T10:00:00Z"}}
    assert pod_info(obj).created_s == 1_796_119_200.0
    assert pod_info({"metadata": {"name": "p", "creationTimestamp": "yesterday"}}).created_s is None
    assert pod_info({"metadata": {"name": "p"}}).created_s is None


def test_pod_info_reads_the_planners_revision_and_refuses_anything_but_a_positive_integer() -> None:
    def revision(raw: object) -> int | None:
        annotations = {"powerplanner.dev/gpu-power-limit-revision": raw}
        return pod_info({"metadata": {"name": "p", "annotations": annotations}}).revision

    assert revision("7") == 7
    assert [revision(r) for r in ("", "0", "-3", "abc", "1.5", "\u0667", "9" * 19, 12)] == [None] * 8
    assert pod_info({"metadata": {"name": "p"}}).revision is None


def test_pod_info_knows_a_dynamo_worker_by_its_dgd_label() -> None:
    labels = {"nvidia.com/dynamo-graph-deployment-name": "llm"}
    assert pod_info({"metadata": {"name": "p", "labels": labels}}).dgd_worker
    assert not pod_info({"metadata": {"name": "p", "labels": {"app": "x"}}}).dgd_worker


def test_the_agent_reads_the_names_the_planner_writes() -> None:
    from powerplanner.agent import policy
    from powerplanner.live.actuator import cap_annotation_value, cap_patch

    written = cap_patch(cap_annotation_value(350.7), {policy.REVISION_ANNOTATION: "4"})["metadata"]["annotations"]
    assert set(written) == {policy.POWER_LIMIT_ANNOTATION, policy.REVISION_ANNOTATION}
    assert policy.parse_power_annotation(written[policy.POWER_LIMIT_ANNOTATION]) == 350
    assert written[policy.REVISION_ANNOTATION] == "5"


class RecordingStop(threading.Event):
    """A stop event whose waits are recorded instead of slept."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0.0))
        return self.is_set()


class FailingListApi(FakeApi):
    """The list fails ``failures`` times (the API is down), then the scripted watches run."""

    def __init__(self, failures: int, watches: list[Any], stop: threading.Event) -> None:
        super().__init__([pod("a")], watches, stop)
        self.failures = failures

    def list_pods(self, field_selector: str) -> tuple[list[dict[str, Any]], str]:
        if self.failures:
            self.failures -= 1
            raise Unreachable("refused")
        return super().list_pods(field_selector)


def test_a_failing_list_backs_off_doubling_to_the_cap_and_a_good_list_resets_it() -> None:
    stop = RecordingStop()
    api = FailingListApi(6, [ServerError("HTTP 500: boom", status=500), []], stop)
    restarts: list[str] = []
    watcher = PodWatcher(api, "n1", lambda: None, resync_s=1, on_restart=restarts.append,  # type: ignore[arg-type]
                         max_backoff_s=1.0)
    watcher.run(stop)
    assert stop.waits == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.2])  # 6 failed lists, then a failed watch
    assert restarts == ["connection"] * 6 + ["http_500"] and api.lists == 2
