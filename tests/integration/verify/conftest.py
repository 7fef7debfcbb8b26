"""Fixtures of the verify tests: a real Prometheus (module-wide, it takes a second to start) scraping a
switchable exporter, and a fresh emulated cluster per test seeded with a healthy installation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from powerplanner.cli import main
from powerplanner.verify import Report, Status
from powerplanner.verify.setup import build_verifier
from tests.fixtures.prometheus import PrometheusServer, find_prometheus_binary, serve_registry, start_prometheus
from tests.integration.verify.world import (
    DGD,
    NS,
    AuthzCluster,
    MetricsState,
    SwitchableCollector,
    registry_for,
    seed_healthy_cluster,
)

BUDGET_WATTS = 2000.0


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


@dataclass
class World:
    cluster: AuthzCluster
    state: MetricsState
    collector: SwitchableCollector
    prometheus: PrometheusServer
    kubeconfig: str

    def publish(self) -> None:
        """Expose ``state`` and wait until Prometheus has scraped it (twice: one full scrape after the swap)."""
        self.collector.set(self.state.families)
        self.prometheus.wait_for_scrapes(2)
        for _ in range(5):  # a scrape that timed out on a busy machine (up == 0) marks every series stale
            if self.prometheus.query_value("min(up)") == 1.0:
                return
            self.prometheus.wait_for_scrapes(1)
        raise AssertionError("Prometheus could not scrape the test exporter")

    def verify(self, **overrides: Any) -> Report:
        args: dict[str, Any] = dict(
            namespace=NS, dgd=DGD, config_path=None, prometheus_url=self.prometheus.url,
            kubeconfig=self.kubeconfig, context=None, as_user=None, budget_watts=BUDGET_WATTS, max_age_s=120.0,
        )
        args.update(overrides)
        return build_verifier(**args).run()

    def cli(self, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        code = main(["verify", "--namespace", NS, "--dgd", DGD, "--prometheus", self.prometheus.url,
                     "--kubeconfig", self.kubeconfig, "--budget", str(BUDGET_WATTS), *extra])
        return code, capsys.readouterr().out


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


def statuses(report: Report) -> dict[str, Status]:
    return {c.name: c.status for c in report.checks}


def only_failing(report: Report) -> set[str]:
    return {c.name for c in report.checks if c.status is Status.FAIL}


def as_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text))
