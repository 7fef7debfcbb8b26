"""The learning planner in the simulator (sim/calibration_report.py): results.json and summary.md set each learned
constant beside the plant's and the profile's."""

from __future__ import annotations

import pytest

from powerplanner.model.plant import plant_presets
from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.report import summary_markdown
from powerplanner.sim.runner import compare
from powerplanner.sim.scenarios import Scenario, SyntheticSpec, TraceSpec
from powerplanner.sim.traces import LognormalLengths


def _scenario(plant: str) -> Scenario:
    syn = SyntheticSpec(900.0, 3.0, LognormalLengths(800, 3000), LognormalLengths(120, 400))
    return Scenario(name="tiny", trace=TraceSpec(synthetic=syn), sla=SlaTargets(1000.0, 60.0), budget_watts=30000.0,
                    profile="llama2-70b-h100-tp4", plant=plant)


@pytest.mark.parametrize("plant", ["profile", *plant_presets()])
def test_the_learning_planner_reports_learned_vs_plant_for_every_preset(plant: str) -> None:
    comparison = compare(_scenario(plant), ["ours", "ours-calibrated"], workers=1)
    doc = comparison.to_json()
    assert set(doc["calibration"]) == {"ours-calibrated"}  # ours does not learn
    report = doc["calibration"]["ours-calibrated"]
    prefill = report["roles"]["prefill"]["parameters"]
    want_share = 1.0 if plant == "prefill-compute-bound" else 0.7342
    assert prefill["compute_share"]["plant"] == want_share and prefill["compute_share"]["profile"] == 0.7342
    scale = prefill["latency_scale"]["plant"]
    assert (scale > 1.0) if plant == "gpu-variation" else (scale == pytest.approx(1.0))
    assert prefill["compute_share"]["std"] < 0.3  # learned something: the prior's std is 0.3
    assert comparison.metrics["ours-calibrated"].seconds_over_budget == 0.0
    text = summary_markdown(comparison, [])
    assert "## Calibration: learned vs plant" in text and "| ours-calibrated | prefill | compute_share |" in text


def test_no_calibration_section_without_a_learning_policy() -> None:
    comparison = compare(_scenario("profile"), ["ours"], workers=1)
    assert "calibration" not in comparison.to_json()
    assert "Calibration" not in summary_markdown(comparison, [])
