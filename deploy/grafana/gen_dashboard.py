"""Generate deploy/grafana/powerplanner-dashboard.json (the chart ships it through a link).

The dashboard is code so its queries can be reviewed and kept on the metric names the planner and the agent
export (tests/integration/deploy/test_dashboard.py checks both the names and that the committed JSON is what
this prints).

    python deploy/grafana/gen_dashboard.py            # rewrite the JSON
    python deploy/grafana/gen_dashboard.py --check    # exit 1 when the committed JSON is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "powerplanner-dashboard.json"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # this checkout's package, installed or not

from powerplanner.contract import (  # noqa: E402 (after the path it is found on)
    AGENT_DRAW_WATTS,
    AGENT_ENERGY_JOULES,
    AGENT_LIMIT_APPLIED_WATTS,
    AGENT_LIMIT_REQUESTED_WATTS,
    AGENT_POD_LABEL,
)

# The planner's metric names (powerplanner.live.telemetry); the agent's come from powerplanner.contract.
P = {
    "budget": "powerplanner_budget_watts",
    "provisioned": "powerplanner_projected_provisioned_watts",
    "measured": "powerplanner_measured_power_watts",
    "replicas": "powerplanner_replicas",
    "cap": "powerplanner_cap_watts",
    "reason": "powerplanner_decisions",
    "tick": "powerplanner_tick_duration_seconds",
    "errors": "powerplanner_errors",
}
DS = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    panels: list[dict[str, Any]] = []

    def panel(title: str, targets: list[tuple[str, str]], x: int, y: int, w: int = 12, h: int = 8,
              unit: str = "short", kind: str = "timeseries", desc: str = "") -> None:
        panels.append({
            "id": len(panels) + 1, "type": kind, "title": title, "description": desc, "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"datasource": DS, "expr": e, "legendFormat": legend, "refId": chr(65 + i)}
                        for i, (e, legend) in enumerate(targets)],
        })

    panel("Power: budget vs provisioned vs measured", [
        (f'max({P["budget"]})', "budget"),
        (f'max({P["provisioned"]})', "provisioned (replicas x GPUs x cap)"),
        (f'max({P["measured"]})', "measured (planner)"),
        ('max(powerplanner_predicted_draw_watts)', "predicted draw (planner)"),
        (f"sum({AGENT_DRAW_WATTS})", "measured (sum of agent GPU draw)"),
        (f"sum({AGENT_LIMIT_APPLIED_WATTS})", "sum of applied limits"),
    ], 0, 0, w=24, unit="watt", desc="Provisioned must stay at or below the budget; measured is what the GPUs draw.")
    panel("Per-GPU cap per role (planner target and applied)",
          [(f'max by (role, kind) ({P["cap"]})', "{{role}} {{kind}}")], 0, 8, unit="watt")
    panel("Replicas per role (ready, starting, draining, target)", [
        (f'max by (role, state) ({P["replicas"]})', "{{role}} {{state}}")], 12, 8)
    # The agent's workload label (pod_name), not the scrape target's pod (the agent's own pod).
    per_gpu = "{{instance}} gpu{{gpu}} {{" + AGENT_POD_LABEL + "}}"
    panel("Applied vs requested limit per GPU (agent)", [
        (AGENT_LIMIT_APPLIED_WATTS, f"applied {per_gpu}"),
        (AGENT_LIMIT_REQUESTED_WATTS, f"requested {per_gpu}"),
    ], 0, 16, unit="watt")
    panel("GPU power draw (agent)", [(AGENT_DRAW_WATTS, per_gpu)], 12, 16, unit="watt")
    panel("Energy per output token", [(
        f"sum(rate({AGENT_ENERGY_JOULES}_total[5m])) / "
        'sum(rate(dynamo_frontend_output_sequence_tokens_sum{model=~"$model"}[5m]))', "J / token")],
        0, 24, unit="joule", desc="GPU energy (agents) over output tokens (Dynamo frontend).")
    panel("Request rate", [('sum(rate(dynamo_frontend_requests_total{model=~"$model"}[1m]))', "requests/s")],
          12, 24, unit="reqps")
    panel("SLA: TTFT (window average and p99)", [
        ('sum(increase(dynamo_frontend_time_to_first_token_seconds_sum{model=~"$model"}[1m])) / '
         'sum(increase(dynamo_frontend_time_to_first_token_seconds_count{model=~"$model"}[1m]))', "average"),
        ('histogram_quantile(0.99, sum by (le) '
         '(rate(dynamo_frontend_time_to_first_token_seconds_bucket{model=~"$model"}[5m])))', "p99"),
    ], 0, 32, unit="s")
    panel("SLA: ITL (window average and p99)", [
        ('sum(increase(dynamo_frontend_inter_token_latency_seconds_sum{model=~"$model"}[1m])) / '
         'sum(increase(dynamo_frontend_inter_token_latency_seconds_count{model=~"$model"}[1m]))', "average"),
        ('histogram_quantile(0.99, sum by (le) '
         '(rate(dynamo_frontend_inter_token_latency_seconds_bucket{model=~"$model"}[5m])))', "p99"),
    ], 12, 32, unit="s")
    panel("Planner decisions by reason; budget-limited", [
        (f'sum by (reason) (increase({P["reason"]}_total[5m]))', "{{reason}}"),
        ('max(powerplanner_budget_limited)', "budget limited (1 = SLA limited by the budget)"),
    ], 0, 40, unit="short")
    panel("Planner errors by kind, tick duration", [
        (f'sum by (kind) (increase({P["errors"]}_total[5m]))', "errors {{kind}}"),
        ('sum by (reason) (increase(powerplanner_agent_apply_failures_total[5m]))', "agent apply failures {{reason}}"),
        (f'histogram_quantile(0.99, sum by (le) (rate({P["tick"]}_bucket[5m])))', "tick p99 (s)"),
    ], 12, 40)
    return {
        "title": "powerplanner: power budget, caps and SLA", "uid": "powerplanner", "schemaVersion": 39, "version": 1,
        "editable": True, "tags": ["powerplanner", "dynamo", "gpu-power"], "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s", "timezone": "utc",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "model", "type": "query", "datasource": DS, "label": "model", "includeAll": True, "allValue": ".*",
             "query": {"query": "label_values(dynamo_frontend_requests_total, model)", "refId": "model"},
             "definition": "label_values(dynamo_frontend_requests_total, model)", "refresh": 2,
             "current": {"text": "All", "value": "$__all"}},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the powerplanner Grafana dashboard.")
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run `python deploy/grafana/gen_dashboard.py`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
