"""What the live loop shows of the planner's calibration (docs/operations.md, "Calibration"): the learned profile in
our format for ``GET /profile``, the belief on /metrics, and one ``CalibrationDeparted`` Event each time the set of
constants further than ``planner.calibration.departure_fraction`` from the given profile changes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from powerplanner.errors import ProfileError
from powerplanner.live.telemetry import LoopTelemetry
from powerplanner.model.profile_format import document_from_profile
from powerplanner.model.roles import ROLES
from powerplanner.planning.belief import learned_profile
from powerplanner.planning.calibration import Calibrator

EventFn = Callable[[str, str, bool], None]


def profile_json(calibrator: Calibrator) -> dict[str, Any]:
    """Body of ``GET /profile``: the whole belief as a profile in our format (``profile_format``), each learned
    constant with its standard deviation and departure, and which roles the planner plans with it."""
    s = calibrator.settings
    belief = learned_profile(calibrator.prior, dict(calibrator.beliefs), (s.scale_min, s.scale_max))
    try:
        document: dict[str, Any] | None = document_from_profile(belief)
        problem = None
    except ProfileError as exc:  # a measured table that our format cannot write back
        document, problem = None, "; ".join(exc.lines)
    departure = calibrator.departure()
    return {
        "profile": document,
        "profile_error": problem,
        "given_profile": calibrator.prior.name,
        "planned_with_belief": [role.value for role in ROLES if calibrator.departs(role)],
        "parameters": {
            role.value: {name: {"mean": mean, "std": std if math.isfinite(std) else None,
                                "departure": departure[f"{role.value}.{name}"]}
                         for name, (mean, std) in calibrator.beliefs[role].parameters().items()}
            for role in ROLES
        },
        "departed": calibrator.departed(),
        "departure_fraction": s.departure_fraction,
        "probe": None if calibrator.probe is None else {"role": calibrator.probe.role.value,
                                                        "cap_watts": calibrator.probe.cap_watts,
                                                        "until_s": calibrator.probe.until_s},
        "probes_started": calibrator.probes_started,
    }


class CalibrationReporter:
    """Per tick: the belief into /metrics; an Event when the departed constants change (never once per tick)."""

    def __init__(self, telemetry: LoopTelemetry, event: EventFn) -> None:
        self._telemetry = telemetry
        self._event = event
        self._departed: tuple[str, ...] = ()

    def report(self, calibrator: Calibrator) -> None:
        tel = self._telemetry
        for role in ROLES:
            for name, (mean, std) in calibrator.beliefs[role].parameters().items():
                gauge = tel.calibration[name]
                gauge.labels(role.value, "mean").set(mean)
                gauge.labels(role.value, "std").set(std)
        departed = tuple(calibrator.departed())
        tel.calibration_departed.set(1 if departed else 0)
        tel.calibration_probing.set(0 if calibrator.probe is None else 1)
        if departed and departed != self._departed:
            params = {f"{r.value}.{k}": v for r in ROLES for k, v in calibrator.beliefs[r].parameters().items()}
            shown = ", ".join(f"{name} {params[name][0]:.3g} (+-{params[name][1]:.2g})" for name in departed)
            self._event("CalibrationDeparted", f"the GPUs depart from profile {calibrator.prior.name} by more than "
                        f"{calibrator.settings.departure_fraction:.0%}: {shown}; GET /profile has the learned "
                        "profile", True)
        self._departed = departed
