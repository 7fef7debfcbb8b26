"""Blind feedback: FeedbackWatch's counting, the diagnosis of missing agent series, and the loop saying so
(gauge, one Event per episode) while never adding power on the strength of a cut no agent acknowledged."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.contract import AGENT_NAMESPACE_LABEL, AGENT_POD_LABEL
from powerplanner.live.budget import CompositeBudget, StaticBudget
from powerplanner.live.clock import FakeClock
from powerplanner.live.feedback import (
    EXPORTED_POD_LABEL,
    FeedbackDiagnosis,
    FeedbackWatch,
    diagnose_agent_series,
    diagnosis_query,
)
from powerplanner.live.kubernetes import ClusterState, PodInfo, RoleCluster
from powerplanner.live.loop import LiveLoop, LoopSettings
from powerplanner.live.prometheus import MetricsReading
from powerplanner.model.roles import Role
from tests.unit.live.fakes import FakeActuator, FakeMetrics, StepPlanner, cap

POD, NS = AGENT_POD_LABEL, AGENT_NAMESPACE_LABEL


def cluster(ready: dict[str, bool], terminating: frozenset[str] = frozenset()) -> ClusterState:
    pods = tuple(PodInfo(name, ok, name in terminating, 300) for name, ok in ready.items())
    roles = {Role.PREFILL: RoleCluster("prefill", len(pods), len(pods), 0, 0, 4, pods),
             Role.DECODE: RoleCluster("decode", 0, 0, 0, 0, 4, ())}
    return ClusterState("llm", "default", "v1alpha1", True, "Ready", roles)


# -- FeedbackWatch --------------------------------------------------------------------------------------------

def test_blind_after_exactly_n_ticks_without_series_and_restored_by_one_series() -> None:
    watch = FeedbackWatch(3)
    state = cluster({"a": True, "b": True})
    verdicts = [watch.update(state, frozenset(), True) for _ in range(4)]
    assert [v.blind for v in verdicts] == [False, False, True, True]
    assert [v.started for v in verdicts] == [False, False, True, False]  # one episode, one start
    assert verdicts[2].blind_pods == ("a", "b") and verdicts[2].watched_pods == 2
    partly = watch.update(state, frozenset({"a"}), True)
    assert partly.blind and partly.blind_pods == ("b",) and not partly.ended
    back = watch.update(state, frozenset({"a", "b"}), True)
    assert not back.blind and back.ended


def test_only_positive_evidence_moves_the_count() -> None:
    """A failed read, a pod that is not Ready or terminating neither counts nor resets; a gone pod is forgotten."""
    watch = FeedbackWatch(2)
    watch.update(cluster({"a": True}), frozenset(), True)
    assert not watch.update(cluster({"a": True}), frozenset(), False).blind  # Prometheus down: not blind
    assert watch.update(cluster({"a": True}), frozenset(), True).blind  # the second blind tick of a
    watch = FeedbackWatch(2)
    for _ in range(5):
        assert not watch.update(cluster({"n": False, "t": True}, frozenset({"t"})), frozenset(), True).blind
    watch.update(cluster({"a": True}), frozenset(), True)
    watch.update(cluster({}), frozenset(), True)  # a is gone
    assert not watch.update(cluster({"a": True}), frozenset(), True).blind  # a new pod of that name starts at 1


def test_a_source_that_cannot_acknowledge_is_not_watched() -> None:
    watch = FeedbackWatch(1)
    assert not watch.update(cluster({"a": True}), None, True).blind
    assert watch.update(cluster({"a": True}), frozenset(), True).blind
    assert watch.update(cluster({"a": True}), None, True).ended


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 4), ticks=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=25))
def test_blind_iff_n_consecutive_good_reads_without_the_pods_series(n: int, ticks: list[tuple[bool, bool, bool]]
                                                                    ) -> None:
    """Model: per pod, ticks with a good read and the pod Ready but no series, since the last series."""
    watch = FeedbackWatch(n)
    missing = 0
    episodes = 0
    for has_series, source_ok, ready in ticks:
        verdict = watch.update(cluster({"p": ready}), frozenset({"p"}) if has_series else frozenset(), source_ok)
        if source_ok and ready:
            missing = 0 if has_series else missing + 1
        assert verdict.blind == (missing >= n)
        episodes += verdict.started
    assert episodes <= sum(1 for has, ok, ready in ticks if ok and ready and not has)


def test_blind_ticks_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FeedbackWatch(0)


# -- diagnosis ------------------------------------------------------------------------------------------------

def test_diagnosis_query_groups_by_ours_and_the_renamed_labels() -> None:
    query = diagnosis_query()
    assert query.startswith("count by (") and POD in query and EXPORTED_POD_LABEL in query
    assert "exported_pod," in query or "exported_pod)" in query


@pytest.mark.parametrize(
    ("label_sets", "kind", "words"),
    [
        ([], "no_series", "Prometheus does not scrape the agents"),
        ([{EXPORTED_POD_LABEL: "w0", "exported_pod_namespace": "dyn"}], "relabelled",
         "carry exported_pod_name / lack pod_name"),
        ([{"exported_pod": "w0", "exported_namespace": "dyn"}], "relabelled", "carry exported_pod / lack pod_name"),
        ([{}], "no_pod_label", "no pod_name label"),
        ([{POD: "w0", NS: "other"}], "other_namespaces", "only in namespace(s) other, none in dyn"),
        ([{POD: "w0", NS: "dyn"}], "some_pods", "no agent series for 1 of 2 pod(s) (w1)"),
        ([{POD: "w0", NS: "dyn"}, {POD: "w1", NS: "dyn"}, {}], "ok", "for 2 pod(s) of dyn"),
    ],
)
def test_diagnosis_names_the_cause(label_sets: list[dict[str, str]], kind: str, words: str) -> None:
    found = diagnose_agent_series(label_sets, "dyn", ["w0", "w1"])
    assert found.kind == kind and found.ok == (kind == "ok")
    assert words in found.cause, found.cause
    if kind == "relabelled":
        assert "honorLabels: true" in found.fix
    if kind == "no_series":
        assert "scrape the agents" in found.fix


def test_diagnosis_without_a_pod_list_accepts_any_pod_of_the_namespace() -> None:
    assert diagnose_agent_series([{POD: "x", NS: "dyn"}], "dyn", None).ok
    assert diagnose_agent_series([{POD: "x", NS: "dyn"}], "dyn", None).attributed == ("x",)
    assert not diagnose_agent_series([{POD: "x", NS: "other"}], "dyn", None).ok


# -- the loop -------------------------------------------------------------------------------------------------

def blind_reading(series: frozenset[str] = frozenset(), acked: dict[str, tuple[float, float]] | None = None
                  ) -> MetricsReading:
    return MetricsReading(1.0, 1000.0, 100.0, 100.0, 20.0, revision_by_pod=acked or {}, series_pods=series)


def test_the_loop_says_it_is_blind_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    act = FakeActuator(caps={Role.PREFILL: 400, Role.DECODE: 400})
    metrics = FakeMetrics(default=blind_reading())
    asked: list[tuple[str, ...]] = []

    def diagnose(pods: object) -> FeedbackDiagnosis:
        asked.append(tuple(pods))  # type: ignore[arg-type]
        return FeedbackDiagnosis(False, "relabelled", "agent series carry exported_pod_name / lack pod_name",
                                 "set honorLabels: true")

    loop = LiveLoop(StepPlanner(), metrics, act, CompositeBudget([StaticBudget(10000.0)]), FakeClock(),
                    LoopSettings(cap_interval_s=5.0, window_s=60.0, blind_ticks=3), diagnose_feedback=diagnose)
    gauge = loop.telemetry.registry.get_sample_value
    with caplog.at_level(logging.WARNING, logger="powerplanner.live.loop"):
        for _ in range(2):
            loop.tick()
        assert gauge("powerplanner_feedback_blind") == 0 and not act.events
        for _ in range(3):
            loop.tick()
    assert gauge("powerplanner_feedback_blind") == 1 and gauge("powerplanner_feedback_blind_pods") == 2
    assert [(e[0], e[2]) for e in act.events] == [("FeedbackBlind", True)]
    assert "exported_pod_name" in act.events[0][1] and "honorLabels: true" in act.events[0][1]
    assert asked == [("decode-0", "prefill-0")]  # one diagnosis query per episode
    assert sum("feedback blind" in r.getMessage() for r in caplog.records) == 1
    metrics.default = blind_reading(frozenset({"prefill-0", "decode-0"}))
    loop.tick()
    assert gauge("powerplanner_feedback_blind") == 0
    assert [e[0] for e in act.events] == ["FeedbackBlind", "FeedbackRestored"]


def test_a_failing_diagnosis_still_names_the_likely_causes() -> None:
    act = FakeActuator()

    def diagnose(_pods: object) -> FeedbackDiagnosis:
        raise RuntimeError("prometheus down")

    loop = LiveLoop(StepPlanner(), FakeMetrics(default=blind_reading()), act, CompositeBudget([StaticBudget(1e4)]),
                    FakeClock(), LoopSettings(cap_interval_s=5.0, window_s=60.0, blind_ticks=1),
                    diagnose_feedback=diagnose)
    loop.tick()
    message = act.events[0][1]
    assert "honorLabels" in message and "does not scrape the agents" in message


def test_while_blind_a_cut_never_pays_for_a_raise() -> None:
    """Prefill is cut 500 -> 300 W to raise decode 400 -> 600 W. No agent series ever arrives: prefill keeps
    counting at 500 W and the raise waits, tick after tick; once the agent acknowledges the cut, it runs."""
    act = FakeActuator(caps={Role.PREFILL: 500, Role.DECODE: 400})
    metrics = FakeMetrics(default=blind_reading())
    planner = StepPlanner((cap(Role.PREFILL, 300), cap(Role.DECODE, 600)))
    loop = LiveLoop(planner, metrics, act, CompositeBudget([StaticBudget(10000.0)]), FakeClock(),
                    LoopSettings(cap_interval_s=5.0, window_s=60.0, blind_ticks=2))
    for _ in range(6):
        loop.tick()
        assert act.caps[Role.DECODE] == 400
    assert [o.prefill.applied_cap_watts for o in planner.observations] == [500.0] * 6
    assert loop.feedback.blind
    ack = {"prefill-0": (float(act.revisions[Role.PREFILL]),) * 2}
    metrics.default = blind_reading(frozenset({"prefill-0", "decode-0"}), ack)
    loop.tick()  # this tick sees the acknowledgement: prefill counts at 300 W, the raise runs
    assert planner.observations[-1].prefill.applied_cap_watts == 300.0
    assert act.caps[Role.DECODE] == 600


def test_while_blind_a_role_cut_then_planned_back_up_is_written_back() -> None:
    """Budget down then up again, no acknowledgement: prefill is annotated 233 W but counts at 266 W, and the
    plan back to 266 W has no step (it looks in force). The loop writes 266 W back: no power above the count."""
    act = FakeActuator(caps={Role.PREFILL: 266, Role.DECODE: 200})
    metrics = FakeMetrics(default=blind_reading())
    planner = StepPlanner((cap(Role.PREFILL, 233),), cap=233.0)
    loop = LiveLoop(planner, metrics, act, CompositeBudget([StaticBudget(10000.0)]), FakeClock(),
                    LoopSettings(cap_interval_s=5.0, window_s=60.0))
    loop.tick()
    assert act.caps[Role.PREFILL] == 233
    planner.steps, planner.cap = (), 266.0  # the planner sees prefill at 266 W (unacknowledged): nothing to do
    report = loop.tick()
    assert planner.observations[-1].prefill.applied_cap_watts == 266.0
    assert act.caps[Role.PREFILL] == 266 and act.caps[Role.DECODE] == 200  # a raise is the plan's, never a catch-up
    assert [(o.step.role, o.outcome) for o in report.outcomes] == [(Role.PREFILL, "done")]
