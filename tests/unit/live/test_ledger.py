"""CapLedger: a pod counts at the highest cap annotated since its agent acknowledged the current one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.live.kubernetes import ClusterState, PodInfo, RoleCluster
from powerplanner.live.ledger import CapLedger
from powerplanner.model.roles import Role


def state(prefill: dict[str, int | None], decode: dict[str, int | None] | None = None,
          draining: frozenset[str] = frozenset()) -> ClusterState:
    def role(name: str, pods: dict[str, int | None]) -> RoleCluster:
        infos = tuple(PodInfo(n, True, n in draining, cap) for n, cap in pods.items())
        return RoleCluster(name, len(pods), len(pods), 0, 0, 4, infos)

    return ClusterState("llm", "default", "v1alpha1", True, "Ready",
                        {Role.PREFILL: role("prefill", prefill), Role.DECODE: role("decode", decode or {})})


def test_a_raise_then_a_cut_the_agent_has_not_seen_counts_the_raise() -> None:
    """The agent lags: it still requests 200 W (acknowledged long ago) while the pod was annotated 557 W, then
    271 W. It may apply 557 W before 271 W, so the pod counts at 557 W until it requests 271 W."""
    ledger = CapLedger()
    assert ledger.update(state({"p": 200}), {"p": (200.0, 200.0)})[Role.PREFILL] == 200.0
    assert ledger.update(state({"p": 557}), {"p": (200.0, 200.0)})[Role.PREFILL] == 557.0
    assert ledger.update(state({"p": 271}), {"p": (200.0, 200.0)})[Role.PREFILL] == 557.0
    assert ledger.update(state({"p": 271}), {"p": (557.0, 557.0)})[Role.PREFILL] == 557.0
    assert ledger.update(state({"p": 271}), {"p": (271.0, 557.0)})[Role.PREFILL] == 557.0  # one GPU behind
    assert ledger.update(state({"p": 271}), {"p": (271.0, 271.0)})[Role.PREFILL] == 271.0


def test_no_say_until_an_agent_reports_a_request() -> None:
    """Without agents (or before their first scrape) nothing is ever acknowledged: counting each pod at its
    highest cap ever would stop every raise, so the ledger only records."""
    ledger = CapLedger()
    assert ledger.update(state({"p": 500}), {})[Role.PREFILL] is None
    assert ledger.update(state({"p": 300}), {})[Role.PREFILL] is None
    assert ledger.update(state({"p": 300, "q": 300}), {"q": (300.0, 300.0)})[Role.PREFILL] == 500.0


def test_unreported_pods_keep_their_history_and_gone_pods_are_forgotten() -> None:
    ledger = CapLedger()
    ledger.update(state({"a": 500, "b": 300}), {"z": (1.0, 1.0)})
    worst = ledger.update(state({"a": 250, "b": 300}, draining=frozenset({"a"})), {"b": (300.0, 300.0)})
    assert worst[Role.PREFILL] == 500.0  # a drains, unacknowledged: it may still apply 500 W
    assert worst[Role.DECODE] is None
    assert ledger.update(state({"b": 300}), {"b": (300.0, 300.0)})[Role.PREFILL] == 300.0
    # a pod of the same name later starts afresh
    assert ledger.update(state({"a": 200, "b": 300}), {"a": (200.0, 200.0)})[Role.PREFILL] == 300.0


def test_a_pod_whose_annotation_is_removed_keeps_its_last_cap() -> None:
    ledger = CapLedger()
    ledger.update(state({"p": 400}), {"other": (300.0, 300.0)})
    assert ledger.update(state({"p": None}), {})[Role.PREFILL] == 400.0


@settings(max_examples=200, deadline=None)
@given(history=st.lists(st.tuples(st.integers(200, 700), st.booleans()), min_size=1, max_size=12))
def test_never_below_any_cap_written_since_the_last_acknowledgement(history: list[tuple[int, bool]]) -> None:
    ledger = CapLedger()
    ledger.update(state({}), {"other": (300.0, 300.0)})  # an agent has reported
    since_ack: list[int] = []
    for cap, acked in history:
        worst = ledger.update(state({"p": cap}), {"p": (float(cap), float(cap))} if acked else {})
        since_ack = [cap] if acked else [*since_ack, cap]
        assert worst[Role.PREFILL] == max(since_ack)
