"""CapLedger: a pod counts at the highest cap annotated since its agent acknowledged the current revision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.live.cluster_view import ClusterState, PodInfo, RoleCluster
from powerplanner.live.ledger import CapLedger
from powerplanner.model.roles import Role

Pods = dict[str, tuple[int | None, int | None]]  # name -> (cap annotation, revision annotation)


def state(prefill: Pods, decode: Pods | None = None, draining: frozenset[str] = frozenset()) -> ClusterState:
    def role(name: str, pods: Pods) -> RoleCluster:
        infos = tuple(PodInfo(n, True, n in draining, cap, cap_revision=rev) for n, (cap, rev) in pods.items())
        return RoleCluster(name, len(pods), len(pods), 0, 0, 4, infos)

    return ClusterState("llm", "default", "v1alpha1", True, "Ready",
                        {Role.PREFILL: role("prefill", prefill), Role.DECODE: role("decode", decode or {})})


def acked(revision: int) -> tuple[float, float]:
    return (float(revision), float(revision))


def test_a_raise_then_a_cut_back_to_the_same_value_counts_the_raise_until_acknowledged() -> None:
    """557 W (revision 1, acknowledged), then 700 W (2), then 557 W again (3). The lagging agent still acts
    on revision 1, with the same 557 W: it has 700 W ahead of it, so the pod counts at 700 W until it
    reports revision 3. A ledger matching watts instead of revisions would take 557 W as acknowledged."""
    ledger = CapLedger()
    assert ledger.update(state({"p": (557, 1)}), {"p": acked(1)})[Role.PREFILL] == 557.0
    assert ledger.update(state({"p": (700, 2)}), {"p": acked(1)})[Role.PREFILL] == 700.0
    assert ledger.update(state({"p": (557, 3)}), {"p": acked(1)})[Role.PREFILL] == 700.0
    assert ledger.update(state({"p": (557, 3)}), {"p": acked(2)})[Role.PREFILL] == 700.0
    assert ledger.update(state({"p": (557, 3)}), {"p": (2.0, 3.0)})[Role.PREFILL] == 700.0  # one GPU behind
    assert ledger.update(state({"p": (557, 3)}), {"p": acked(3)})[Role.PREFILL] == 557.0


def test_no_series_is_never_an_acknowledgement() -> None:
    """Before any agent series reaches the planner (none scraped yet, or the monitor relabels them) nothing is
    acknowledged: a cut is not counted as in force, the pod keeps the highest cap since its last ack."""
    ledger = CapLedger()
    assert ledger.update(state({"p": (500, 1)}), {})[Role.PREFILL] == 500.0
    assert ledger.update(state({"p": (300, 2)}), {})[Role.PREFILL] == 500.0  # the cut to 300 W is not in force
    assert not ledger.active
    assert ledger.update(state({"p": (300, 2), "q": (300, 1)}), {"q": acked(1)})[Role.PREFILL] == 500.0
    assert ledger.active
    assert ledger.update(state({"p": (300, 2), "q": (300, 1)}), {"p": acked(2)})[Role.PREFILL] == 300.0


def test_unreported_pods_keep_their_history_and_gone_pods_are_forgotten() -> None:
    ledger = CapLedger()
    ledger.update(state({"a": (500, 1), "b": (300, 1)}), {"z": acked(1)})
    worst = ledger.update(state({"a": (250, 2), "b": (300, 1)}, draining=frozenset({"a"})), {"b": acked(1)})
    assert worst[Role.PREFILL] == 500.0  # a drains, unacknowledged: it may still apply 500 W
    assert worst[Role.DECODE] is None
    assert ledger.update(state({"b": (300, 1)}), {"b": acked(1)})[Role.PREFILL] == 300.0
    # a pod of the same name later starts afresh
    assert ledger.update(state({"a": (200, 1), "b": (300, 1)}), {"a": acked(1)})[Role.PREFILL] == 300.0


def test_a_pod_without_a_revision_is_never_acknowledged_and_keeps_its_last_cap() -> None:
    ledger = CapLedger()
    ledger.update(state({"p": (400, None)}), {"other": acked(1)})
    assert ledger.update(state({"p": (300, None)}), {"p": acked(1)})[Role.PREFILL] == 400.0
    assert ledger.update(state({"p": (None, None)}), {})[Role.PREFILL] == 400.0


@settings(max_examples=200, deadline=None)
@given(history=st.lists(st.tuples(st.integers(200, 700), st.booleans()), min_size=1, max_size=12))
def test_never_below_any_cap_written_since_the_last_acknowledgement(history: list[tuple[int, bool]]) -> None:
    ledger = CapLedger()
    since_ack: list[int] = []
    for revision, (cap, ack) in enumerate(history, start=1):
        worst = ledger.update(state({"p": (cap, revision)}), {"p": acked(revision)} if ack else {})
        since_ack = [cap] if ack else [*since_ack, cap]
        assert worst[Role.PREFILL] == max(since_ack)


def held(**pods: tuple[str, ...]) -> dict[str, frozenset[tuple[str, str]]]:
    """holders_by_gpu as the agents report them: pod name -> its uuids ("" for GPUs no pod holds)."""
    return {uuid: frozenset({("default", pod) if pod else ("", "")}) for pod, uuids in pods.items() for uuid in uuids}


def test_a_gone_pod_counts_as_draining_until_an_agent_reports_its_gpus_released() -> None:
    """A 400 W decode pod ends while its node's agent is down: its GPUs keep 400 W, and a new prefill pod capped
    at 250 W may get them. Until an agent reports those GPUs with another holder (or none), the gone pod is
    still counted: decode at 400 W, one more draining replica."""
    ledger = CapLedger()
    before = state({"p0": (300, 1)}, {"d0": (400, 1)})
    ledger.update(before, {"p0": acked(1), "d0": acked(1)}, held(p0=("g0", "g1"), d0=("g2", "g3")))
    after = state({"p0": (300, 1), "p1": (250, 1)}, {})
    for reading in (None, {}, held(p0=("g0", "g1"))):  # the agent is down: its series are gone, or no read
        worst = ledger.update(after, {"p0": acked(1)}, reading)
        assert worst[Role.DECODE] == 400.0
        counted = ledger.counted_state(after)
        assert counted.role(Role.DECODE).draining_replicas == 1
        assert counted.role(Role.PREFILL).draining_replicas == 0
    ledger.update(after, {"p0": acked(1)}, held(p0=("g0", "g1"), d0=("g2",), **{"": ("g3",)}))
    assert ledger.counted_state(after).role(Role.DECODE).draining_replicas == 1  # g2 not passed over yet
    worst = ledger.update(after, {"p0": acked(1), "p1": acked(1)}, held(p0=("g0", "g1"), p1=("g2",), **{"": ("g3",)}))
    assert worst[Role.DECODE] is None
    assert ledger.counted_state(after) == after
    assert not ledger.gone_holders


def test_a_pod_whose_gpus_were_never_reported_is_released_when_gone() -> None:
    ledger = CapLedger()
    ledger.update(state({}, {"d0": (400, 1)}), {}, held())
    assert ledger.update(state({}, {}), {}, None)[Role.DECODE] is None
    assert not ledger.gone_holders


@settings(max_examples=200, deadline=None)
@given(
    gpus=st.integers(1, 4),
    reports=st.lists(st.one_of(st.none(), st.dictionaries(st.integers(0, 3), st.sampled_from(["d0", "p1", ""]))),
                     max_size=8),
)
def test_a_gone_pod_is_released_only_once_each_of_its_gpus_is_reported_with_another_holder(
    gpus: int, reports: list[dict[int, str] | None]
) -> None:
    ledger = CapLedger()
    uuids = tuple(f"g{i}" for i in range(gpus))
    ledger.update(state({}, {"d0": (400, 1)}), {"d0": acked(1)}, held(d0=uuids))
    released = False
    for report in reports:
        holders = None if report is None else {f"g{i}": frozenset({("default", p) if p else ("", "")})
                                               for i, p in report.items()}
        worst = ledger.update(state({"p1": (250, 1)}, {}), {}, holders)
        released = released or (report is not None and all(report.get(i, "d0") != "d0" for i in range(gpus)))
        assert (worst[Role.DECODE] is None) == released
        counted = ledger.counted_state(state({"p1": (250, 1)}, {}))
        assert counted.role(Role.DECODE).draining_replicas == (0 if released else 1)
