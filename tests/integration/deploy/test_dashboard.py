"""The Grafana dashboard queries only metrics the code really exports: the planner's (live.telemetry), the
agent's (agent.exporter) and Dynamo's frontend (the names live.prometheus queries). A renamed metric fails
here instead of leaving an empty panel."""

from __future__ import annotations

import json
import re

from prometheus_client import CollectorRegistry

from tests.support.repo import REPO_ROOT, load_script

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "powerplanner-dashboard.json"


def exported_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names |= {sample.name for sample in family.samples}
        names.add(family.name)
    return names


def planner_and_agent_names() -> set[str]:
    from powerplanner.agent.exporter import AgentMetrics, GpuSample
    from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus
    from powerplanner.live.telemetry import LoopTelemetry

    telemetry = LoopTelemetry()
    telemetry.decisions.labels("x").inc()
    telemetry.errors.labels("x").inc()
    telemetry.replicas.labels("prefill", "ready").set(1)
    telemetry.cap_watts.labels("prefill", "target").set(1)
    gpus = sim_gpus(1)
    agent = AgentMetrics(SimGpuBackend(gpus))
    agent.apply_failures.labels("x").inc()
    agent.publish([GpuSample(0, gpus[0].info.uuid, "p", "ns", "c", 300.0, 300.0, 700.0, 200.0, 700.0)])
    return exported_names(telemetry.registry) | exported_names(agent.registry)


def frontend_names() -> set[str]:
    from powerplanner.live.prometheus import DYNAMO_FRONTEND

    out = {DYNAMO_FRONTEND.requests_total}
    for histogram in (DYNAMO_FRONTEND.ttft_seconds, DYNAMO_FRONTEND.itl_seconds, DYNAMO_FRONTEND.input_tokens,
                      DYNAMO_FRONTEND.output_tokens):
        out |= {f"{histogram}_{suffix}" for suffix in ("sum", "count", "bucket")}
    return out


def test_every_dashboard_query_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:powerplanner|dynamo)_[a-z_]+)", e)}
    known = planner_and_agent_names() | frontend_names()
    assert used - known == set(), f"dashboard queries metrics nobody exports: {sorted(used - known)}"
    # The panels the issue asks for.
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("budget vs provisioned vs measured", "cap per role", "replicas per role", "energy per output token",
                  "sla: ttft", "sla: itl"):
        assert topic in titles, topic


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "powerplanner"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "model"}


def test_operations_guide_documents_every_exported_metric() -> None:
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in planner_and_agent_names()}
    missing = sorted(f for f in families if f not in text and f"{f}_total" not in text
                     and not any(f.startswith(p) and p in text for p in ("powerplanner_agent_gpu_power_limit_",)))
    assert missing == [], f"docs/operations.md does not mention {missing}"


def test_committed_dashboard_is_what_the_generator_prints() -> None:
    module = load_script("deploy/grafana/gen_dashboard.py")
    assert DASHBOARD.read_text(encoding="utf-8") == module.render(), \
        "deploy/grafana/powerplanner-dashboard.json is stale: run `python deploy/grafana/gen_dashboard.py`"
