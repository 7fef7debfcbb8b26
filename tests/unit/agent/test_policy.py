"""The pure decision: annotation validation and the per-GPU plan, with property tests."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.agent.gpu import GpuInfo
from powerplanner.agent.mapping import resolve_device_id
from powerplanner.agent.policy import (
    AgentPolicy,
    AnnotationError,
    GpuPlan,
    Holding,
    PodInfo,
    clamp_watts,
    parse_power_annotation,
    plan_limits,
)
from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus
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
NAMESPACES = ["a", "b", "c"]
ANNOTATIONS = st.one_of(st.none(), st.integers(-10, 2000).map(str), st.sampled_from(["abc", "", "1e3", "２５０", "1"]))
NOW_S = 10_000.0


@dataclass(frozen=True)
class Scenario:
    gpus: list[GpuInfo]
    pods: dict[tuple[str, str], PodInfo]
    holdings: list[Holding]  # includes holders the pod watch has not delivered (not in pods)
    policy: AgentPolicy
    unseen_since_s: dict[tuple[str, str], float]

    def plan(self, policy: AgentPolicy | None = None) -> dict[str, GpuPlan]:
        plans, _ = plan_limits(self.gpus, self.pods, self.holdings, policy or self.policy, NOW_S, self.unseen_since_s)
        return plans

    def holders(self, uuid: str) -> list[Holding]:
        return [h for h in self.holdings if h.gpu_uuid == uuid]

    def valid_requests(self, uuid: str) -> list[int]:
        """The valid requests of allowed Dynamo workers (DGD label) holding the GPU: the only ones that count."""
        out = []
        for h in self.holders(uuid):
            pod = self.pods.get((h.namespace, h.pod))
            if pod is None or not pod.dgd_worker or pod.namespace not in self.policy.allowed_namespaces:
                continue
            if pod.annotation is not None:
                with contextlib.suppress(AnnotationError):
                    out.append(parse_power_annotation(pod.annotation))
        return out

    def maybe_ours(self, uuid: str) -> bool:
        """A holder in an allowed namespace that is a Dynamo worker, or not delivered by the watch yet."""
        for h in self.holders(uuid):
            pod = self.pods.get((h.namespace, h.pod))
            if h.namespace in self.policy.allowed_namespaces and (pod is None or pod.dgd_worker):
                return True
        return False


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 6))
    gpus = []
    for i in range(n):
        lo, hi = draw(GPU_RANGES)
        gpus.append(GpuInfo(i, f"GPU-{i}", "x", lo, hi, hi))
    pods = {}
    holdings = []
    unseen_since_s = {}
    for p in range(draw(st.integers(0, 8))):
        ns = draw(st.sampled_from(NAMESPACES))
        name = f"p{p}"
        if draw(st.integers(0, 5)) == 0:  # the kubelet reports it, the pod watch has not delivered it
            if draw(st.booleans()):
                unseen_since_s[(ns, name)] = NOW_S - draw(st.integers(0, 200))
        else:
            created = draw(st.one_of(st.none(), st.integers(0, 200).map(lambda age: NOW_S - age)))
            pod = PodInfo(ns, name, uid=f"u{p}", annotation=draw(ANNOTATIONS), created_s=created,
                          dgd_worker=draw(st.booleans()))
            pods[pod.key] = pod
        for g in draw(st.sets(st.integers(0, n - 1), max_size=3)):
            holdings.append(Holding(f"GPU-{g}", ns, name, "main"))
    floor = draw(st.one_of(st.none(), st.integers(50, 500).map(float)))
    ceiling = draw(st.one_of(st.none(), st.integers(50, 1000).map(float)))
    if floor is not None and ceiling is not None and floor > ceiling:
        floor, ceiling = ceiling, floor
    policy = AgentPolicy(
        allowed_namespaces=frozenset(draw(st.sets(st.sampled_from(NAMESPACES)))),
        floor_watts=floor,
        ceiling_watts=ceiling,
        park=draw(st.booleans()),
        park_watts=draw(st.one_of(st.none(), st.integers(1, 1000).map(float))),
        new_pod_grace_s=draw(st.sampled_from([0.0, 60.0])),
    )
    return Scenario(gpus, pods, holdings, policy, unseen_since_s)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_targets_stay_inside_the_gpu_constraints_and_the_node_policy(scenario: Scenario) -> None:
    plans = scenario.plan()
    policy = scenario.policy
    for gpu in scenario.gpus:
        plan = plans[gpu.uuid]
        if plan.target_watts is None:
            continue
        assert gpu.min_limit_watts <= plan.target_watts <= gpu.max_limit_watts
        lo = max(gpu.min_limit_watts, policy.floor_watts or 0)
        hi = min(gpu.max_limit_watts, policy.ceiling_watts or float("inf"))
        if lo <= hi:  # the node policy and the GPU's range overlap: the target is in both
            assert lo <= plan.target_watts <= hi


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_a_gpu_takes_the_lowest_valid_request_of_the_allowed_dynamo_workers_and_nothing_else(
    scenario: Scenario,
) -> None:
    plans = scenario.plan()
    for gpu in scenario.gpus:
        plan, valid = plans[gpu.uuid], scenario.valid_requests(gpu.uuid)
        if valid:
            assert plan.action == "cap" and plan.requested_watts == min(valid)
            assert plan.target_watts == clamp_watts(min(valid), gpu, scenario.policy)[0]
            assert plan.target_watts is not None and plan.target_watts <= max(min(valid), *bounds_below(gpu, scenario))
        else:
            assert plan.action != "cap" and plan.requested_watts is None


def bounds_below(gpu: GpuInfo, scenario: Scenario) -> tuple[float, ...]:
    """What may lift a target above its request: the GPU's minimum and the node floor (clamping)."""
    return (gpu.min_limit_watts, scenario.policy.floor_watts or 0.0)


@settings(max_examples=500, deadline=None)
@given(scenarios(), st.data())
def test_pods_of_other_namespaces_or_without_the_dgd_label_never_move_a_workers_gpu(
    scenario: Scenario, data: st.DataObject
) -> None:
    """Tenancy: an intruder (a namespace not allowed, or no DGD label) on any GPU, asking anything, never
    changes the plan of a GPU an allowed worker holds, and its annotation never matters anywhere."""
    policy = scenario.policy
    outside = [ns for ns in [*NAMESPACES, "z"] if ns not in policy.allowed_namespaces]
    intruders = []
    for i in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):  # a tenant, labelled or not, in a namespace not allowed
            pod = PodInfo(data.draw(st.sampled_from(outside)), f"intruder{i}", annotation=data.draw(ANNOTATIONS),
                          dgd_worker=data.draw(st.booleans()))
        else:  # an unlabelled pod, anywhere
            pod = PodInfo(data.draw(st.sampled_from([*NAMESPACES, "z"])), f"intruder{i}",
                          annotation=data.draw(ANNOTATIONS), dgd_worker=False)
        gpus = data.draw(st.sets(st.sampled_from([g.uuid for g in scenario.gpus]), min_size=1))
        intruders.append((pod, [Holding(uuid, pod.namespace, pod.name) for uuid in sorted(gpus)]))

    def with_intruders(annotation: str | None, keep: bool) -> dict[str, GpuPlan]:
        pods = dict(scenario.pods)
        holdings = list(scenario.holdings)
        for pod, held in intruders:
            pods[pod.key] = pod if keep else dataclasses.replace(pod, annotation=annotation)
            holdings += held
        plans, rejections = plan_limits(scenario.gpus, pods, holdings, policy, NOW_S, scenario.unseen_since_s)
        assert not any(r.pod.startswith("intruder") for r in rejections)  # not even read
        return plans

    before, after = scenario.plan(), with_intruders(None, keep=True)
    for gpu in scenario.gpus:
        if scenario.maybe_ours(gpu.uuid):
            assert after[gpu.uuid] == before[gpu.uuid]
    for raw in (None, "1", "100000", "abc"):
        assert {u: (p.action, p.target_watts) for u, p in with_intruders(raw, keep=False).items()} == {
            u: (p.action, p.target_watts) for u, p in after.items()
        }


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_with_parking_on_no_gpu_that_may_be_a_workers_is_released_without_a_valid_request(
    scenario: Scenario,
) -> None:
    """Fail closed: with parking on, a GPU without a valid allowed-DGD request sits at the park limit (or holds
    its limit after a refused annotation), however old its worker and however long the watch lags; it is
    released (back to its original limit) only under pods that are not the deployment's."""
    policy = dataclasses.replace(scenario.policy, park=True)
    plans = scenario.plan(policy)
    for gpu in scenario.gpus:
        plan = plans[gpu.uuid]
        if scenario.valid_requests(gpu.uuid):
            continue
        if plan.action == "release":
            assert scenario.holders(gpu.uuid) and not scenario.maybe_ours(gpu.uuid)
        else:
            assert plan.action in ("park", "hold")
        if plan.action == "park":
            park = policy.park_watts if policy.park_watts is not None else gpu.min_limit_watts
            assert plan.target_watts == clamp_watts(park, gpu, policy)[0]


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_with_parking_off_only_new_workers_and_undelivered_pods_wait_parked(scenario: Scenario) -> None:
    policy = dataclasses.replace(scenario.policy, park=False)
    plans = scenario.plan(policy)
    for gpu in scenario.gpus:
        plan = plans[gpu.uuid]
        if plan.action != "park":
            continue
        waiting = []
        for h in scenario.holders(gpu.uuid):
            if h.namespace not in policy.allowed_namespaces:
                continue
            pod = scenario.pods.get((h.namespace, h.pod))
            since = scenario.unseen_since_s.get((h.namespace, h.pod), NOW_S) if pod is None else pod.created_s
            if (pod is None or (pod.dgd_worker and pod.annotation is None)) and since is not None:
                waiting.append(NOW_S - since < policy.new_pod_grace_s)
        assert any(waiting)


def test_lowest_of_several_requests_and_clamp_reasons() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    pods = {("a", "p"): PodInfo("a", "p", annotation="500", dgd_worker=True),
            ("a", "q"): PodInfo("a", "q", annotation="100", dgd_worker=True)}
    holdings = [Holding("G", "a", "p"), Holding("G", "a", "q")]
    plans, _ = plan_limits([gpu], pods, holdings, AgentPolicy(frozenset({"a"}), floor_watts=150))
    assert plans["G"].action == "cap" and plans["G"].target_watts == 200
    assert plans["G"].requested_watts == 100 and plans["G"].clamps == ("node_floor", "gpu_min")
    assert clamp_watts(800, gpu, AgentPolicy(ceiling_watts=650)) == (650, ("node_ceiling",))


def test_a_time_sliced_gpu_takes_the_lowest_request_of_the_allowed_workers_only() -> None:
    """The issue's case: a worker asks 450 W on a time-sliced GPU (``<UUID>::<n>``); a tenant's "1" in another
    namespace and an unlabelled pod's "1" in the worker's namespace must not drop it to the GPU minimum."""
    gpu = GpuInfo(0, "GPU-0", "x", 200, 700, 700)
    backend = SimGpuBackend(sim_gpus(1))
    slices = {("llm", "decode-0"): "GPU-0::0", ("tenant", "job"): "GPU-0::1", ("llm", "notebook"): "GPU-0::2"}
    holdings = [Holding(str(resolve_device_id(device, [gpu], backend)), ns, pod) for (ns, pod), device in
                slices.items()]
    assert {h.gpu_uuid for h in holdings} == {"GPU-0"}  # one physical GPU
    pods = {
        ("llm", "decode-0"): PodInfo("llm", "decode-0", annotation="450", dgd_worker=True),
        ("tenant", "job"): PodInfo("tenant", "job", annotation="1", dgd_worker=True),
        ("llm", "notebook"): PodInfo("llm", "notebook", annotation="1"),
    }
    for park in (True, False):
        plans, rejections = plan_limits([gpu], pods, holdings, AgentPolicy(frozenset({"llm"}), park=park))
        plan = plans["GPU-0"]
        assert (plan.action, plan.requested_watts, plan.target_watts) == ("cap", 450, 450.0)
        assert plan.holder == Holding("GPU-0", "llm", "decode-0") and rejections == []
    alone = {("llm", "notebook"): pods[("llm", "notebook")]}  # without the worker: someone else's GPU, released
    plans, _ = plan_limits([gpu], alone, [h for h in holdings if h.pod == "notebook"], AgentPolicy(frozenset({"llm"})))
    assert plans["GPU-0"].action == "release"


def test_no_allowed_namespace_honours_no_cap() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    pod = PodInfo("llm", "p", annotation="300", dgd_worker=True)
    plans, rejections = plan_limits([gpu], {pod.key: pod}, [Holding("G", "llm", "p")], AgentPolicy())
    assert plans["G"].action == "release" and rejections == []
    plans, _ = plan_limits([gpu], {}, [], AgentPolicy())
    assert (plans["G"].action, plans["G"].target_watts) == ("park", 200.0)  # parking is on by default


def test_a_worker_without_its_annotation_waits_parked_until_it_arrives_or_with_parking_off_the_grace_ends() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    allowed = frozenset({"a"})
    off = AgentPolicy(allowed, park=False, new_pod_grace_s=60.0)  # the GPU would sit at its default, 700 W
    new = PodInfo("a", "p", annotation=None, created_s=1_000.0, dgd_worker=True)
    holding = [Holding("G", "a", "p")]
    plans, _ = plan_limits([gpu], {new.key: new}, holding, off, now_s=1_030.0)
    # the planner already counts it at its role's cap: wait at the GPU minimum, not at 700 W
    assert (plans["G"].action, plans["G"].target_watts, plans["G"].holder) == ("park", 200.0, holding[0])
    plans, _ = plan_limits([gpu], {new.key: new}, holding, dataclasses.replace(off, park_watts=250.0), now_s=1_030.0)
    assert (plans["G"].action, plans["G"].target_watts) == ("park", 250.0)
    plans, _ = plan_limits([gpu], {new.key: new}, holding, off, now_s=1_060.0)
    assert plans["G"].action == "release"  # parking off, grace over: no annotation means no cap wanted
    for now_s in (1_030.0, 1_060.0, 1_000_000.0, None):  # parking on: parked until the annotation arrives
        plans, _ = plan_limits([gpu], {new.key: new}, holding, AgentPolicy(allowed), now_s=now_s)
        assert (plans["G"].action, plans["G"].target_watts) == ("park", 200.0)
    plans, _ = plan_limits([gpu], {new.key: new}, holding, dataclasses.replace(off, new_pod_grace_s=0), now_s=1_030.0)
    assert plans["G"].action == "release"  # parking off, grace 0: off
    undated = PodInfo("a", "p", annotation=None, dgd_worker=True)
    plans, _ = plan_limits([gpu], {undated.key: undated}, holding, off, now_s=1_030.0)
    assert plans["G"].action == "release"  # parking off, no creation time: treated as old
    other = PodInfo("a", "p", annotation=None, created_s=1_000.0)  # no DGD label: nobody will annotate it
    for policy in (off, AgentPolicy(allowed)):
        plans, _ = plan_limits([gpu], {other.key: other}, holding, policy, now_s=1_001.0)
        assert plans["G"].action == "release"
    capped = PodInfo("a", "p", annotation="300", created_s=1_000.0, dgd_worker=True)
    plans, _ = plan_limits([gpu], {capped.key: capped}, holding, off, now_s=1_001.0)
    assert (plans["G"].action, plans["G"].target_watts) == ("cap", 300.0)
    outsider = PodInfo("z", "p", annotation=None, created_s=1_000.0, dgd_worker=True)
    plans, _ = plan_limits([gpu], {outsider.key: outsider}, [Holding("G", "z", "p")],
                           AgentPolicy(allowed, new_pod_grace_s=60.0), now_s=1_001.0)
    assert plans["G"].action == "release"  # a namespace not allowed changes nothing


def test_a_pod_the_kubelet_reports_before_the_watch_waits_parked() -> None:
    gpu = GpuInfo(0, "G", "x", 200, 700, 700)
    unseen = [Holding("G", "a", "p")]  # the kubelet's answer; the pod watch has not delivered pod a/p yet
    allowed = frozenset({"a"})
    off = AgentPolicy(allowed, park=False, new_pod_grace_s=60.0)
    plans, _ = plan_limits([gpu], {}, unseen, off, now_s=1_000.0)
    assert (plans["G"].action, plans["G"].target_watts) == ("park", 200.0)  # first reported now
    plans, _ = plan_limits([gpu], {}, unseen, off, now_s=1_059.0, unseen_since_s={("a", "p"): 1_000.0})
    assert plans["G"].action == "park"
    plans, _ = plan_limits([gpu], {}, unseen, off, now_s=1_060.0, unseen_since_s={("a", "p"): 1_000.0})
    assert plans["G"].action == "release"  # parking off: never delivered within the grace, as a pod without a cap
    # Parking on: the watch may lag or the agent's API access may fail; the GPU stays parked, without a limit.
    plans, _ = plan_limits([gpu], {}, unseen, AgentPolicy(allowed, new_pod_grace_s=60.0), now_s=1_000_000.0,
                           unseen_since_s={("a", "p"): 1_000.0})
    assert (plans["G"].action, plans["G"].target_watts) == ("park", 200.0)
    plans, _ = plan_limits([gpu], {}, unseen, AgentPolicy(frozenset({"b"}), new_pod_grace_s=60.0), now_s=1_000.0)
    assert plans["G"].action == "release"  # a namespace not allowed changes nothing
