"""Fixtures of the live tests: a real Prometheus scraping Dynamo-shaped frontend metrics and agent power
gauges, a fault-injecting HTTP proxy in front of it, and the emulated Kubernetes cluster."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from powerplanner.contract import (
    AGENT_DRAW_WATTS,
    AGENT_GPU_LABELS,
    AGENT_LIMIT_APPLIED_WATTS,
    AGENT_LIMIT_REVISION,
    POWER_LIMIT_ANNOTATION,
    REVISION_ANNOTATION,
    parse_revision,
    power_annotation_watts,
)
from tests.fixtures.k8s import (
    PODS,
    EmulatedCluster,
    cluster,  # noqa: F401  (re-exported fixture)
)
from tests.fixtures.prometheus import (
    PrometheusServer,
    RegistryServer,
    find_prometheus_binary,
    serve_registry,
    start_prometheus,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384)


@dataclass
class DynamoFrontend:
    """Real prometheus_client metrics named and labelled like Dynamo's frontend, plus the agent's gauges."""

    registry: CollectorRegistry
    ttft: Histogram
    itl: Histogram
    isl: Histogram
    osl: Histogram
    duration: Histogram
    requests: Counter
    draw: Gauge
    limit: Gauge
    revision: Gauge

    @classmethod
    def create(cls) -> DynamoFrontend:
        r = CollectorRegistry()
        labels = ["model", "dynamo_namespace"]
        gpu_labels = list(AGENT_GPU_LABELS)  # gpu, uuid, pod_name, pod_namespace, container_name (contract.py)
        return cls(
            registry=r,
            ttft=Histogram("dynamo_frontend_time_to_first_token_seconds", "TTFT", labels, buckets=LATENCY_BUCKETS,
                           registry=r),
            itl=Histogram("dynamo_frontend_inter_token_latency_seconds", "ITL", labels, buckets=LATENCY_BUCKETS,
                          registry=r),
            isl=Histogram("dynamo_frontend_input_sequence_tokens", "ISL", labels, buckets=TOKEN_BUCKETS, registry=r),
            osl=Histogram("dynamo_frontend_output_sequence_tokens", "OSL", labels, buckets=TOKEN_BUCKETS, registry=r),
            duration=Histogram("dynamo_frontend_request_duration_seconds", "duration", labels,
                               buckets=LATENCY_BUCKETS, registry=r),
            requests=Counter("dynamo_frontend_requests", "requests", [*labels, "request_type", "status"],
                             registry=r),
            draw=Gauge(AGENT_DRAW_WATTS, "draw", gpu_labels, registry=r),
            limit=Gauge(AGENT_LIMIT_APPLIED_WATTS, "limit", gpu_labels, registry=r),
            revision=Gauge(AGENT_LIMIT_REVISION, "revision acted on", gpu_labels, registry=r),
        )

    def touch(self, model: str, namespace: str = "dyn") -> None:
        """Create the series at 0 (as a frontend does at start-up) so windows see them from the beginning."""
        for h in (self.ttft, self.itl, self.isl, self.osl, self.duration):
            h.labels(model, namespace)
        self.requests.labels(model, namespace, "chat", "success")

    def serve(self, model: str, isl: float, osl: float, ttft_s: float, itl_s: float, namespace: str = "dyn") -> None:
        """One finished request."""
        self.ttft.labels(model, namespace).observe(ttft_s)
        self.itl.labels(model, namespace).observe(itl_s)
        self.isl.labels(model, namespace).observe(isl)
        self.osl.labels(model, namespace).observe(osl)
        self.duration.labels(model, namespace).observe(ttft_s + itl_s * osl)
        self.requests.labels(model, namespace, "chat", "success").inc()


class AgentEcho:
    """Stands in for prompt node agents: each pod's cap annotation is applied at once and its revision
    acknowledged, in the agents' series (one GPU per pod). Without it the planner's feedback is blind and it
    never counts a cut as in force (live/ledger.py). ``clear()`` removes the series (the registry is shared)."""

    def __init__(self, frontend: DynamoFrontend, namespace: str = "default") -> None:
        self.frontend = frontend
        self.namespace = namespace
        self._labels: set[tuple[str, ...]] = set()

    def sync(self, k8s: EmulatedCluster) -> None:
        """Publish what the agents would after one pass over the cluster's pods (Prometheus scrapes it next)."""
        now: set[tuple[str, ...]] = set()
        for pod in k8s.list_objects(PODS, self.namespace):
            meta = pod["metadata"]
            annotations = meta.get("annotations") or {}
            watts = power_annotation_watts(annotations.get(POWER_LIMIT_ANNOTATION))
            if watts is None or meta.get("deletionTimestamp"):
                continue
            labels = ("0", f"GPU-echo-{meta['name']}", meta["name"], self.namespace, "main")
            self.frontend.limit.labels(*labels).set(watts)
            revision = parse_revision(annotations.get(REVISION_ANNOTATION))
            if revision is not None:
                self.frontend.revision.labels(*labels).set(revision)
            now.add(labels)
        for gone in self._labels - now:
            self._remove(gone)
        self._labels = now

    def _remove(self, labels: tuple[str, ...]) -> None:
        for gauge in (self.frontend.limit, self.frontend.revision):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def clear(self) -> None:
        for labels in self._labels:
            self._remove(labels)
        self._labels = set()


class FaultProxy:
    """An HTTP proxy in front of Prometheus whose ``mode`` injects faults: ``ok`` (forward), ``down``
    (connection closed), ``slow`` (answer after ``delay_s``), ``garbage`` (non-JSON), ``nan`` (every value
    NaN), ``empty`` (empty vectors), ``error500``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "ok"
        self.delay_s = 1.0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                mode = proxy.mode
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    time.sleep(proxy.delay_s)
                if mode == "garbage":
                    self._reply(200, b"<html>502 Bad Gateway</html>", "text/html")
                    return
                if mode == "error500":
                    self._reply(500, b"internal", "text/plain")
                    return
                upstream = httpx.get(proxy.upstream + self.path, timeout=10.0)
                body = upstream.content
                if mode in ("nan", "empty") and upstream.status_code == 200:
                    data = upstream.json()
                    result = data.get("data", {}).get("result")
                    if data.get("data", {}).get("resultType") == "vector" and isinstance(result, list):
                        if mode == "empty":
                            data["data"]["result"] = []
                        else:
                            for item in result:
                                item["value"][1] = "NaN"
                    body = httpx.Response(200, json=data).content
                self._reply(upstream.status_code, body, "application/json")

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class LivePrometheus:
    frontend: DynamoFrontend
    target: RegistryServer
    server: PrometheusServer


@pytest.fixture(scope="session")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePrometheus]:
    """One real Prometheus for the live tests (start-up costs seconds), scraping the frontend every 0.5 s.
    Tests keep apart by using their own ``model`` label values."""
    if find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (Debian package `prometheus`; `make prometheus` installs it)")
    frontend = DynamoFrontend.create()
    target = serve_registry(frontend.registry)
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    server = start_prometheus(workdir, [target.target], scrape_interval_s=0.5)
    try:
        yield LivePrometheus(frontend, target, server)
    finally:
        server.stop()
        target.stop()


@pytest.fixture
def agent_echo(live_prometheus: LivePrometheus) -> Iterator[AgentEcho]:
    echo = AgentEcho(live_prometheus.frontend)
    yield echo
    echo.clear()


@pytest.fixture
def fault_proxy(live_prometheus: LivePrometheus) -> Iterator[FaultProxy]:
    proxy = FaultProxy(live_prometheus.server.url)
    yield proxy
    proxy.stop()
