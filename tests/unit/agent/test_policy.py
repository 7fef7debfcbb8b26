"""The pure decision: annotation validation and the per-GPU plan, with property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.agent.gpu import GpuInfo
from powerplanner.agent.policy import (
    AgentPolicy,
    AnnotationError,
    Holding,
    PodInfo,
    clamp_watts,
    parse_power_annotation,
    plan_limits,
)
from powerplanner.errors import UserError


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "1e9", "250.5", "", " ", "２５０", "٣٥٠", "x" * 10_000, " 250",
                                 "250W", "+250", "0x10", "99999999"])
def test_bad_annotations_are_user_errors_naming_the_fix(raw: str) -> None:
    with pytest.raises(AnnotationError) as info:
        parse_power_annotation(raw, "pod llm/p")
    assert isinstance(info.value, UserError)
    (line,) = info.value.lines
    assert line.startswith("pod llm/p: ") and "positive integer of watts" in line and len(line) < 300


@pytest.mark.parametrize(("raw", "watts"), [("1", 1), ("250", 250), ("0350", 350), ("100000", 100_000)])
def test_good_annotations(raw: str, watts: int) -> None:
    assert parse_power_annotation(raw) == watts


@given(st.text(max_size=40))
def test_parse_accepts_exactly_ascii_positive_integers(raw: str) -> None:
    try:
        watts = parse_power_annotation(raw)
    except AnnotationError:
        ok = raw.isascii() and raw.isdigit() and 0 < int(raw) <= 100_000 and len(raw) <= 16
        assert not ok
    else:
        assert raw.isascii() and raw.isdigit() and watts == int(raw) and watts > 0


GPU_RANGES = st.tuples(st.integers(50, 400), st.integers(0, 600)).map(lambda t: (float(t[0]), float(t[0] + t[1])))


Scenario = tuple[list[GpuInfo], dict[tuple[str, str], PodInfo], list[Holding], AgentPolicy]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 6))
    gpus = []
    for i in range(n):
        lo, hi = draw(GPU_RANGES)
        gpus.append(GpuInfo(i, f"GPU-{i}", "x", lo, hi, hi))
    namespaces = ["a", "b", "c"]
    annotations = st.one_of(st.none(), st.integers(-10, 2000).map(str), st.sampled_from(["abc", "", "1e3", "２５０"]))
    pods = {}
    holdings = []
    for p in range(draw(st.integers(0, 8))):
        ns = draw(st.sampled_from(namespaces))
        pod = PodInfo(ns, f"p{p}", uid=f"u{p}", annotation=draw(annotations))
        pods[pod.key] = pod
        for g in draw(st.sets(st.integers(0, n - 1), max_size=3)):
            holdings.append(Holding(f"GPU-{g}", ns, pod.name, "main"))
    floor = draw(st.one_of(st.none(), st.integers(50, 500).map(float)))
    ceiling = draw(st.one_of(st.none(), st.integers(50, 1000).map(float)))
    if floor is not None and ceiling is not None and floor > ceiling:
        floor, ceiling = ceiling, floor
    policy = AgentPolicy(
        allowed_namespaces=frozenset(draw(st.sets(st.sampled_from(namespaces)))),
        floor_watts=floor,
        ceiling_watts=ceiling,
        park=draw(st.booleans()),
        park_watts=draw(st.one_of(st.none(), st.integers(1, 1000).map(float))),
    )
    return gpus, pods, holdings, policy


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_targets_stay_inside_the_gpu_constraints_and_the_node_policy(scenario: Scenario) -> None:
    gpus, pods, holdings, policy = scenario
    plans, _ = plan_limits(gpus, pods, holdings, policy)
    for gpu in gpus:
        plan = plans[gpu.uuid]
        if plan.target_watts is None:
            continue
        assert gpu.min_limit_watts <= plan.target_watts <= gpu.max_limit_watts
        lo = max(gpu.min_limit_watts, policy.floor_watts or 0)
        hi = min(gpu.max_limit_watts, policy.ceiling_watts or float("inf"))
        if lo <= hi:  # the node policy and the GPU's range overlap: the target is in both
            assert lo <= plan.target_watts <= hi


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_gpus_no_managed_pod_holds_are_never_capped_and_parked_only_when_parking(scenario: Scenario) -> None:
    gpus, pods, holdings, policy = scenario
    plans, _ = plan_limits(gpus, pods, holdings, policy)
    managed = {h.gpu_uuid for h in holdings if (h.namespace, h.pod) in pods and policy.allows(h.namespace)}
    held = {h.gpu_uuid for h in holdings}
    for gpu in gpus:
        action = plans[gpu.uuid].action
        if gpu.uuid not in managed:
            assert action in ("release", "park")
        if action == "park":
            assert policy.park and gpu.uuid not in held


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.sampled_from(["abc", "100", "5000", "-1", None]))
def test_a_pod_in_a_namespace_not_allowed_changes_nothing(scenario: Scenario, raw: str | None) -> None:
    gpus, pods, holdings, policy = scenario
    policy = AgentPolicy(frozenset({"a"}), policy.floor_watts, policy.ceiling_watts, False, policy.park_watts)
    before, _ = plan_limits(gpus, pods, holdings, policy)
    intruder = PodInfo("z", "intruder", uid="uz", annotation=raw)
    extra = [Holding(g.uuid, "z", "intruder") for g in gpus]
    after, rejections = plan_limits(gpus, {**pods, intruder.key: intruder}, holdings + extra, policy)
    assert {u: (p.action, p.target_watts) for u, p in after.items()} == {
        u: (p.action, p.target_watts) for u, p in before.items()
    }
    assert all(r.namespace != "z" for r in rejections)


def test_lowest_of_several_requests_and_clamp_reasons() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    pods = {("a", "p"): PodInfo("a", "p", annotation="500"), ("a", "q"): PodInfo("a", "q", annotation="100")}
    holdings = [Holding("G", "a", "p"), Holding("G", "a", "q")]
    plans, _ = plan_limits([gpu], pods, holdings, AgentPolicy(floor_watts=150))
    assert plans["G"].action == "cap" and plans["G"].target_watts == 200
    assert plans["G"].requested_watts == 100 and plans["G"].clamps == ("node_floor", "gpu_min")
    assert clamp_watts(800, gpu, AgentPolicy(ceiling_watts=650)) == (650, ("node_ceiling",))


def test_a_new_worker_without_its_annotation_yet_waits_parked_until_the_grace_ends() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    policy = AgentPolicy(new_pod_grace_s=60.0)  # parking off: the GPU sits at its default, 700 W
    new = PodInfo("a", "p", annotation=None, created_s=1_000.0, dgd_worker=True)
    holding = [Holding("G", "a", "p")]
    plans, _ = plan_limits([gpu], {new.key: new}, holding, policy, now_s=1_030.0)
    # the planner already counts it at its role's cap: wait at the GPU minimum, not at 700 W
    assert (plans["G"].action, plans["G"].target_watts, plans["G"].holder) == ("park", 200.0, holding[0])
    plans, _ = plan_limits([gpu], {new.key: new}, holding, AgentPolicy(new_pod_grace_s=60.0, park_watts=250.0),
                           now_s=1_030.0)
    assert (plans["G"].action, plans["G"].target_watts) == ("park", 250.0)
    plans, _ = plan_limits([gpu], {new.key: new}, holding, policy, now_s=1_060.0)
    assert plans["G"].action == "release"  # grace over: no annotation means no cap wanted
    plans, _ = plan_limits([gpu], {new.key: new}, holding, AgentPolicy(park=True), now_s=1_030.0)
    assert plans["G"].action == "release"  # grace 0: off
    undated = PodInfo("a", "p", annotation=None, dgd_worker=True)
    plans, _ = plan_limits([gpu], {undated.key: undated}, holding, policy, now_s=1_030.0)
    assert plans["G"].action == "release"  # no creation time: treated as old
    other = PodInfo("a", "p", annotation=None, created_s=1_000.0)  # no DGD label: nobody will annotate it
    plans, _ = plan_limits([gpu], {other.key: other}, holding, policy, now_s=1_001.0)
    assert plans["G"].action == "release"
    capped = PodInfo("a", "p", annotation="300", created_s=1_000.0, dgd_worker=True)
    plans, _ = plan_limits([gpu], {capped.key: capped}, holding, policy, now_s=1_001.0)
    assert (plans["G"].action, plans["G"].target_watts) == ("cap", 300.0)
    outsider = PodInfo("z", "p", annotation=None, created_s=1_000.0, dgd_worker=True)
    plans, _ = plan_limits([gpu], {outsider.key: outsider}, [Holding("G", "z", "p")],
                           AgentPolicy(frozenset({"a"}), park=True, new_pod_grace_s=60.0), now_s=1_001.0)
    assert plans["G"].action == "release"  # a namespace not allowed changes nothing


def test_a_pod_the_kubelet_reports_before_the_watch_waits_parked_for_at_most_the_grace() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    unseen = [Holding("G", "a", "p")]  # the kubelet's answer; the pod watch has not delivered pod a/p yet
    policy = AgentPolicy(new_pod_grace_s=60.0)
    plans, _ = plan_limits([gpu], {}, unseen, policy, now_s=1_000.0)
    assert (plans["G"].action, plans["G"].target_watts) == ("park", 200.0)  # first reported now
    plans, _ = plan_limits([gpu], {}, unseen, policy, now_s=1_059.0, unseen_since_s={("a", "p"): 1_000.0})
    assert plans["G"].action == "park"
    plans, _ = plan_limits([gpu], {}, unseen, policy, now_s=1_060.0, unseen_since_s={("a", "p"): 1_000.0})
    assert plans["G"].action == "release"  # never delivered within the grace: as a pod without a cap
    plans, _ = plan_limits([gpu], {}, unseen, AgentPolicy(park=True), now_s=1_000.0)
    assert plans["G"].action == "release"  # grace 0: as before
    plans, _ = plan_limits([gpu], {}, unseen, AgentPolicy(frozenset({"b"}), park=True, new_pod_grace_s=60.0),
                           now_s=1_000.0)
    assert plans["G"].action == "release"  # a namespace not allowed changes nothing
