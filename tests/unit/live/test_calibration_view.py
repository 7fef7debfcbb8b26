"""The calibration made visible (live/calibration_view.py): /metrics, GET /profile in our format, one Event when the
belief departs from the given profile."""

from __future__ import annotations

import httpx
from prometheus_client import generate_latest

from powerplanner.live.admin import AdminServer
from powerplanner.live.admin_settings import AdminSettings
from powerplanner.live.budget import AdminBudget, CompositeBudget, StaticBudget
from powerplanner.live.calibration_view import CalibrationReporter, profile_json
from powerplanner.live.clock import FakeClock
from powerplanner.live.loop import LiveLoop, LoopSettings
from powerplanner.live.telemetry import LoopTelemetry
from powerplanner.model.profile_format import profile_from_document
from powerplanner.model.roles import ROLES, Role
from powerplanner.planning.calibration import Calibrator
from tests.support.live_fakes import FakeActuator, FakeMetrics, StepPlanner
from tests.unit.planning.test_calibration import _profile, prefill_sweep
from tests.unit.test_metric_names import naming_problems

TOKEN = "t" * 32


def _calibrator(share_prefill: float) -> Calibrator:
    return prefill_sweep(share_prefill, 60, seed=5)[0]


def test_metrics_event_and_profile_when_the_gpus_depart() -> None:
    calibrator = _calibrator(1.0)
    telemetry = LoopTelemetry()
    events: list[tuple[str, str, bool]] = []
    reporter = CalibrationReporter(telemetry, lambda r, m, w: events.append((r, m, w)))
    for _ in range(3):
        reporter.report(calibrator)
    assert [e[0] for e in events] == ["CalibrationDeparted"]  # once, not once per tick
    assert "prefill.compute_share" in events[0][1] and events[0][2]
    text = generate_latest(telemetry.registry).decode()
    assert naming_problems(text, "powerplanner") == []
    share = calibrator.beliefs[Role.PREFILL].compute_share
    value = telemetry.registry.get_sample_value("powerplanner_calibration_compute_share_ratio",
                                                {"role": "prefill", "stat": "mean"})
    assert value == share
    assert telemetry.registry.get_sample_value("powerplanner_calibration_departed") == 1.0

    body = profile_json(calibrator)
    learned = profile_from_document(body["profile"], "GET /profile")  # our format, loadable as a profile
    assert abs(learned.prefill_caps.compute_share - share) < 1e-9
    assert body["planned_with_belief"] == ["prefill"]
    assert body["parameters"]["prefill"]["compute_share"]["std"] > 0
    assert set(body["parameters"]) == {r.value for r in ROLES}


def test_no_event_while_the_belief_stays_near_the_profile() -> None:
    calibrator = _calibrator(_profile().prefill_caps.compute_share)
    telemetry = LoopTelemetry()
    events: list[tuple[str, str, bool]] = []
    CalibrationReporter(telemetry, lambda r, m, w: events.append((r, m, w))).report(calibrator)
    assert events == []
    assert telemetry.registry.get_sample_value("powerplanner_calibration_departed") == 0.0


def test_get_profile_on_the_admin_endpoint() -> None:
    calibrator = _calibrator(1.0)
    learned: dict[str, object] | None = None
    server = AdminServer(AdminSettings("127.0.0.1:0", TOKEN), AdminBudget(), lambda: {"decision": None},
                         profile_json=lambda: learned).start()
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        off = httpx.get(f"{server.url}/profile", headers=headers, timeout=10)
        assert off.status_code == 404 and "planner.calibration.enabled" in off.json()["error"]
        learned = profile_json(calibrator)
        on = httpx.get(f"{server.url}/profile", headers=headers, timeout=10)
        assert on.status_code == 200 and on.json() == learned
        assert httpx.get(f"{server.url}/profile", timeout=10).status_code == 401
    finally:
        server.stop()


class _LearningPlanner(StepPlanner):
    """A fixed decision, plus a planner's calibrator (what the live loop reads of a learning planner)."""

    def __init__(self, calibrator: Calibrator) -> None:
        super().__init__()
        self.calibration = calibrator


def test_the_live_loop_reports_the_belief_serves_the_profile_and_emits_the_event_once() -> None:
    actuator = FakeActuator(caps={Role.PREFILL: 400, Role.DECODE: 400})
    loop = LiveLoop(_LearningPlanner(_calibrator(1.0)), FakeMetrics(), actuator,
                    CompositeBudget([StaticBudget(10000.0)]), FakeClock(),
                    LoopSettings(cap_interval_s=5.0, window_s=60.0))
    assert loop.profile_json() is None  # before the first tick
    loop.tick()
    loop.tick()
    body = loop.profile_json()
    assert body is not None and body["departed"] and body["profile"]["format"]
    assert [e[0] for e in actuator.events if e[0] == "CalibrationDeparted"] == ["CalibrationDeparted"]
    assert loop.telemetry.registry.get_sample_value("powerplanner_calibration_departed") == 1.0


def test_the_live_loop_without_calibration_serves_no_profile() -> None:
    loop = LiveLoop(StepPlanner(), FakeMetrics(), FakeActuator(), CompositeBudget([StaticBudget(10000.0)]),
                    FakeClock(), LoopSettings(cap_interval_s=5.0, window_s=60.0))
    loop.tick()
    assert loop.profile_json() is None
