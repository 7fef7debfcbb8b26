"""The bottleneck signals read live (docs/planner.md, "Which role is short"): the frontend's prompt-length p90 and
the workers' waiting and KV-usage gauges, per role by pod; absent or failing, they are None and never zero."""

from __future__ import annotations

import httpx

from powerplanner.config import PrometheusConfig
from powerplanner.live.cluster_view import ClusterState, PodInfo, RoleCluster
from powerplanner.live.observe import build_observation
from powerplanner.live.prometheus import MetricsReading, PrometheusMetricsSource
from powerplanner.live.promql import DYNAMO_FRONTEND, VLLM_WORKER, frontend_queries, quantile_query, worker_queries
from powerplanner.model.roles import Role
from tests.unit.live.test_prometheus_client import client_for, vector

PODS = {Role.PREFILL: ["p1", "p2"], Role.DECODE: ["d1", "d2", "d3"]}


def test_queries_name_the_metrics_dynamo_and_vllm_export() -> None:
    q = frontend_queries(DYNAMO_FRONTEND, 60.0, "llama", "dyn-ns")
    assert q.isl_p90 == ('histogram_quantile(0.9, sum by (le) (increase(dynamo_frontend_input_sequence_tokens_bucket'
                         '{model="llama",dynamo_namespace="dyn-ns"}[60s])))')
    assert quantile_query("x", "", 30.0, 0.5) == "histogram_quantile(0.5, sum by (le) (increase(x_bucket[30s])))"
    waiting, kv = worker_queries(VLLM_WORKER, "ns")
    assert waiting == 'sum by (pod) (vllm:num_requests_waiting{namespace="ns"})'
    assert kv == 'max by (pod) (vllm:kv_cache_usage_perc{namespace="ns"})'


def _source(answers: dict[str, dict[str, object] | int]) -> PrometheusMetricsSource:
    """A source whose Prometheus answers each query that contains a key with the vector (or HTTP status) given;
    every other query gets an empty vector."""

    def handler(request: httpx.Request) -> httpx.Response:
        q = request.url.params["query"]
        for key, answer in answers.items():
            if key in q:
                if isinstance(answer, int):
                    return httpx.Response(answer, json={"status": "error", "errorType": "bad_data", "error": "x"})
                return httpx.Response(200, json=answer)
        return httpx.Response(200, json=vector())

    client, _ = client_for(handler, retries=0)
    return PrometheusMetricsSource(client, PrometheusConfig(model="m"), "ns")


def test_gauges_are_summed_or_averaged_over_each_roles_pods() -> None:
    source = _source({
        "_bucket": vector(({}, "26500")),
        "num_requests_waiting": vector(({"pod": "p1"}, "3"), ({"pod": "p2"}, "4"), ({"pod": "d1"}, "120"),
                                       ({"pod": "elsewhere"}, "999")),
        "kv_cache_usage_perc": vector(({"pod": "d1"}, "0.9"), ({"pod": "d2"}, "1.0"), ({"pod": "p1"}, "0.2")),
    })
    r = source.read(60.0, PODS)
    assert r.source_ok
    assert r.isl_p90_tokens == 26500.0
    assert r.waiting_requests == {Role.PREFILL: 7.0, Role.DECODE: 120.0}  # d2, d3 do not report: not counted
    assert r.kv_usage[Role.DECODE] is not None and abs(r.kv_usage[Role.DECODE] - 0.95) < 1e-9
    assert r.kv_usage[Role.PREFILL] == 0.2


def test_absent_gauges_are_none_never_zero() -> None:
    r = _source({"num_requests_waiting": vector(({"pod": "p1"}, "0"))}).read(60.0, PODS)
    assert r.source_ok
    assert r.isl_p90_tokens is None
    assert r.waiting_requests == {Role.PREFILL: 0.0, Role.DECODE: None}  # a reported 0 is data; no series is not
    assert r.kv_usage == {Role.PREFILL: None, Role.DECODE: None}


def test_a_failing_optional_query_leaves_the_signal_absent_and_the_reading_good() -> None:
    r = _source({"_bucket": 400, "num_requests_waiting": 400, "kv_cache_usage_perc": 422}).read(60.0, PODS)
    assert r.source_ok and r.source_error is None
    assert r.isl_p90_tokens is None
    assert r.waiting_requests == {Role.PREFILL: None, Role.DECODE: None}
    assert r.kv_usage == {Role.PREFILL: None, Role.DECODE: None}
    # A required query failing still fails the reading (the optional ones change nothing there).
    assert not _source({"requests_total": 400}).read(60.0, PODS).source_ok


def test_the_observation_carries_the_signals_per_role() -> None:
    def role(service: str, pods: list[str]) -> RoleCluster:
        return RoleCluster(service, len(pods), len(pods), 0, 0, 1, tuple(PodInfo(p, True, False, 300) for p in pods))

    roles = {Role.PREFILL: role("prefill", PODS[Role.PREFILL]), Role.DECODE: role("decode", PODS[Role.DECODE])}
    state = ClusterState("llm", "ns", "v1alpha1", True, "Ready", roles)
    reading = MetricsReading(request_rate_per_s=80.0, isl_tokens=12000.0, osl_tokens=340.0, ttft_ms=900.0,
                             itl_ms=30.0, isl_p90_tokens=26500.0,
                             waiting_requests={Role.PREFILL: None, Role.DECODE: 42.0},
                             kv_usage={Role.DECODE: 0.97})
    obs = build_observation(100.0, 60.0, reading, state, 30000.0)
    assert obs.isl_p90_tokens == 26500.0
    assert obs.decode.waiting_requests == 42.0 and obs.decode.kv_usage == 0.97
    assert obs.prefill.waiting_requests is None and obs.prefill.kv_usage is None
    empty = build_observation(100.0, 60.0, MetricsReading(80.0, 12000.0, 340.0, 900.0, 30.0), state, 30000.0)
    assert empty.isl_p90_tokens is None and empty.decode.waiting_requests is None and empty.decode.kv_usage is None
