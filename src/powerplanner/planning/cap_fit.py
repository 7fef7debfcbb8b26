"""Fit a role's cap response from a measured cap sweep (``powerplanner profile measure``): pure numbers in and out.

Why this shape: the online belief (:mod:`powerplanner.planning.belief`) already states the cap model as linear in
what is worth learning once the clock at each cap is known: time at cap ``c`` is ``A x1(c) + B x2(c)`` with
``(x1, x2) = (1 / duty, 1 / (f duty))`` (:func:`~powerplanner.planning.belief.slowdown_features`), uncapped time
``A + B`` and compute share ``B / (A + B)``. A sweep gives those times directly (TTFT for prefill, ITL for
decode), so the fit is one linear least squares per role, after the natural draw, which sets the clock at each
cap, is read off the measured draw: where the cap does not bind the GPU draws its natural draw
(docs/profile-format.md, "Measuring a profile on a GPU node").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from powerplanner.errors import ProfileError
from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.roles import Role
from powerplanner.planning.belief import slowdown_features

BINDING_FRACTION = 0.97  # a mean draw at or above this fraction of the cap means the cap binds there


@dataclass(frozen=True)
class SweepPoint:
    """What one cap of a sweep measured: mean TTFT and ITL (seconds) and the mean draw (energy / time)."""

    cap_watts: float
    ttft_s: float
    itl_s: float
    draw_watts: float


@dataclass(frozen=True)
class RoleFit:
    """One role's fitted constants: uncapped time, compute share and the largest relative residual."""

    role: Role
    uncapped_s: float
    compute_share: float
    max_residual: float


@dataclass(frozen=True)
class SweepFit:
    """The fit of a sweep: the natural draw (shared: one GPU served both phases), whether any cap left it
    unbound (else it is only a lower bound), and each role's fit."""

    natural_draw_watts: float
    natural_observed: bool
    prefill: RoleFit
    decode: RoleFit


def natural_draw(points: Sequence[SweepPoint], base: CapModel) -> tuple[float, bool]:
    """The mean draw of the caps that did not bind, with True; if every cap bound, the draw is at least the
    highest cap: the larger of that and the base model's natural draw, with False."""
    free = [p.draw_watts for p in points if p.draw_watts < BINDING_FRACTION * p.cap_watts]
    if free:
        return float(np.mean(free)), True
    return max(base.natural_draw_watts, max(p.cap_watts for p in points)), False


def with_natural(model: CapModel, natural_watts: float) -> CapModel:
    """``model`` with ``natural_watts``, kept above idle + uncore so that the model's own checks pass. The idle
    draw stays the model's: our format carries it with the GPU (docs/profile-format.md), not per profile."""
    floor = model.idle_watts + model.uncore_watts + 1.0
    return replace(model, natural_draw_watts=max(floor, natural_watts))


def fit_role(model: CapModel, caps_watts: Sequence[float], times_s: Sequence[float]) -> RoleFit:
    """Least squares of ``time = A x1 + B x2`` over the sweep (``model`` gives the clock at each cap); the share
    is clamped to [0, 1] (noise on a flat curve can tip ``B`` below 0)."""
    if len(caps_watts) < 2:
        raise ProfileError("a sweep needs at least two caps to fit the cap response; give more caps")
    x = np.asarray([slowdown_features(model, c) for c in caps_watts], dtype=np.float64)
    y = np.asarray(times_s, dtype=np.float64)
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise ProfileError("a measured time is missing or not positive; rerun the sweep with more requests")
    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    total = float(a + b)
    share = min(1.0, max(0.0, float(b) / total)) if total > 0 else 0.0
    fitted = replace(model, compute_share=share)
    predicted = [total * fitted.slowdown(c) for c in caps_watts]
    residual = max(abs(p / t - 1.0) for p, t in zip(predicted, y.tolist(), strict=True))
    return RoleFit(model.role, total, share, residual)


def fit_sweep(profile: CappedProfile, points: Sequence[SweepPoint]) -> SweepFit:
    """Natural draw from the draw, then each role's share from its times (TTFT: prefill, ITL: decode)."""
    natural, observed = natural_draw(points, profile.prefill_caps)
    caps = [p.cap_watts for p in points]
    prefill = fit_role(with_natural(profile.prefill_caps, natural), caps, [p.ttft_s for p in points])
    decode = fit_role(with_natural(profile.decode_caps, natural), caps, [p.itl_s for p in points])
    return SweepFit(natural, observed, prefill, decode)


def measured_profile(profile: CappedProfile, fit: SweepFit, source: str,
                     roles: Sequence[Role] = (Role.PREFILL, Role.DECODE)) -> CappedProfile:
    """``profile`` with the sweep's cap response (natural draw and compute share) for ``roles`` (the roles the
    measured GPU served); its latency models stay the base profile's (a sweep at one ISL, OSL and concurrency
    cannot refit them), and so do the cap models of the other roles."""
    models = {Role.PREFILL: profile.prefill_caps, Role.DECODE: profile.decode_caps}
    for role_fit, model in ((fit.prefill, profile.prefill_caps), (fit.decode, profile.decode_caps)):
        if role_fit.role not in roles:
            continue
        if not math.isfinite(role_fit.compute_share):
            raise ProfileError(f"{role_fit.role.value}: the fitted compute share is not finite; rerun the sweep")
        models[role_fit.role] = replace(with_natural(model, fit.natural_draw_watts),
                                        compute_share=role_fit.compute_share, source=source)
    note = (f"cap response measured by `powerplanner profile measure` ({source}); latency models from "
            f"{profile.name}")
    return replace(profile, name=f"{profile.name}-measured", notes=(*profile.notes, note),
                   prefill_caps=models[Role.PREFILL], decode_caps=models[Role.DECODE])
