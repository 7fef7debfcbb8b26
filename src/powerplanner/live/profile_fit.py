"""``powerplanner profile fit``: the online calibration run offline over Prometheus history (docs/operations.md,
"Calibration offline: profile fit").

The same estimator as the live planner's (planning/calibration.py): each history step (live/history.py) becomes
the observation the live loop builds (``build_observation``), is sanitised and classified as the planner's first
stages do, and, when its load data is good and each role's cap is known, goes through ``Calibrator.observe`` in
time order. The result is the body of ``GET /profile`` (live/calibration_view.py): the learned profile in our
format and each constant beside the given profile's.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from powerplanner.errors import UserError
from powerplanner.live.calibration_view import profile_json
from powerplanner.live.history import HistoryStep
from powerplanner.live.observe import build_observation
from powerplanner.model.capped import CappedProfile
from powerplanner.model.roles import ROLES, Role
from powerplanner.planning.calibration import CalibrationSettings, Calibrator
from powerplanner.planning.data_state import DataState, classify
from powerplanner.planning.sanitise import sanitise

_NO_BUDGET_WATTS = 1e12  # the calibration never reads the budget; a finite one keeps sanitise quiet


@dataclass(frozen=True)
class FitResult:
    """The calibrator after the history, and how much of the history it could use."""

    calibrator: Calibrator
    steps: int
    ticks_used: int  # steps with good load data and both caps known: what the calibrator absorbed
    windows_found: int  # distinct metrics windows among them (the calibrator learns at most once per window)
    skipped: dict[str, int]  # why the other steps were left out


def fit(steps: Sequence[HistoryStep], profile: CappedProfile, settings: CalibrationSettings, window_s: float,
        sla_ttft_s: float, sla_itl_s: float) -> FitResult:
    """Feed ``steps`` (in time order) through a fresh calibrator whose prior is ``profile``."""
    calibrator = Calibrator(dataclasses.replace(settings, enabled=True, probing=False), profile)
    skipped: Counter[str] = Counter()
    found = 0
    windows: set[int] = set()
    ordered = sorted(steps, key=lambda s: s.time_s)
    origin = ordered[0].time_s if ordered else 0.0
    for step in ordered:
        # seconds since the first step, as the simulator's clock: at Unix magnitudes a float's resolution (~2e-7 s)
        # is coarser than the calibrator's window tolerances
        t = step.time_s - origin
        raw = build_observation(t, window_s, step.reading, step.state, _NO_BUDGET_WATTS)
        clean = sanitise(raw, _NO_BUDGET_WATTS, t).obs
        state = classify(raw, clean, sla_ttft_s, sla_itl_s)
        if state is not DataState.OK:
            skipped[f"load data {state.value}"] += 1
            continue
        caps: dict[Role, float] = {}
        for role in ROLES:
            applied = clean.role(role).applied_cap_watts
            if applied is not None and math.isfinite(applied):
                caps[role] = profile.gpu.clamp(applied)
        if len(caps) < len(ROLES):
            skipped["no applied cap"] += 1
            continue
        found += 1
        windows.add(math.floor(t / window_s))
        calibrator.observe(clean, caps)
    return FitResult(calibrator, len(steps), found, len(windows), dict(skipped))


def check_enough(result: FitResult, needed: int, since_text: str, window_s: float) -> None:
    """Too little history is one line: how many windows were found and how many are needed."""
    if result.windows_found >= needed:
        return
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(result.skipped.items())) or "none skipped"
    raise UserError(f"found {result.windows_found} usable window(s) of {window_s:g} s in {since_text} of history "
                    f"({result.steps} step(s); {why}); need at least {needed}: widen --since or lower --min-windows")


def summary(result: FitResult, *, dgd: str, namespace: str, window_s: float, step_s: float, start_s: float,
            end_s: float, needed: int) -> dict[str, Any]:
    """``--json``'s object: learned vs given constants with their std, and the windows used per role."""
    cal = result.calibrator
    body = profile_json(cal)
    given = {}
    for role in ROLES:
        model = cal.prior.cap_model(role)
        given[role.value] = {"latency_scale": 1.0, "compute_share": model.compute_share,
                             "idle_watts": model.idle_watts, "natural_draw_watts": model.natural_draw_watts}
    parameters = {role: {name: {"learned": p["mean"], "std": p["std"], "given": given[role][name],
                                "departure": p["departure"]} for name, p in params.items()}
                  for role, params in body["parameters"].items()}
    return {
        "dgd": dgd, "namespace": namespace, "given_profile": cal.prior.name, "start_s": start_s, "end_s": end_s,
        "window_s": window_s, "step_s": step_s, "steps": result.steps, "ticks_used": result.ticks_used,
        "windows_found": result.windows_found,
        "windows_needed": needed, "skipped": result.skipped,
        "windows_used": {role.value: {"latency": cal.beliefs[role].slowdown.count,
                                      "draw": cal.beliefs[role].draw.count} for role in ROLES},
        "parameters": parameters, "departed": body["departed"], "profile": _stamped(body["profile"], result, dgd,
                                                                                    namespace, start_s, end_s),
        "profile_error": body["profile_error"],
    }


def _stamped(document: dict[str, Any] | None, result: FitResult, dgd: str, namespace: str, start_s: float,
             end_s: float) -> dict[str, Any] | None:
    """The learned profile's ``source`` says where it was learned: the DGD, the history's span, the prior."""
    if document is None:
        return None

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    prior = result.calibrator.prior
    return {**document, "source": f"powerplanner profile fit: {result.windows_found} windows of DGD {namespace}/{dgd} "
            f"from {iso(start_s)} to {iso(end_s)} (prior: {prior.name}: {prior.source})"}
