"""The reconciler against the in-memory GPU backend: what it sets, when, and how it recovers."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from powerplanner.agent import state as state_module
from powerplanner.agent.gpu import InvalidArgument, NoPermission, NotSupported
from powerplanner.agent.policy import Holding
from powerplanner.contract import AGENT_CONTAINER_LABEL, AGENT_NAMESPACE_LABEL, AGENT_POD_LABEL
from tests.support.agent_world import World, agent_policy, make_world


def gpu_labels(world: World, gpu: int, pod: str, namespace: str = "llm", container: str = "main") -> dict[str, str]:
    """The labels of one GPU's series, by the contract's names (the workload in pod_name, pod_namespace, ...)."""
    return {"gpu": str(gpu), "uuid": world.uuid(gpu), AGENT_POD_LABEL: pod, AGENT_NAMESPACE_LABEL: namespace,
            AGENT_CONTAINER_LABEL: container}


def test_caps_the_gpus_a_pod_holds_and_only_on_change(world: World) -> None:
    world.put_pod("p", [0, 1], "300")
    world.reconciler.reconcile()
    assert world.limits() == [300, 300, 700, 700]
    calls = len(world.backend.set_calls)
    world.reconciler.reconcile()
    world.reconciler.reconcile()
    assert len(world.backend.set_calls) == calls  # nothing changed, nothing written


def test_records_the_original_before_the_first_change_and_restores_on_release(world: World) -> None:
    world.put_pod("p", [2], "250")
    world.reconciler.reconcile()
    assert json.loads(world.state.path.read_text())["originals"] == {world.uuid(2): 700.0}
    world.put_pod("p", [2], "300")
    world.reconciler.reconcile()
    assert world.state.original(world.uuid(2)) == 700.0  # not overwritten by the intermediate cap
    world.delete_pod("p")
    world.reconciler.reconcile()
    assert world.limits() == [700, 700, 700, 700]
    assert world.state.originals() == {}


def test_lowest_request_wins_on_a_shared_gpu(world: World) -> None:
    world.put_pod("a", [0], "400")
    world.put_pod("b", [0], "350")
    result = world.reconciler.reconcile()
    assert world.limits()[0] == 350
    holder = result.plans[world.uuid(0)].holder
    assert holder is not None and holder.pod == "b"


def test_clamps_to_gpu_and_node_policy_and_counts_them(tmp_path: Path) -> None:
    w = make_world(tmp_path / "s.json", agent_policy(floor_watts=250, ceiling_watts=600))
    w.put_pod("low", [0], "100")
    w.put_pod("high", [1], "900")
    w.reconciler.reconcile()
    assert w.limits()[:2] == [250, 600]
    assert w.counter("powerplanner_agent_clamps_total", reason="node_floor") == 1
    assert w.counter("powerplanner_agent_clamps_total", reason="node_ceiling") == 1


def test_gpu_minimum_clamp(world: World) -> None:
    world.put_pod("p", [0], "50")
    world.reconciler.reconcile()
    assert world.limits()[0] == 200
    assert world.counter("powerplanner_agent_clamps_total", reason="gpu_min") == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "not_integer"),
        ("-5", "not_positive"),
        ("0", "not_positive"),
        ("1e9", "not_integer"),
        ("250.5", "not_integer"),
        ("", "empty"),
        ("２５０", "not_integer"),
        ("9" * 10_000, "too_long"),
        ("99999999", "too_large"),
    ],
)
def test_bad_annotation_is_refused_with_metric_and_log_and_the_gpu_keeps_a_safe_limit(
    world: World, raw: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    world.put_pod("p", [0, 1], "300")
    world.reconciler.reconcile()
    world.put_pod("p", [0, 1], raw)
    with caplog.at_level(logging.ERROR, logger="powerplanner.agent"):
        world.reconciler.reconcile()
        world.reconciler.reconcile()  # counted and logged once per bad value, not per pass
    assert world.limits()[:2] == [300, 300]  # held: neither raised nor lowered
    assert world.counter("powerplanner_agent_annotation_rejections_total", reason=reason) == 1
    lines = [r.getMessage() for r in caplog.records if "gpu-power-limit" in r.getMessage()]
    assert len(lines) == 1 and "llm/p" in lines[0] and "positive integer" in lines[0]
    assert len(lines[0]) < 400  # a 10 kB value is not echoed into the log


def test_bad_annotation_on_a_fresh_gpu_leaves_it_untouched(world: World) -> None:
    world.put_pod("p", [3], "abc")
    world.reconciler.reconcile()
    assert world.limits()[3] == 700 and world.backend.set_calls == []


def test_namespace_not_allowed_changes_nothing(tmp_path: Path) -> None:
    w = make_world(tmp_path / "s.json", agent_policy())
    w.put_pod("intruder", [0], "200", namespace="other")
    w.put_pod("unlabelled", [1], "200", dgd_worker=False)  # allowed namespace, but not a Dynamo worker
    w.reconciler.reconcile()
    assert w.backend.set_calls == []


def test_no_allowed_namespace_honours_no_cap(tmp_path: Path) -> None:
    w = make_world(tmp_path / "s.json", agent_policy(allowed_namespaces=frozenset()))
    w.put_pod("p", [0], "200")
    w.reconciler.reconcile()
    assert w.backend.set_calls == []


def test_parking_keeps_free_gpus_and_workers_without_a_cap_parked(tmp_path: Path) -> None:
    w = make_world(tmp_path / "s.json", agent_policy(park=True, park_watts=220))
    w.put_pod("p", [0], None)  # a Dynamo worker the planner has not annotated yet: parked, however old
    w.put_pod("other", [3], None, dgd_worker=False)  # someone else's workload: its GPU is not ours to park
    w.reconciler.reconcile()
    assert w.limits() == [220, 220, 220, 700]
    w.put_pod("q", [1], "500")
    w.put_pod("p", [0], "300")
    w.reconciler.reconcile()
    assert w.limits() == [300, 500, 220, 700]
    w.delete_pod("q")  # its GPU goes to the park limit, not back to 700 W
    w.reconciler.reconcile()
    assert w.limits() == [300, 220, 220, 700]
    w.put_pod("p", [0], None)  # its annotation removed: parked again (fail closed)
    w.reconciler.reconcile()
    assert w.limits() == [220, 220, 220, 700]


def test_parking_keeps_a_holder_the_pod_watch_never_delivered_parked(tmp_path: Path) -> None:
    """The agent's API access fails: the kubelet reports a pod the watch cannot deliver. Parking on: its GPU
    stays parked for as long as that lasts (with parking off it would be released after the grace)."""
    clock = [1_000.0]
    w = make_world(tmp_path / "s.json", agent_policy(park=True, new_pod_grace_s=60.0), wall_clock=lambda: clock[0])
    w.mapper.table = [Holding(w.uuid(0), "llm", "unseen", "main")]
    for now in (1_000.0, 1_059.0, 1_061.0, 5_000.0):
        clock[0] = now
        w.reconciler.reconcile()
        assert w.limits() == [200, 200, 200, 200], now


def test_dry_run_changes_nothing_and_writes_no_state(tmp_path: Path) -> None:
    w = make_world(tmp_path / "s.json", dry_run=True)
    w.put_pod("p", [0], "300")
    result = w.reconciler.reconcile()
    assert result.changed == {w.uuid(0): 300}
    assert w.limits()[0] == 700 and not w.state.path.exists()


@pytest.mark.parametrize(
    ("error", "reason"),
    [(NoPermission, "no_permission"), (NotSupported, "not_supported"), (InvalidArgument, "invalid_argument")],
)
def test_nvml_error_on_set_is_counted_the_other_gpus_proceed_and_it_retries(
    world: World, error: type[Exception], reason: str
) -> None:
    world.backend.fail(world.uuid(0), "set", error)  # type: ignore[arg-type]
    world.put_pod("p", [0, 1], "300")
    result = world.reconciler.reconcile()
    assert result.failures == {world.uuid(0): reason}
    assert world.limits()[:2] == [700, 300]
    assert world.counter("powerplanner_agent_apply_failures_total", reason=reason) == 1
    world.reconciler.reconcile()  # the next pass (event or resync) retries
    assert world.limits()[:2] == [300, 300]


def test_gpu_lost_does_not_stop_the_others_and_recovers(world: World) -> None:
    world.backend.lose(world.uuid(1))
    world.put_pod("p", [0, 1], "300")
    world.reconciler.reconcile()
    assert world.counter("powerplanner_agent_apply_failures_total", reason="gpu_lost") == 1
    assert world.backend.limit_watts(world.uuid(0)) == 300
    world.backend.lose(world.uuid(1), lost=False)
    world.reconciler.reconcile()
    assert world.limits()[:2] == [300, 300]


def test_state_file_unwritable_lowering_applies_and_raising_waits(tmp_path: Path) -> None:
    """A cap below the current limit is applied even when its original cannot be recorded (refusing it would
    leave the GPU above what the planner counts); a raise without a recorded original is refused."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    w = make_world(blocker / "state.json")
    w.backend.set_limit_watts(w.uuid(1), 250)  # someone else left GPU 1 at 250 W
    w.backend.set_calls.clear()
    w.put_pod("p", [0], "300")
    w.put_pod("q", [1], "400")
    result = w.reconciler.reconcile()
    assert w.limits()[:2] == [300, 250]  # lowered; the raise is refused
    assert result.failures == {w.uuid(1): "state_file"}
    assert w.counter("powerplanner_agent_apply_failures_total", reason="state_file") == 2
    assert w.state.originals() == {w.uuid(0): 700.0}  # kept in memory, the true original
    w.delete_pod("p")
    w.reconciler.reconcile()
    assert w.limits()[0] == 700  # released to the original it remembered


def test_an_unsaved_original_reaches_the_disk_at_a_later_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(tmp_path / "state.json")
    w.put_pod("p", [0], "300")
    with monkeypatch.context() as patch:
        patch.setattr(state_module.os, "fsync", _no_space)
        w.reconciler.reconcile()
        w.reconciler.reconcile()  # still failing: retried, nothing else changes
    assert w.limits()[0] == 300 and not w.state.path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    w.reconciler.reconcile()  # the disk accepts writes again
    assert json.loads(w.state.path.read_text())["originals"] == {w.uuid(0): 700.0}


def _no_space(_fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_nan_entry_does_not_fail_passes_and_its_gpu_takes_the_default(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = make_world(path)
    uuids = [first.uuid(i) for i in range(4)]
    first.backend.set_limit_watts(uuids[0], 300)
    first.backend.set_limit_watts(uuids[1], 450)
    path.write_text(f'{{"version": 2, "node": "node-a", "originals": {{"{uuids[0]}": NaN, "{uuids[1]}": 650}}}}')
    w = make_world(path, backend=first.backend)
    result = w.reconciler.reconcile()  # no pod holds either: both released
    assert result.failures == {}
    assert w.limits() == [700, 650, 700, 700] and w.state.originals() == {}


def test_a_corrupt_file_left_by_a_predecessor_restores_the_default_not_the_cap(tmp_path: Path) -> None:
    """The predecessor left GPU 0 at 300 W and a state file nobody can read: the GPU is not stuck at 300 W."""
    path = tmp_path / "state.json"
    first = make_world(path)
    first.put_pod("p", [0], "300")
    first.reconciler.reconcile()
    path.write_bytes(b"\xff\xfe garbage")
    first.delete_pod("p")
    w = first.restart()
    w.reconciler.reconcile()
    assert w.limits() == [700, 700, 700, 700]
    assert [p.read_bytes() for p in tmp_path.glob("state.json.*.bad")] == [b"\xff\xfe garbage"]


@pytest.mark.parametrize("park", [False, True])
def test_a_restart_hands_over_without_a_single_set(tmp_path: Path, park: bool) -> None:
    """SIGTERM leaves the limits and the state file; the next agent's first pass finds every GPU where its plan
    wants it and writes nothing (the budget holds across the restart)."""
    policy = agent_policy(park=park)
    w = make_world(tmp_path / "state.json", policy)
    w.put_pod("p", [0, 1], "300")
    w.put_pod("q", [2], "450")
    w.reconciler.reconcile()
    before, recorded = w.limits(), w.state.originals()
    w.backend.set_calls.clear()
    nxt = w.restart(policy)  # no restore_all: the agent handed over
    nxt.reconciler.reconcile()
    assert nxt.limits() == before and nxt.backend.set_calls == []
    assert nxt.state.originals() == recorded
    assert before == ([300, 300, 450, 200] if park else [300, 300, 450, 700])


@pytest.mark.parametrize(("park", "expected"), [(False, 700), (True, 200)])
def test_at_start_up_a_gpu_whose_pod_is_gone_follows_the_normal_plan(tmp_path: Path, park: bool,
                                                                      expected: float) -> None:
    policy = agent_policy(park=park)
    w = make_world(tmp_path / "state.json", policy)
    w.put_pod("p", [0], "300")
    w.put_pod("q", [1], "400")
    w.reconciler.reconcile()
    w.delete_pod("p")  # gone while no agent ran
    nxt = w.restart(policy)
    nxt.reconciler.reconcile()
    assert nxt.limits()[:2] == [expected, 400]
    assert nxt.state.original(nxt.uuid(1)) == 700.0


def test_restore_all_puts_every_changed_gpu_back(world: World) -> None:
    world.put_pod("p", [0, 1, 2], "300")
    world.reconciler.reconcile()
    assert world.reconciler.restore_all() == {}
    assert world.limits() == [700, 700, 700, 700]
    assert world.state.originals() == {}


def test_restore_failure_keeps_the_entry_for_the_next_start(world: World) -> None:
    world.put_pod("p", [0], "300")
    world.reconciler.reconcile()
    world.backend.fail(world.uuid(0), "set", NoPermission, times=3)  # every attempt
    assert world.reconciler.restore_all() == {world.uuid(0): "no_permission"}
    assert world.state.original(world.uuid(0)) == 700.0
    restarted = world.restart()
    world.delete_pod("p")
    restarted.reconciler.reconcile()
    assert restarted.limits()[0] == 700 and restarted.state.originals() == {}


def test_a_gpu_that_fails_twice_is_restored_in_the_third_round_after_doubling_waits(tmp_path: Path) -> None:
    slept: list[float] = []
    world = make_world(tmp_path / "state.json", sleep=slept.append)
    world.put_pod("p", [0, 1], "300")
    world.reconciler.reconcile()
    world.backend.fail(world.uuid(0), "set", NoPermission, times=2)  # the third round succeeds
    sets_before = world.counter("powerplanner_agent_limit_changes_total", action="restore")
    assert world.reconciler.restore_all() == {}
    assert world.limits()[:2] == [700, 700] and world.state.originals() == {}
    assert slept == [0.2, 0.4]  # restore_backoff_s, doubling, between the three rounds
    assert world.counter("powerplanner_agent_limit_changes_total", action="restore") == sets_before + 2


def test_restart_after_a_kill_restores_gpus_no_longer_managed_and_keeps_the_original(world: World) -> None:
    world.put_pod("p", [0], "300")
    world.put_pod("q", [1], "400")
    world.reconciler.reconcile()
    # killed here (no restore); meanwhile pod p goes away
    world.delete_pod("p")
    restarted = world.restart()
    restarted.reconciler.reconcile()
    assert restarted.limits()[:2] == [700, 400]
    assert restarted.state.originals() == {world.uuid(1): 700.0}  # the original, not the 400 W cap


def test_killed_between_state_write_and_set_recovers(world: World) -> None:
    world.state.record_original(world.uuid(0), 700.0)  # the agent died right after this write
    world.put_pod("p", [0], "300")
    restarted = world.restart()
    restarted.reconciler.reconcile()
    assert restarted.limits()[0] == 300
    assert restarted.reconciler.restore_all() == {}
    assert restarted.limits()[0] == 700


def test_the_revision_acted_on_is_exported_for_the_planner(world: World) -> None:
    """The planner's acknowledgement (live/ledger.py): each GPU reports the revision of the request it acted
    on, and only once it has acted on it; a pod without a revision annotation reports none."""
    world.put_pod("p", [0, 1], "300", revision=4)
    world.put_pod("q", [2], "350")
    reg = world.metrics.registry

    def revision(gpu: int, pod: str) -> float | None:
        return reg.get_sample_value("powerplanner_agent_gpu_power_limit_revision", gpu_labels(world, gpu, pod))

    assert revision(0, "p") is None  # nothing acted on yet
    world.reconciler.reconcile()
    assert (revision(0, "p"), revision(1, "p"), revision(2, "q")) == (4.0, 4.0, None)
    world.put_pod("p", [0, 1], "250", revision=5)
    world.reconciler.reconcile()
    assert (revision(0, "p"), revision(1, "p")) == (5.0, 5.0) and world.limits()[:2] == [250, 250]


def test_gpu_default_metrics_are_published(world: World) -> None:
    world.put_pod("p", [0], "300")
    world.reconciler.reconcile()
    labels = gpu_labels(world, 0, "p")
    reg = world.metrics.registry
    assert reg.get_sample_value("powerplanner_agent_gpu_power_limit_requested_watts", labels) == 300
    assert reg.get_sample_value("powerplanner_agent_gpu_power_limit_applied_watts", labels) == 300
    assert reg.get_sample_value("powerplanner_agent_gpu_power_limit_default_watts", labels) == 700
    assert reg.get_sample_value("powerplanner_agent_gpu_power_draw_watts", labels) == 100
    assert reg.get_sample_value("powerplanner_agent_gpu_energy_joules_total", labels) == 0
    assert reg.get_sample_value("powerplanner_agent_reconcile_duration_seconds_count", {}) == 1
