"""The edge from the pydantic Config to the core's settings: each derived rule, and the arrow that must not exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings, metrics_window_s, planner_settings
from powerplanner.model.roles import Role
from powerplanner.planning.optimizer import Bounds

_SRC = Path(__file__).resolve().parents[2] / "src" / "powerplanner"


@pytest.mark.parametrize(("prometheus", "expected_s"), [({}, 120.0), ({"window_s": 30.0}, 30.0)])
def test_the_metrics_window_defaults_to_the_adjustment_interval(prometheus: dict[str, float],
                                                                 expected_s: float) -> None:
    config = config_from_mapping({"budget": {"watts": 1000.0}, "prometheus": prometheus,
                                  "planner": {"adjustment_interval_s": 120.0}})
    assert metrics_window_s(config) == expected_s
    assert engine_settings(config).window_s == expected_s  # the simulator observes over the live window


@pytest.mark.parametrize(("mode", "measured"), [("provisioned", False), ("measured", True)])
def test_the_budget_mode_is_read_once(mode: str, measured: bool) -> None:
    config = config_from_mapping({"budget": {"watts": 1000.0, "mode": mode, "headroom": 0.1}})
    settings = planner_settings(config)
    assert settings.measured_budget is measured
    assert settings.budget_headroom == 0.1


def test_planner_settings_are_in_the_cores_units() -> None:
    config = config_from_mapping({
        "budget": {"watts": 5000.0},
        "sla": {"ttft_ms": 400.0, "itl_ms": 40.0},
        "planner": {"policy": "dynamo-power", "gpu_pool": 16, "static_caps_watts": {"decode": 350.0},
                    "prefill": {"min_replicas": 0, "max_replicas": 3}, "decode": {"min_replicas": 2},
                    "predictor": {"kind": "ewma", "alpha": 0.3}},
    })
    settings = planner_settings(config)
    assert (settings.policy, settings.budget_watts, settings.gpu_pool) == ("dynamo-power", 5000.0, 16)
    assert (settings.sla_ttft_s, settings.sla_itl_s) == (0.4, 0.04)
    assert settings.static_caps_watts == {Role.DECODE: 350.0}
    assert settings.replica_bounds == {Role.PREFILL: Bounds(0, 3), Role.DECODE: Bounds(2, 64)}
    assert (settings.predictor.kind, settings.predictor.alpha) == ("ewma", 0.3)
    engine = engine_settings(config)
    assert (engine.min_replicas, engine.max_replicas) == ((0, 2), (3, 64))
    assert (engine.sla_ttft_s, engine.sla_itl_s, engine.gpu_pool) == (0.4, 0.04, 16)


@pytest.mark.parametrize("package", ["model", "planning"])
def test_the_pure_core_does_not_import_the_config(package: str) -> None:
    """model/ and planning/ take plain settings; pydantic's Config stays at the edge (docs/architecture.md)."""
    offenders = []
    for path in sorted((_SRC / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            edge = ("powerplanner.config", "powerplanner.core_settings")
            offenders += [f"{path.name}: {name}" for name in names if name in edge]
    assert offenders == []
