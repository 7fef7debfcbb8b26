"""The pure leader-election rules (live/leader.py): who may try what, and that a leader's writes end before a
successor may take over, whatever the timings (docs/operations.md, "High availability")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.config import config_from_mapping
from powerplanner.errors import ConfigError
from powerplanner.live.leader import (
    LeaderSettings,
    LeaseRecord,
    Observed,
    Verdict,
    decide,
    may_act,
    record_of,
    write_timeout_s,
)
from powerplanner.live.leader_gate import clamp_timeout

times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
durations = st.floats(min_value=1, max_value=300, allow_nan=False)
names = st.sampled_from(["planner-a", "planner-b", "planner-c"])


@st.composite
def timings(draw: st.DrawFn) -> LeaderSettings:
    lease = draw(durations)
    deadline = draw(st.floats(min_value=0.5, max_value=lease * 0.99, allow_nan=False))
    retry = draw(st.floats(min_value=0.1, max_value=deadline, allow_nan=False))
    return LeaderSettings("ns", "lease", "planner-a", lease, deadline, retry)


@given(names, times, durations)
def test_no_lease_means_create(me: str, now: float, duration: float) -> None:
    assert decide(Observed(None, now), me, now, duration) is Verdict.CREATE


@given(names, times, times, durations, st.one_of(st.none(), durations))
def test_own_lease_is_renewed_whenever_read(me: str, since: float, later: float, duration: float,
                                            recorded: float | None) -> None:
    record = LeaseRecord(me, "7", recorded)
    assert decide(Observed(record, since), me, since + later, duration) is Verdict.RENEW


@given(names, names, times, times, durations)
def test_released_lease_is_free_at_once(me: str, other: str, since: float, later: float, duration: float) -> None:
    record = LeaseRecord("", "7", 1.0)
    assert decide(Observed(record, since), me, since + later, duration) is Verdict.TAKE_OVER


@given(times, times, durations, st.one_of(st.none(), durations))
def test_another_holder_is_waited_for_a_whole_lease_duration(since: float, elapsed: float, ours: float,
                                                             recorded: float | None) -> None:
    record = LeaseRecord("planner-b", "7", recorded)
    verdict = decide(Observed(record, since), "planner-a", since + elapsed, ours)
    longest = max(ours, recorded if recorded is not None else ours)
    # since + elapsed may round: compare what decide compares
    expected = Verdict.TAKE_OVER if (since + elapsed) - since >= longest else Verdict.WAIT
    assert verdict is expected
    if verdict is Verdict.TAKE_OVER:
        assert (since + elapsed) - since >= ours  # a short duration in the record never shortens our wait


@given(timings(), times, st.floats(min_value=0, max_value=1e3))
def test_may_act_and_write_timeout_agree(settings: LeaderSettings, renewed: float, elapsed: float) -> None:
    now = renewed + elapsed
    acting = may_act(renewed, now, settings.renew_deadline_s)
    assert acting == (write_timeout_s(renewed, now, settings) > 0)
    assert acting == (now < renewed + settings.renew_deadline_s)
    assert not may_act(None, now, settings.renew_deadline_s)
    assert write_timeout_s(None, now, settings) == 0


@given(timings(), times, st.floats(min_value=0, max_value=60), st.floats(min_value=0, max_value=60),
       st.floats(min_value=0, max_value=1e3), st.floats(min_value=0, max_value=1e3))
def test_a_leaders_writes_end_before_a_successor_may_take_over(
        settings: LeaderSettings, sent: float, commit_latency: float, observe_delay: float, write_at: float,
        takeover_after: float) -> None:
    """One real timeline (clocks running at the same rate): the leader SENT its last successful renewal at
    ``sent``; it was committed at ``sent + commit_latency``; the successor first read that version later. Any
    write the leader starts while it may act ends (its timeout) before any moment the successor may take over."""
    committed = sent + commit_latency
    observed = committed + observe_delay
    record = LeaseRecord("planner-a", "41", settings.lease_duration_s)
    takeover = observed + takeover_after
    start = sent + write_at
    may_take_over = decide(Observed(record, observed), "planner-b", takeover, settings.lease_duration_s)
    if may_act(sent, start, settings.renew_deadline_s) and may_take_over is Verdict.TAKE_OVER:
        assert start + write_timeout_s(sent, start, settings) <= takeover + 1e-6 * max(1.0, takeover)


def test_record_of_reads_both_shapes() -> None:
    lease = {"metadata": {"resourceVersion": "12"},
             "spec": {"holderIdentity": "planner-a", "leaseDurationSeconds": 15, "leaseTransitions": 2,
                      "acquireTime": "2026-01-01T00:00:00.000000Z"}}
    assert record_of(lease) == LeaseRecord("planner-a", "12", 15.0, 2, "2026-01-01T00:00:00.000000Z")
    assert record_of({"metadata": {"resourceVersion": "3"}, "spec": {}}) == LeaseRecord("", "3")


@given(st.one_of(st.none(), st.floats(min_value=0.01, max_value=100), st.tuples(
    st.floats(min_value=0.01, max_value=50), st.floats(min_value=0.01, max_value=50))),
    st.floats(min_value=0.01, max_value=100))
def test_a_gated_write_never_waits_past_its_limit(requested: object, limit: float) -> None:
    assert 0 < clamp_timeout(requested, limit) <= limit


@pytest.mark.parametrize(("timings", "words"), [
    ({"lease_duration_s": 10, "renew_deadline_s": 10}, "renew_deadline_s (10) must be below lease_duration_s"),
    ({"renew_deadline_s": 2, "retry_period_s": 2}, "retry_period_s (2) must be under renew_deadline_s"),
])
def test_timings_that_could_overlap_two_leaders_are_refused_in_one_line(timings: dict[str, float],
                                                                         words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"budget": {"watts": 1000}, "leader_election": {"enabled": True, **timings}})
    lines = err.value.lines
    assert len(lines) == 1 and words in lines[0]


def test_defaults_are_kubernetes_own() -> None:
    le = config_from_mapping({"budget": {"watts": 1000}}).leader_election
    assert (le.enabled, le.lease_duration_s, le.renew_deadline_s, le.retry_period_s) == (False, 15, 10, 2)
