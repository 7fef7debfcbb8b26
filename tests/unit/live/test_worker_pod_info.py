"""powerplanner_worker_pod_info follows the deployment's worker pods tick by tick: the dashboard joins agent series
on it, so a pod gone must lose its series (else its GPU, now free or another workload's, keeps counting)."""

from __future__ import annotations

from powerplanner.live.telemetry import LoopTelemetry
from powerplanner.model.roles import Role


def _series(telemetry: LoopTelemetry) -> set[tuple[str, str, str, str]]:
    return {(s.labels["deployment"], s.labels["pod_namespace"], s.labels["pod_name"], s.labels["role"])
            for family in telemetry.registry.collect() if family.name == "powerplanner_worker_pod_info"
            for s in family.samples if s.value == 1}


def test_worker_pod_series_follow_the_pods() -> None:
    telemetry = LoopTelemetry(deployment="llm", namespace="dyn")
    telemetry.record_worker_pods({Role.PREFILL: ["p-0"], Role.DECODE: ["d-0", "d-1"]})
    assert _series(telemetry) == {("llm", "dyn", "p-0", "prefill"), ("llm", "dyn", "d-0", "decode"),
                                  ("llm", "dyn", "d-1", "decode")}
    telemetry.record_worker_pods({Role.PREFILL: ["p-0"], Role.DECODE: ["d-1"]})
    assert _series(telemetry) == {("llm", "dyn", "p-0", "prefill"), ("llm", "dyn", "d-1", "decode")}
    telemetry.record_worker_pods({Role.PREFILL: [], Role.DECODE: []})
    assert _series(telemetry) == set()
