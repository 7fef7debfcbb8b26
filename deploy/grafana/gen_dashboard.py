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
    AGENT_NAMESPACE_LABEL,
    AGENT_POD_LABEL,
)

# The planner's metric names (powerplanner.live.telemetry); the agent's come from powerplanner.contract.
P = {
    "budget": "powerplanner_budget_watts",
    "provisioned": "powerplanner_projected_provisioned_watts",
    "measured": "powerplanner_measured_power_watts",
    "predicted": "powerplanner_predicted_draw_watts",
    "limited": "powerplanner_budget_limited",
    "replicas": "powerplanner_replicas",
    "cap": "powerplanner_cap_watts",
    "reason": "powerplanner_decisions",
    "tick": "powerplanner_tick_duration_seconds",
    "errors": "powerplanner_errors",
    "build_info": "powerplanner_build_info",
    "workers": "powerplanner_worker_pod_info",
}
AGENT_BUILD_INFO = "powerplanner_agent_build_info"
DS = {"type": "prometheus", "uid": "${datasource}"}
# The chart's PodMonitor/ServiceMonitor copies the agent pod's node name into `node` (templates/monitors.yaml).
NODE = 'node=~"$node"'
POD_KEYS = f"{AGENT_POD_LABEL}, {AGENT_NAMESPACE_LABEL}"


def planner(metric: str) -> str:
    """``metric`` of the planner(s) driving the chosen DGDs: the deployment is a label of build_info only, joined
    on the scrape target (docs/operations.md, "Metrics")."""
    chosen = f'{P["build_info"]}{{deployment=~"$dgd", deployment_namespace=~"$namespace"}}'
    return f"({metric} * on(instance) group_left() max by (instance) ({chosen}))"


def deployment_gpus(series: str) -> str:
    """Agent ``series`` (an instant vector) of the chosen DGDs' GPUs only, with their ``role``: free, parked and
    other workloads' GPUs have no worker-pod series and drop out of the join. The ``max by`` makes the right side
    one series per pod even while two planner pods (high availability) export it."""
    workers = (f'max by ({POD_KEYS}, role) '
               f'({P["workers"]}{{deployment=~"$dgd", {AGENT_NAMESPACE_LABEL}=~"$namespace"}})')
    return f"({series} * on({POD_KEYS}) group_left(role) {workers})"


def agent(metric: str) -> str:
    return f"{metric}{{{NODE}}}"


def _panels() -> list[dict[str, Any]]:
    """The panels, in reading order (one flat list on purpose: the layout is read off the x/y arguments)."""
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
        (f'max({planner(P["budget"])})', "budget"),
        (f'max({planner(P["provisioned"])})', "provisioned (replicas x GPUs x cap)"),
        (f'max({planner(P["measured"])})', "measured (planner)"),
        (f'max({planner(P["predicted"])})', "predicted draw (planner)"),
        (f"sum({deployment_gpus(agent(AGENT_DRAW_WATTS))})", "measured (the deployment's GPUs, agents)"),
        (f"sum({deployment_gpus(agent(AGENT_LIMIT_APPLIED_WATTS))})", "applied limits (the deployment's GPUs)"),
    ], 0, 0, w=24, unit="watt", desc="Provisioned and applied limits must stay at or below the budget; measured is "
       "what the deployment's GPUs draw. Agent sums count only GPUs held by the DGD's worker pods.")
    panel("Per-GPU cap per role (planner target and applied)",
          [(f'max by (role, kind) ({planner(P["cap"])})', "{{role}} {{kind}}")], 0, 8, unit="watt")
    panel("Replicas per role (ready, starting, draining, target)", [
        (f'max by (role, state) ({planner(P["replicas"])})', "{{role}} {{state}}")], 12, 8)
    # The workload's labels (pod_name, gpu), not the scrape target's (the agent's own pod and address).
    per_gpu = "{{" + AGENT_POD_LABEL + "}} gpu{{gpu}}"
    panel("Applied vs requested limit per GPU (the deployment's GPUs)", [
        (deployment_gpus(agent(AGENT_LIMIT_APPLIED_WATTS)), f"applied {per_gpu}"),
        (deployment_gpus(agent(AGENT_LIMIT_REQUESTED_WATTS)), f"requested {per_gpu}"),
    ], 0, 16, unit="watt")
    panel("GPU power draw (the deployment's GPUs)", [(deployment_gpus(agent(AGENT_DRAW_WATTS)), per_gpu)], 12, 16,
          unit="watt")
    energy = f"rate({AGENT_ENERGY_JOULES}_total{{{NODE}}}[5m])"
    panel("Energy per output token", [(
        f"sum({deployment_gpus(energy)}) / "
        'sum(rate(dynamo_frontend_output_sequence_tokens_sum{model=~"$model"}[5m]))', "J / token")],
        0, 24, unit="joule", desc="The deployment's GPU energy (agents) over output tokens (Dynamo frontend).")
    panel("Request rate", [('sum(rate(dynamo_frontend_requests_total{model=~"$model"}[1m]))', "requests/s")],
          12, 24, unit="reqps")
    for x, (title, hist) in enumerate((("TTFT", "time_to_first_token"), ("ITL", "inter_token_latency"))):
        panel(f"SLA: {title} (window average and p99)", [
            (f'sum(increase(dynamo_frontend_{hist}_seconds_sum{{model=~"$model"}}[1m])) / '
             f'sum(increase(dynamo_frontend_{hist}_seconds_count{{model=~"$model"}}[1m]))', "average"),
            (f'histogram_quantile(0.99, sum by (le) '
             f'(rate(dynamo_frontend_{hist}_seconds_bucket{{model=~"$model"}}[5m])))', "p99"),
        ], 12 * x, 32, unit="s")
    panel("Planner decisions by reason; budget-limited", [
        ("sum by (reason) (" + planner(f'increase({P["reason"]}_total[5m])') + ")", "{{reason}}"),
        (f'max({planner(P["limited"])})', "budget limited (1 = SLA limited by the budget)"),
    ], 0, 40, unit="short")
    panel("Planner errors by kind, agent apply failures by node, tick duration", [
        ("sum by (kind) (" + planner(f'increase({P["errors"]}_total[5m])') + ")", "errors {{kind}}"),
        ("sum by (node, reason) (increase(powerplanner_agent_apply_failures_total{" + NODE + "}[5m]))",
         "agent apply failures {{node}} {{reason}}"),
        ("histogram_quantile(0.99, sum by (le) (" + planner(f'rate({P["tick"]}_bucket[5m])') + "))", "tick p99 (s)"),
    ], 12, 40)
    return panels


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "type": "query", "datasource": DS, "label": label, "includeAll": True, "multi": True,
            "allValue": ".*", "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "sort": 1, "current": {"text": "All", "value": "$__all"}}


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "title": "powerplanner: power budget, caps and SLA", "uid": "powerplanner", "schemaVersion": 39, "version": 1,
        "editable": True, "tags": ["powerplanner", "dynamo", "gpu-power"], "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s", "timezone": "utc",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            _variable("namespace", "namespace", f'label_values({P["build_info"]}, deployment_namespace)'),
            _variable("dgd", "DynamoGraphDeployment",
                      f'label_values({P["build_info"]}{{deployment_namespace=~"$namespace"}}, deployment)'),
            _variable("node", "node", f"label_values({AGENT_BUILD_INFO}, node)"),
            _variable("model", "model", "label_values(dynamo_frontend_requests_total, model)"),
        ]},
        "annotations": {"list": []},
        "panels": _panels(),
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
