"""The Prometheus source against a real Prometheus scraping real prometheus_client histograms shaped like
Dynamo's frontend, and against every fault (down, slow, 5xx, garbage, NaN, empty)."""

from __future__ import annotations

import pytest

from powerplanner.config import PrometheusConfig
from powerplanner.live.prometheus import PrometheusClient, PrometheusMetricsSource
from powerplanner.model.roles import Role
from tests.support.dynamo_frontend import LivePrometheus
from tests.support.fault_proxy import FaultProxy
from tests.support.network import free_port

pytestmark = pytest.mark.integration

WINDOW_S = 60.0
PODS = {Role.PREFILL: ["llm-prefill-0"], Role.DECODE: ["llm-decode-0", "llm-decode-1"]}


def source(url: str, model: str, timeout_s: float = 2.0, retries: int = 1) -> PrometheusMetricsSource:
    cfg = PrometheusConfig(url=url, model=model, dynamo_namespace="dyn", timeout_s=timeout_s, retries=retries,
                           backoff_s=0.01)
    return PrometheusMetricsSource(PrometheusClient.from_config(cfg), cfg, "default")


def test_observation_matches_the_traffic_driven_into_the_frontend(live_prometheus: LivePrometheus) -> None:
    fe, prom = live_prometheus.frontend, live_prometheus.server
    fe.touch("known")
    prom.wait_for_scrapes(2)
    requests = [(1000, 100, 0.1, 0.020), (3000, 300, 0.3, 0.040), (2000, 200, 0.2, 0.030), (2000, 200, 0.2, 0.030)]
    for isl, osl, ttft, itl in requests:
        fe.serve("known", isl, osl, ttft, itl)
    for gpu, (pod, draw, cap) in enumerate([("llm-prefill-0", 410, 450), ("llm-decode-0", 250, 300),
                                           ("llm-decode-1", 260, 350), ("someone-else", 700, 700)]):
        fe.draw.labels(str(gpu), f"GPU-{gpu}", pod, "default", "main").set(draw)
        fe.limit.labels(str(gpu), f"GPU-{gpu}", pod, "default", "main").set(cap)
    prom.wait_for_scrapes(2)

    r = source(prom.url, "known").read(WINDOW_S, PODS)
    assert r.source_ok and r.source_error is None
    # Ratios of increases are exact: both extrapolate alike.
    assert r.isl_tokens == pytest.approx(2000.0)
    assert r.osl_tokens == pytest.approx(200.0)
    assert r.ttft_ms == pytest.approx(200.0)
    assert r.itl_ms == pytest.approx(30.0)
    # increase() extrapolates towards the window's end: 4 requests / 60 s, within Prometheus' extrapolation.
    assert r.request_rate_per_s is not None
    assert 4 / WINDOW_S <= r.request_rate_per_s <= 1.5 * 4 / WINDOW_S
    assert r.draw_watts == {Role.PREFILL: 410.0, Role.DECODE: 510.0}
    assert r.applied_cap_watts == {Role.PREFILL: 450.0, Role.DECODE: 350.0}
    assert r.measured_power_watts == 920.0


def test_idle_deployment_gives_none_not_nan(live_prometheus: LivePrometheus) -> None:
    fe, prom = live_prometheus.frontend, live_prometheus.server
    fe.touch("idle")
    prom.wait_for_scrapes(2)
    r = source(prom.url, "idle").read(WINDOW_S, PODS)
    assert r.source_ok
    assert r.request_rate_per_s == 0.0  # the counter exists and did not move
    assert (r.isl_tokens, r.osl_tokens, r.ttft_ms, r.itl_ms) == (None, None, None, None)  # 0/0 -> NaN -> None


def test_unknown_model_is_no_data_not_a_fault(live_prometheus: LivePrometheus) -> None:
    r = source(live_prometheus.server.url, "nobody-serves-this").read(WINDOW_S, PODS)
    assert r.source_ok and r.request_rate_per_s is None and r.ttft_ms is None


@pytest.fixture(scope="module")
def proxied_traffic(live_prometheus: LivePrometheus) -> LivePrometheus:
    """One request of model "proxied" (TTFT 100 ms), scraped, shared by the fault tests."""
    fe = live_prometheus.frontend
    fe.touch("proxied")
    live_prometheus.server.wait_for_scrapes(1)  # the series exists at 0 before the request ends
    fe.serve("proxied", 1000, 100, 0.1, 0.02)
    live_prometheus.server.wait_for_scrapes(2)
    return live_prometheus


def test_prometheus_down() -> None:
    r = source(f"http://127.0.0.1:{free_port()}", "known", timeout_s=0.5).read(WINDOW_S, PODS)
    assert not r.source_ok and r.error_kind == "unreachable" and r.request_rate_per_s is None
    assert r.source_error and "unreachable" in r.source_error


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("slow", "timeout"), ("garbage", "garbage"), ("error500", "http"), ("down", "unreachable")],
)
def test_faults_through_proxy_then_recovery(proxied_traffic: LivePrometheus, fault_proxy: FaultProxy,
                                            mode: str, kind: str) -> None:
    fault_proxy.mode = mode
    fault_proxy.delay_s = 0.6
    src = source(fault_proxy.url, "proxied", timeout_s=0.2, retries=1)
    bad = src.read(WINDOW_S, PODS)
    assert not bad.source_ok and bad.error_kind == kind
    assert all(v is None for v in (bad.request_rate_per_s, bad.isl_tokens, bad.ttft_ms, bad.measured_power_watts))
    fault_proxy.mode = "ok"
    good = src.read(WINDOW_S, PODS)
    assert good.source_ok and good.ttft_ms == pytest.approx(100.0)


@pytest.mark.parametrize("mode", ["nan", "empty"])
def test_nan_and_empty_answers_are_no_data(live_prometheus: LivePrometheus, fault_proxy: FaultProxy,
                                           mode: str) -> None:
    fault_proxy.mode = mode
    r = source(fault_proxy.url, "known").read(WINDOW_S, PODS)
    assert r.source_ok
    assert (r.request_rate_per_s, r.isl_tokens, r.ttft_ms, r.itl_ms, r.measured_power_watts) == (None,) * 5
