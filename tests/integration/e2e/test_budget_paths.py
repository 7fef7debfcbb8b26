"""Every budget fault path holds the budget in the default configuration (the scenarios: budget_paths.py).

Each path runs against the fake peers and samples provisioned power (the limits in force on the deployment's
GPUs, read back from the fake NVML state) every 50 ms; the property is that no bounded sample is over the
budget, or over the node's share of it, and that a path's second property (a tenant's request ignored, replicas
held without data) holds where it has one. A path with an ``open_gap`` (a known excess nothing closes yet) is
expected to fail, strictly. ``bench/budget_faults.py`` prints the same figures for every path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.prometheus import find_prometheus_binary
from tests.integration.e2e.budget_paths import PATHS, run_path

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", [
    pytest.param(p.name, marks=pytest.mark.xfail(strict=True, reason=p.open_gap)) if p.open_gap else p.name
    for p in PATHS.values()
])
def test_path_holds_the_budget(name: str, fake_nvml_lib_dir: Path, tmp_path: Path) -> None:
    path = PATHS[name]
    if path.planner and find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (Debian package `prometheus`; `make prometheus` installs it)")
    result = run_path(name, fake_nvml_lib_dir, tmp_path / name)
    assert "error" not in result.detail, result.detail["error"]
    assert result.samples > 0, "no sample was held to the budget"
    assert result.worst_ratio <= 1.0 + 1e-9, result.as_json()
    assert result.seconds_over == 0.0, result.as_json()
    if path.also is not None:
        assert result.detail[path.also] is True, result.as_json()
