"""The planner's belief about one role's response to the cap: Bayesian linear regression on the cap model.

Why linear: the cap model (docs/planner.md, "Calibration") is linear in the constants worth learning once the
clock at a cap is known. Time at cap ``c`` over the profile's uncapped time is

    r(c) = (a + b / f(c)) / duty(c)      a = k (1 - compute_share),  b = k compute_share

with ``k`` the latency scale the profile misses (the old scalar correction, now one parameter among two) and
``f``, ``duty`` the clock and duty cycle the cap model gives at ``c``. A busy role's draw is

    draw = idle x (GPUs holding - GPUs ready x u) + min(cap, natural) x GPUs ready x u

linear in ``(idle, natural)`` where the cap does not bind and in ``idle`` alone where it does. Each is a Gaussian
over its two parameters, the prior from the profile, updated by the Kalman (recursive least squares) rule; its
covariance is the uncertainty /metrics and ``GET /profile`` show and probing reduces. Pure: values in, values out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.latency import DecodeLatency, PrefillLatency
from powerplanner.model.roles import ROLES, Role


@dataclass(frozen=True)
class Gaussian2:
    """A Gaussian belief over two parameters (mean, covariance as tuples: frozen and hashable)."""

    mean: tuple[float, float]
    cov: tuple[tuple[float, float], tuple[float, float]]
    count: int = 0  # observations absorbed

    @staticmethod
    def prior(mean: tuple[float, float], std: tuple[float, float]) -> Gaussian2:
        return Gaussian2(mean, ((std[0] ** 2, 0.0), (0.0, std[1] ** 2)))

    def std(self) -> tuple[float, float]:
        return math.sqrt(max(0.0, self.cov[0][0])), math.sqrt(max(0.0, self.cov[1][1]))

    def predict(self, x: tuple[float, float]) -> tuple[float, float]:
        """Mean and standard deviation of ``x . theta``."""
        m = np.asarray(self.mean)
        p = np.asarray(self.cov)
        v = np.asarray(x)
        return float(v @ m), math.sqrt(max(0.0, float(v @ p @ v)))

    def update(self, x: tuple[float, float], y: float, noise_std: float, clip: float = math.inf) -> Gaussian2:
        """The posterior after observing ``y = x . theta + e``, ``e ~ N(0, noise_std^2)``. The innovation is
        clipped to ``clip`` of its own standard deviations (a Huber-like guard: one window the observation model
        misread must not drag the belief, least of all at the range's end where it has most leverage)."""
        m = np.asarray(self.mean)
        p = np.asarray(self.cov)
        v = np.asarray(x)
        s = float(v @ p @ v) + noise_std * noise_std
        if not (math.isfinite(s) and s > 0 and math.isfinite(y)):
            return self
        gain = p @ v / s
        bound = clip * math.sqrt(s)
        m2 = m + gain * min(bound, max(-bound, y - float(v @ m)))
        p2 = p - np.outer(gain, v @ p)
        p2 = (p2 + p2.T) / 2.0  # keep it symmetric against rounding
        return Gaussian2((float(m2[0]), float(m2[1])), ((float(p2[0, 0]), float(p2[0, 1])),
                                                       (float(p2[1, 0]), float(p2[1, 1]))), self.count + 1)


def slowdown_features(model: CapModel, cap_watts: float) -> tuple[float, float]:
    """``(1 / duty, 1 / (f duty))`` at ``cap_watts``: ``r = a x1 + b x2`` (module docstring)."""
    point = model.operating_point(model.check_cap(cap_watts))
    return 1.0 / point.duty, 1.0 / (point.clock * point.duty)


@dataclass(frozen=True)
class RoleBelief:
    """What the planner believes of one role: slowdown ``(a, b)`` and draw ``(idle, natural)``."""

    role: Role
    slowdown: Gaussian2
    draw: Gaussian2

    @staticmethod
    def prior(model: CapModel, scale_std: float, share_std: float, draw_std_fraction: float) -> RoleBelief:
        """The profile as a prior: the latency scale ``k = a + b`` ~ N(1, scale_std^2) (the uncapped latency is
        measured), ``b`` ~ N(compute_share, share_std^2) (the cap response is the model's assumption), independent;
        so ``a = k - b`` has variance ``scale_std^2 + share_std^2`` and covariance ``-share_std^2`` with ``b``."""
        s = model.compute_share
        vk, vb = scale_std**2, share_std**2
        return RoleBelief(
            model.role,
            Gaussian2((1.0 - s, s), ((vk + vb, -vb), (-vb, vb))),
            Gaussian2.prior((model.idle_watts, model.natural_draw_watts),
                            (draw_std_fraction * model.idle_watts + 1.0, draw_std_fraction * model.natural_draw_watts)),
        )

    @property
    def latency_scale(self) -> float:
        """``k = a + b``: time at full clock over the profile's."""
        return self.slowdown.mean[0] + self.slowdown.mean[1]

    @property
    def compute_share(self) -> float:
        k = self.latency_scale
        return min(1.0, max(0.0, self.slowdown.mean[1] / k)) if k > 0 else 0.0

    def parameters(self) -> dict[str, tuple[float, float]]:
        """Each learned constant with its standard deviation (what /metrics and the report show)."""
        _, sb = self.slowdown.std()
        k_std = self.slowdown.predict((1.0, 1.0))[1]
        k = self.latency_scale
        share_std = math.hypot(sb, self.compute_share * k_std) / k if k > 0 else math.inf
        si, sn = self.draw.std()
        return {
            "latency_scale": (k, k_std),
            "compute_share": (self.compute_share, share_std),
            "idle_watts": (self.draw.mean[0], si),
            "natural_draw_watts": (self.draw.mean[1], sn),
        }


def learned_cap_model(model: CapModel, belief: RoleBelief) -> CapModel:
    """The cap model with the belief's compute share, natural draw and idle draw, kept inside its own checks."""
    idle = min(max(0.0, belief.draw.mean[0]), model.min_limit_watts * 0.99)
    natural = max(belief.draw.mean[1], idle + model.uncore_watts + 1.0)
    natural = min(natural, model.max_limit_watts * 1.5)
    return replace(model, compute_share=belief.compute_share, natural_draw_watts=natural, idle_watts=idle,
                   source=f"learned online from telemetry (prior: {model.source or 'the profile'})")


def learned_profile(profile: CappedProfile, beliefs: Mapping[Role, RoleBelief | None], scale_bounds: tuple[float, float]
                    ) -> CappedProfile:
    """``profile`` as the belief sees it: learned cap models and the latency scaled by ``k`` (within
    ``scale_bounds``: by default never faster than the profile, as the old corrections were clamped to >= 1).
    A role whose belief is None keeps the profile's models; with none at all this is ``profile`` itself."""
    if all(b is None for b in beliefs.values()):
        return profile
    lo, hi = scale_bounds
    parts: dict[str, object] = {}
    for role in ROLES:
        belief = beliefs[role]
        if belief is None:
            continue
        k = min(hi, max(lo, belief.latency_scale))
        if role is Role.PREFILL:
            parts["prefill_caps"] = learned_cap_model(profile.prefill_caps, belief)
            parts["prefill"] = _scaled_prefill(profile.prefill, k)
        else:
            parts["decode_caps"] = learned_cap_model(profile.decode_caps, belief)
            parts["decode"] = _scaled_decode(profile.decode, k)
    return replace(profile, name=f"{profile.name} [learned]", **parts)  # type: ignore[arg-type]


def _scaled_prefill(model: object, k: float) -> object:
    if isinstance(model, PrefillLatency):
        return replace(model, a_s=model.a_s * k, b_s_per_token=model.b_s_per_token * k,
                       c_s_per_token2=model.c_s_per_token2 * k)
    return _ScaledPrefill(model, k) if k != 1.0 else model


def _scaled_decode(model: object, k: float) -> object:
    if isinstance(model, DecodeLatency):
        return replace(model, base_s=model.base_s * k, per_seq_s=model.per_seq_s * k,
                       per_kv_token_s=model.per_kv_token_s * k, per_seq_sq_s=model.per_seq_sq_s * k)
    return _ScaledDecode(model, k) if k != 1.0 else model


@dataclass(frozen=True)
class _ScaledPrefill:
    """A measured prefill table (no coefficients to scale) times ``k``."""

    inner: object
    k: float

    def time_s(self, tokens: float) -> float:
        return float(self.inner.time_s(tokens)) * self.k  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _ScaledDecode:
    """A measured decode table times ``k``."""

    inner: object
    k: float

    def itl_s(self, batch: float, context_tokens: float) -> float:
        return float(self.inner.itl_s(batch, context_tokens)) * self.k  # type: ignore[attr-defined]

    def itl_s_batches(self, batches: np.ndarray, context_tokens: float) -> np.ndarray:
        return np.asarray(self.inner.itl_s_batches(batches, context_tokens)) * self.k  # type: ignore[attr-defined]

    def max_batch(self, context_tokens: float) -> int:
        return int(self.inner.max_batch(context_tokens))  # type: ignore[attr-defined]
