"""The long-context scenario, shortened to its first 12 minutes (a rise from the diurnal trough to ~100 req/s of
12k-token prompts): under ours the decode admission queue stays bounded and the budget holds (docs/planner.md,
"Decode KV footprint" and "Which role is short")."""

from __future__ import annotations

from powerplanner.sim.limits import resolve_budget
from powerplanner.sim.runner import PolicyJob, run_job
from powerplanner.sim.scenarios import long_context_scenario


def test_the_decode_queue_stays_bounded_under_ours() -> None:
    scenario = long_context_scenario(duration_s=720.0)
    trace = scenario.load_trace()
    budget, _ = resolve_budget(scenario, trace)  # 0.7 x dynamo-sla's peak: a budget that binds
    result = run_job(PolicyJob("ours", trace, scenario, budget))
    assert result.completed == len(trace)
    assert result.seconds_over_budget == 0.0
    # Without the KV footprint and the attribution, ours cut decode for prefill and 7,144 requests waited
    # for decode KV room here (a queue that grew for as long as the load was high); with them, a few dozen.
    assert result.decode_queue_max <= 200
