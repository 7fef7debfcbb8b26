"""The Grafana dashboard queries only metrics the code really exports: the planner's (live.telemetry), the
agent's (agent.exporter) and Dynamo's frontend (the names live.prometheus queries). A renamed metric fails
here instead of leaving an empty panel. Then a real Prometheus scrapes two planners (two DGDs) and an agent whose
node holds GPUs of both and a free one: every query evaluates, the namespace/DGD/node variables select, and the
deployment panels count only the chosen DGD's GPUs (joined on the agent's pod_name/pod_namespace)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.prometheus import PrometheusServer, find_prometheus_binary, serve_registry, start_prometheus
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
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace", "dgd", "node", "model"}


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


# ---- The queries against a real Prometheus scraping a planner per DGD and an agent whose node holds GPUs of both
# DGDs and a free one: the deployment panels count only the chosen DGD's GPUs, each panel's query evaluates.

DGD_GPUS = {"llm": {"llm-prefill-0": 300.0, "llm-decode-0": 400.0}, "other": {"other-decode-0": 500.0}}
FREE_GPU_WATTS = 700.0
BUDGETS = {"llm": 2000.0, "other": 5000.0}


@pytest.fixture(scope="module")
def scraped_dashboard() -> Iterator[PrometheusServer]:
    if find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (Debian package `prometheus`; `make prometheus` installs it)")
    from powerplanner.agent.exporter import AgentMetrics, GpuSample
    from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus
    from powerplanner.live.telemetry import LoopTelemetry
    from powerplanner.model.roles import Role

    servers = []
    for dgd, pods in DGD_GPUS.items():
        telemetry = LoopTelemetry(deployment=dgd, namespace="dyn")
        telemetry.budget_watts.set(BUDGETS[dgd])
        telemetry.record_worker_pods({Role.PREFILL: [p for p in pods if "prefill" in p],
                                      Role.DECODE: [p for p in pods if "decode" in p]})
        servers.append(serve_registry(telemetry.registry))
    held = [(pod, watts) for pods in DGD_GPUS.values() for pod, watts in pods.items()]
    gpus = sim_gpus(len(held) + 1)
    agent = AgentMetrics(SimGpuBackend(gpus))
    samples = [GpuSample(i, gpus[i].info.uuid, pod, "dyn", "main", watts, watts, 700.0, 200.0, 700.0)
               for i, (pod, watts) in enumerate(held)]
    samples.append(GpuSample(len(held), gpus[-1].info.uuid, "", "", "", None, FREE_GPU_WATTS, 700.0, 200.0, 700.0))
    agent.publish(samples)
    agent_server = serve_registry(agent.registry)
    agent_job = ["  - job_name: agent", "    static_configs:", f"      - targets: ['{agent_server.target}']",
                 "        labels: {node: gpu-node-1}"]
    with tempfile.TemporaryDirectory(prefix="dashboard-prom-") as workdir:
        prom = start_prometheus(Path(workdir), [s.target for s in servers], scrape_interval_s=0.5,
                                extra_scrape_configs=agent_job)
        try:
            prom.wait_for_scrapes(2)
            yield prom
        finally:
            prom.stop()
            for server in (*servers, agent_server):
                server.stop()


def _all_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(t["legendFormat"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def _targets() -> dict[str, str]:
    return dict(_all_targets())  # by legend (a repeated legend, e.g. "p99", keeps its last query)


def _bind(expr: str, dgd: str = "llm", node: str = ".*") -> str:
    return expr.replace("$dgd", dgd).replace("$namespace", "dyn").replace("$node", node).replace("$model", ".*")


@pytest.mark.integration
def test_every_panel_query_evaluates(scraped_dashboard: PrometheusServer) -> None:
    for _legend, expr in _all_targets():
        scraped_dashboard.query(_bind(expr))  # raises on a PromQL error (bad join, range on an expression)
    assert scraped_dashboard.query_value(_bind(_targets()["budget"])) == BUDGETS["llm"]


@pytest.mark.integration
@pytest.mark.parametrize("dgd", sorted(DGD_GPUS))
def test_deployment_panels_count_only_that_deployments_gpus(scraped_dashboard: PrometheusServer, dgd: str) -> None:
    applied = _targets()["applied limits (the deployment's GPUs)"]
    assert scraped_dashboard.query_value(_bind(applied, dgd)) == sum(DGD_GPUS[dgd].values())
    assert scraped_dashboard.query_value(_bind(_targets()["budget"], dgd)) == BUDGETS[dgd]
    assert scraped_dashboard.query_value(_bind(applied, dgd, node="another-node")) is None  # the node variable
    everything = scraped_dashboard.query_value("sum(powerplanner_agent_gpu_power_limit_applied_watts)")
    assert everything == sum(w for pods in DGD_GPUS.values() for w in pods.values()) + FREE_GPU_WATTS


@pytest.mark.integration
def test_per_gpu_legends_name_the_pod_and_gpu(scraped_dashboard: PrometheusServer) -> None:
    legend, expr = next((k, v) for k, v in _targets().items() if k.startswith("applied {{pod_name}}"))
    series = scraped_dashboard.query(_bind(expr))
    assert {s["metric"]["pod_name"] for s in series} == set(DGD_GPUS["llm"])
    for s in series:
        used = re.findall(r"\{\{(\w+)\}\}", legend)
        assert used == ["pod_name", "gpu"] and all(s["metric"].get(label) for label in used)
        assert s["metric"]["role"] in ("prefill", "decode")


@pytest.mark.integration
def test_template_variables_list_the_exported_values(scraped_dashboard: PrometheusServer) -> None:
    variables = {v["name"]: v["definition"] for v in json.loads(DASHBOARD.read_text())["templating"]["list"]
                 if v["type"] == "query"}
    expected = {"namespace": {"dyn"}, "dgd": set(DGD_GPUS), "node": {"gpu-node-1"}}
    for name, values in expected.items():
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variables[name]).groups()  # type: ignore[union-attr]
        found = {s["metric"][label] for s in scraped_dashboard.query(f"group by ({label}) ({_bind(metric)})")}
        assert found == values, name


def _guide_queries() -> dict[str, str]:
    """docs/operations.md's "Useful queries": each comment line names the query below it (maybe several lines)."""
    block = re.search(r"### Useful queries\n\n```promql\n(.*?)```", (REPO_ROOT / "docs" / "operations.md").read_text(),
                      flags=re.S)
    assert block is not None, "docs/operations.md lost its Useful queries block"
    queries: dict[str, str] = {}
    title = ""
    for line in block.group(1).splitlines():
        if line.startswith("#"):
            title = line.lstrip("# ")
            queries[title] = ""
        else:
            queries[title] = (queries[title] + " " + line.strip()).strip()
    return queries


@pytest.mark.integration
def test_the_guides_queries_evaluate_and_count_the_deployments_gpus(scraped_dashboard: PrometheusServer) -> None:
    queries = _guide_queries()
    for query in queries.values():
        scraped_dashboard.query(query)
    allowed = next(q for t, q in queries.items() if t.startswith("What the GPUs are actually allowed to draw"))
    assert scraped_dashboard.query_value(allowed) == sum(DGD_GPUS["llm"].values())
