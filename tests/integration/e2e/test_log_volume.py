"""The planner's log volume at INFO, in the whole loop (loop_world.py: a real Prometheus read through httpx, the
Kubernetes emulator, real agents): no HTTP client request lines, at most one decision line a tick, and on a tick
where the decision did not change no line but one per pod a past decision created. Before httpx was kept at
WARNING it wrote a line per Prometheus query (ten a tick, 172,800 a day at a 5 s tick); the figures are printed
as JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerplanner.commands.logs import configure_logging
from powerplanner.live.loop import TickReport
from tests.fixtures.prometheus import find_prometheus_binary
from tests.integration.e2e.loop_world import LoopWorld, WorldSpec
from tests.support.logging_state import logging_restored

pytestmark = pytest.mark.integration

RATES = [2.0, 2.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]  # one change of load, then steady
TICKS_PER_DAY = 86400 / 5.0
WARM_UP_TICKS = 15
NEW_POD_LINE = "new %s pod %s capped at %s W"  # live/actuator.py: once per pod the operator creates


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[Lines]:
    with logging_restored():
        configure_logging("info", "text")  # what `powerplanner run` does by default
        handler = Lines()
        logging.getLogger().addHandler(handler)  # sees exactly what the StreamHandler prints
        yield handler


def _reasons(report: TickReport) -> object:
    return None if report.decision is None else tuple(report.decision.reasons)


def test_info_logs_hold_no_request_lines_and_one_decision_line_per_change(
    fake_nvml_lib_dir: Path, tmp_path: Path, lines: Lines
) -> None:
    if find_prometheus_binary() is None:
        pytest.skip("prometheus binary not installed")
    with LoopWorld(WorldSpec(), fake_nvml_lib_dir, tmp_path) as world:
        previous = world.tick(RATES[0])
        for _ in range(WARM_UP_TICKS):  # until Prometheus holds the frontend's and the agents' series
            if previous.decision is not None and "metrics_missing" not in map(str, previous.decision.reasons) \
                    and not world.loop.telemetry.registry.get_sample_value("powerplanner_feedback_blind"):
                break
            previous = world.tick(RATES[0])
        quiet_ticks = changed_ticks = lines_on_changes = new_pod_lines = total_lines = 0
        lines.records.clear()
        for rate in RATES[1:]:
            report = world.tick(rate)
            emitted = [r for r in lines.records if not r.name.startswith("aiohttp")]  # the emulator's, in-process
            lines.records.clear()
            assert not [r for r in emitted if r.name.startswith(("httpx", "httpcore", "urllib3"))]
            assert sum(1 for r in emitted if "decision: " in str(r.msg)) <= 1  # the loop's one line per changed tick
            total_lines += len(emitted)
            changed = _reasons(report) != _reasons(previous) or any(o.changed for o in report.outcomes)
            if changed:
                changed_ticks += 1
                lines_on_changes += len(emitted)
            else:  # only the pods a past decision created, each once, as the operator makes them
                new_pods = [r for r in emitted if r.msg == NEW_POD_LINE]
                assert [r for r in emitted if r not in new_pods] == [], [r.getMessage() for r in emitted]
                new_pod_lines += len(new_pods)
                quiet_ticks += 1
            previous = report
        logging.getLogger("httpx").setLevel(logging.INFO)  # the old behaviour, for the figure
        world.tick(RATES[-1])
        httpx_per_tick = sum(1 for r in lines.records if r.name == "httpx")
        lines_per_change = lines_on_changes / max(1, changed_ticks)
    assert httpx_per_tick > 0  # the old behaviour did write them: quieting them is what this test sees
    print(json.dumps({"ticks": len(RATES) - 1, "ticks_changed": changed_ticks, "ticks_unchanged": quiet_ticks,
                      "lines": total_lines, "new_pod_lines_on_unchanged_ticks": new_pod_lines,
                      "lines_per_changed_tick": round(lines_per_change, 2),
                      "httpx_lines_per_tick_before": httpx_per_tick,
                      "httpx_lines_per_day_before": int(httpx_per_tick * TICKS_PER_DAY)}))
