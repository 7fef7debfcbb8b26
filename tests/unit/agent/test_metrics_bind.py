"""The agent's /metrics address: IPv6 in brackets serves, a bare IPv6 address is one line naming the field."""

from __future__ import annotations

import urllib.request

import pytest

from powerplanner.agent.app import _serve
from powerplanner.agent.exporter import AgentMetrics
from powerplanner.agent.sim_backend import SimGpuBackend, sim_gpus
from powerplanner.errors import ConfigError


def test_an_ipv6_bind_serves_metrics() -> None:
    server = _serve(AgentMetrics(SimGpuBackend(sim_gpus(1))), "[::1]:0")
    try:
        port = server.server_address[1]  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as response:
            assert b"powerplanner_agent" in response.read()
    finally:
        server.shutdown()  # type: ignore[attr-defined]


@pytest.mark.parametrize("bind", ["fe80::1:80", "9401", "[::1]"])
def test_a_bad_bind_is_one_line(bind: str) -> None:
    with pytest.raises(ConfigError) as info:
        _serve(AgentMetrics(SimGpuBackend(sim_gpus(1))), bind)
    (line,) = info.value.lines
    assert line.startswith("agent.metrics_bind: ")
