"""Fixtures of the live tests: a real Prometheus scraping Dynamo-shaped frontend metrics and agent power
gauges, a fault-injecting HTTP proxy in front of it, and the emulated Kubernetes cluster (the helpers are in
tests/support/dynamo_frontend.py and tests/support/fault_proxy.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.k8s import cluster  # noqa: F401  (re-exported fixture)
from tests.fixtures.prometheus import find_prometheus_binary, serve_registry, start_prometheus
from tests.support.dynamo_frontend import AgentEcho, DynamoFrontend, LivePrometheus
from tests.support.fault_proxy import FaultProxy


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
