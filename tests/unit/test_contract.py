"""The planner/agent contract: one grammar for the cap and revision annotations, pinned here."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import V1ObjectMeta, V1Pod

from powerplanner import contract
from powerplanner.agent import policy
from powerplanner.live import actuator


@given(st.integers(min_value=1, max_value=contract.MAX_REQUEST_WATTS))
def test_cap_round_trip(watts: int) -> None:
    assert contract.parse_power_annotation(contract.format_power_annotation(watts)) == watts
    assert contract.power_annotation_watts(contract.format_power_annotation(watts + 0.9)) == watts


@given(st.text(max_size=20))
def test_planner_and_agent_read_an_annotation_the_same_way(raw: str) -> None:
    try:
        agent_watts: int | None = policy.parse_power_annotation(raw)
    except contract.AnnotationError:
        agent_watts = None
    assert contract.power_annotation_watts(raw) == agent_watts
    pod = V1Pod(metadata=V1ObjectMeta(name="p", annotations={contract.POWER_LIMIT_ANNOTATION: raw}))
    assert actuator.pod_info(pod).cap_watts == agent_watts


@pytest.mark.parametrize("raw", [" 350", "350 ", "+350", "3_50", "٣٥٠", "350.0", "0", "-1", "", "100001"])
def test_loose_spellings_are_refused(raw: str) -> None:
    with pytest.raises(contract.AnnotationError):
        contract.parse_power_annotation(raw)
    assert contract.power_annotation_watts(raw) is None


@given(st.integers(min_value=0, max_value=10**17))
def test_revision_round_trip_and_next(revision: int) -> None:
    current = contract.format_revision(revision) if revision else None
    assert contract.parse_revision(contract.next_revision(current)) == revision + 1


@pytest.mark.parametrize("raw", [None, "", "0", "-3", "+3", " 3", "1" * 19, 5])
def test_invalid_revisions_start_over(raw: object) -> None:
    assert contract.parse_revision(raw) is None
    assert contract.next_revision(raw) == "1"


@pytest.mark.parametrize("cap", [0.5, float("nan"), float("inf"), -3.0, 100_001.0])
def test_unwritable_caps_are_refused(cap: float) -> None:
    with pytest.raises(ValueError):
        contract.format_power_annotation(cap)


def test_the_workload_labels_are_none_the_operator_sets() -> None:
    assert {"pod", "namespace", "container"}.isdisjoint(contract.AGENT_GPU_LABELS)
