"""PromQL construction and the client's handling of every kind of answer (through httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from powerplanner.config import PrometheusConfig
from powerplanner.contract import AGENT_NAMESPACE_LABEL, AGENT_POD_LABEL
from powerplanner.errors import EndpointError
from powerplanner.live.prometheus import PrometheusClient, PrometheusError, PrometheusMetricsSource
from powerplanner.live.promql import (
    DYNAMO_FRONTEND,
    VLLM_FRONTEND,
    average_query,
    frontend_queries,
    holders_query,
    range_literal,
    selector,
)
from powerplanner.model.roles import Role


def vector(*values: tuple[dict[str, str], str]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1.0, v]} for m, v in values]}}


def client_for(handler: Callable[[httpx.Request], httpx.Response], retries: int = 2) -> tuple[PrometheusClient,
                                                                                             list[float]]:
    sleeps: list[float] = []
    client = PrometheusClient("http://prom:9090", timeout_s=0.5, retries=retries, backoff_s=0.1,
                              sleep=sleeps.append, transport=httpx.MockTransport(handler))
    return client, sleeps


def test_queries_follow_dynamo_window_averages() -> None:
    q = frontend_queries(DYNAMO_FRONTEND, 60.0, "llama", "dyn-ns")
    assert q.ttft == (
        'sum(increase(dynamo_frontend_time_to_first_token_seconds_sum{model="llama",dynamo_namespace="dyn-ns"}[60s]))'
        ' / sum(increase(dynamo_frontend_time_to_first_token_seconds_count{model="llama",dynamo_namespace="dyn-ns"}'
        "[60s]))"
    )
    assert q.request_rate == (
        'sum(increase(dynamo_frontend_requests_total{model="llama",dynamo_namespace="dyn-ns"}[60s])) / 60'
    )
    v = frontend_queries(VLLM_FRONTEND, 30.0, "m", "ignored")
    assert 'vllm:time_to_first_token_seconds_sum{model_name="m"}[30s]' in v.ttft
    assert "dynamo_namespace" not in v.ttft
    assert average_query("x", "", 2.5) == "sum(increase(x_sum[2500ms])) / sum(increase(x_count[2500ms]))"


def test_selector_escapes_and_skips_unset_labels() -> None:
    assert selector({"model": 'a"b\\c', "ns": None}) == '{model="a\\"b\\\\c"}'
    assert selector({"model": None}) == ""
    assert range_literal(5) == "5s"
    with pytest.raises(ValueError):
        range_literal(0)


def test_nan_and_inf_become_none() -> None:
    client, _ = client_for(lambda r: httpx.Response(200, json=vector(({}, "NaN"), ({"a": "1"}, "+Inf"), ({}, "3"))))
    assert [s.value for s in client.query("q")] == [None, None, 3.0]


def test_scalar_result() -> None:
    body = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "1200"]}}
    client, _ = client_for(lambda r: httpx.Response(200, json=body))
    assert client.query("scalar(x)")[0].value == 1200.0


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(200, content=b"<html>proxy error</html>"), "garbage"),
        (httpx.Response(200, json=["not", "an", "object"]), "garbage"),
        (httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}}), "garbage"),
        (httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [{"x": 1}]}}),
         "garbage"),
        (httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"}), "query"),
    ],
)
def test_bad_answers_are_named_and_not_retried(response: httpx.Response, kind: str) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return response

    client, sleeps = client_for(handler)
    with pytest.raises(PrometheusError) as info:
        client.query("q")
    assert info.value.kind == kind
    assert len(calls) == 1 and sleeps == []


def test_5xx_and_timeouts_are_retried_with_backoff_then_succeed() -> None:
    answers: list[httpx.Response | Exception] = [httpx.Response(503), httpx.ReadTimeout("slow"),
                                                 httpx.Response(200, json=vector(({}, "7")))]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, sleeps = client_for(handler)
    assert client.query("q")[0].value == 7.0
    assert sleeps == [0.1, 0.2]


def test_gives_up_after_retries_with_the_last_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client, sleeps = client_for(handler, retries=2)
    with pytest.raises(PrometheusError) as info:
        client.query("q")
    assert info.value.kind == "unreachable" and len(sleeps) == 2
    with pytest.raises(EndpointError) as start:
        client.check_reachable()
    assert len(start.value.lines) == 1 and "prometheus.url" in start.value.lines[0]


def test_source_short_circuits_when_prometheus_is_down() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["query"])
        raise httpx.ConnectError("refused")

    client, _ = client_for(handler, retries=0)
    source = PrometheusMetricsSource(client, PrometheusConfig(), "default")
    reading = source.read(60.0, {Role.PREFILL: ["p"], Role.DECODE: ["d"]})
    assert not reading.source_ok and reading.error_kind == "unreachable"
    assert reading.request_rate_per_s is None and reading.ttft_ms is None
    assert len(calls) == 1  # one failed query, not seven timeouts


def test_source_maps_units_and_attributes_power_to_roles() -> None:
    power_queries: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = request.url.params["query"]
        if "requests_total" in q:
            return httpx.Response(200, json=vector(({}, "2.5")))
        if "time_to_first_token" in q:
            return httpx.Response(200, json=vector(({}, "0.25")))
        if "inter_token" in q:
            return httpx.Response(200, json=vector(({}, "NaN")))
        if "sequence_tokens" in q or "vllm:" in q:  # no histograms, no worker gauges (tests/unit/live/
            return httpx.Response(200, json=vector())  # test_bottleneck_signals.py has those)
        pod, ns = AGENT_POD_LABEL, AGENT_NAMESPACE_LABEL
        if q == holders_query():  # every GPU the agents report, any namespace, held or not
            return httpx.Response(200, json=vector(({"uuid": "G1", pod: "p1", ns: "ns"}, "1"),
                                                   ({"uuid": "G2", pod: "", ns: ""}, "1"),
                                                   ({"uuid": "G3", pod: "job", ns: "tenant"}, "1"),
                                                   ({"uuid": "G3", pod: "d1", ns: "ns"}, "1"),
                                                   ({pod: "no-uuid", ns: "ns"}, "1")))
        power_queries.append(q)
        if "power_draw" in q:
            return httpx.Response(200, json=vector(({pod: "p1"}, "300"), ({pod: "d1"}, "200"),
                                                   ({pod: "d2"}, "250"), ({pod: "other"}, "999")))
        if "limit_applied" in q:
            return httpx.Response(200, json=vector(({pod: "p1"}, "400"), ({pod: "d1"}, "350"),
                                                   ({pod: "d2"}, "500"), ({}, "700")))  # a GPU no pod holds
        if "limit_revision" in q:  # one of d2's GPUs has not acted on its newest annotation yet
            low = q.startswith("min")
            return httpx.Response(200, json=vector(({pod: "p1"}, "3"), ({pod: "d2"}, "6" if low else "7")))
        raise AssertionError(q)

    client, _ = client_for(handler)
    source = PrometheusMetricsSource(client, PrometheusConfig(model="m"), "ns")
    r = source.read(60.0, {Role.PREFILL: ["p1"], Role.DECODE: ["d1", "d2"]})
    assert r.source_ok
    assert r.request_rate_per_s == 2.5 and r.ttft_ms == 250.0
    assert r.itl_ms is None and r.isl_tokens is None and r.osl_tokens is None
    assert r.draw_watts == {Role.PREFILL: 300.0, Role.DECODE: 450.0}
    assert r.applied_cap_watts == {Role.PREFILL: 400.0, Role.DECODE: 500.0}
    assert r.measured_power_watts == 750.0
    assert r.revision_by_pod == {"p1": (3.0, 3.0), "d2": (6.0, 7.0)}
    assert r.series_pods == frozenset({"p1", "d1", "d2"})
    assert r.holders_by_gpu == {"G1": {("ns", "p1")}, "G2": {("", "")}, "G3": {("tenant", "job"), ("ns", "d1")}}
    # The agent's workload labels (contract.py), never the pod/namespace a scraper attaches.
    assert len(power_queries) == 4
    assert all(f"by ({AGENT_POD_LABEL}) (" in q and f'{{{AGENT_NAMESPACE_LABEL}="ns"}}' in q for q in power_queries)


def test_dcgm_series_keep_dcgm_exporters_pod_and_namespace_labels() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        q = request.url.params["query"]
        if q.startswith("sum by (pod) (DCGM_FI_DEV_POWER_USAGE{namespace=\"ns\"})"):
            return httpx.Response(200, json=vector(({"pod": "p1"}, "300")))
        if q.startswith("max by (pod) (DCGM_FI_DEV_POWER_MGMT_LIMIT{namespace=\"ns\"})"):
            return httpx.Response(200, json=vector(({"pod": "p1"}, "400")))
        assert "DCGM" not in q, q
        return httpx.Response(200, json=vector())

    client, _ = client_for(handler)
    r = PrometheusMetricsSource(client, PrometheusConfig(power_source="dcgm"), "ns").read(60.0, {Role.PREFILL: ["p1"]})
    assert r.draw_watts[Role.PREFILL] == 300.0 and r.applied_cap_watts[Role.PREFILL] == 400.0
    assert r.revision_by_pod is None and r.series_pods is None  # DCGM acknowledges nothing: blindness untracked


def test_power_source_none_skips_power_queries() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["query"])
        return httpx.Response(200, json=vector(({}, "1")))

    client, _ = client_for(handler)
    PrometheusMetricsSource(client, PrometheusConfig(power_source="none"), "ns").read(10.0, {})
    assert len(seen) == 8 and not any("power" in q for q in seen)  # 5 frontend, ISL p90, 2 worker gauges
    reading = PrometheusMetricsSource(client, PrometheusConfig(power_source="dcgm"), "ns").read(10.0, {})
    assert reading.revision_by_pod is None  # dcgm-exporter acknowledges nothing
    assert json.dumps(seen)  # plain strings
