"""Fixtures of the verify tests: a real Prometheus (module-wide, it takes a second to start) scraping a
switchable exporter, and a fresh emulated cluster per test seeded with a healthy installation (the
:class:`~tests.integration.verify.world.World` they make is in world.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.prometheus import PrometheusServer, find_prometheus_binary, serve_registry, start_prometheus
from tests.integration.verify.world import AuthzCluster, SwitchableCollector, World, registry_for, seed_healthy_cluster


@pytest.fixture(scope="module")
def scraped() -> Iterator[tuple[SwitchableCollector, PrometheusServer]]:
    if find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (Debian package `prometheus`; `make prometheus` installs it)")
    import tempfile

    collector = SwitchableCollector()
    exporter = serve_registry(registry_for(collector))
    with tempfile.TemporaryDirectory(prefix="verify-prom-") as workdir:
        prom = start_prometheus(Path(workdir), [exporter.target], scrape_interval_s=0.5)
        try:
            yield collector, prom
        finally:
            prom.stop()
            exporter.stop()


@pytest.fixture
def world(scraped: tuple[SwitchableCollector, PrometheusServer], tmp_path: Path) -> Iterator[World]:
    collector, prom = scraped
    cluster = AuthzCluster()
    try:
        state = seed_healthy_cluster(cluster)
        w = World(cluster, state, collector, prom, cluster.write_kubeconfig(tmp_path / "kubeconfig"))
        w.publish()
        yield w
    finally:
        cluster.close()
