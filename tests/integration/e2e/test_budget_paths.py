"""Every budget fault path holds the budget in the default configuration (the scenarios: budget_paths.py).

Each path runs against the fake peers and samples provisioned power (the limits in force on the deployment's
GPUs, read back from the fake NVML state) every 50 ms; the property is that no bounded sample is over the
budget, or over the node's share of it, and that a path's second property (a tenant's request ignored, replicas
held without data) holds where it has one. A path with an ``open_gap`` (a known excess nothing closes yet) is
expected to fail, strictly. The long paths (they wait out an agent's resync) run side by side in one test, as
``bench/budget_faults.py`` runs them; it prints the same figures for every path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.prometheus import find_prometheus_binary
from tests.integration.e2e.budget_paths import PATHS, PathResult, run_path, run_paths

pytestmark = pytest.mark.integration


def check(result: PathResult) -> None:
    path = PATHS[result.name]
    assert "error" not in result.detail, result.detail["error"]
    assert result.samples > 0, "no sample was held to the budget"
    assert result.worst_ratio <= 1.0 + 1e-9, result.as_json()
    assert result.seconds_over == 0.0, result.as_json()
    if path.also is not None:
        assert result.detail[path.also] is True, result.as_json()


@pytest.mark.parametrize("name", [
    pytest.param(p.name, marks=pytest.mark.xfail(strict=True, reason=p.open_gap)) if p.open_gap else p.name
    for p in PATHS.values() if not p.long
])
def test_path_holds_the_budget(name: str, fake_nvml_lib_dir: Path, tmp_path: Path) -> None:
    if PATHS[name].planner and find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (Debian package `prometheus`; `make prometheus` installs it)")
    check(run_path(name, fake_nvml_lib_dir, tmp_path / name))


def test_long_paths_hold_the_budget(fake_nvml_lib_dir: Path, tmp_path: Path) -> None:
    names = [p.name for p in PATHS.values() if p.long]
    assert names and not any(PATHS[n].planner or PATHS[n].open_gap for n in names)
    for result in run_paths(names, fake_nvml_lib_dir, tmp_path).values():
        check(result)
