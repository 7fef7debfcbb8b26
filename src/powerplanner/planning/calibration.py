"""Online calibration: each tick's observation updates the belief (:mod:`~powerplanner.planning.belief`) about how
each role responds to its cap, and the planner plans with the profile the belief gives (docs/planner.md,
"Calibration").

Pure and clock-free like the rest of the core: time is ``Observation.time_s``. What it learns from, per role:

- latency: the observed TTFT (M/D/1 inverted to a service time at the observed per-replica rate, only below 70%
  utilisation, where the queueing model holds) or ITL (at the batch Little's law gives), over the profile's
  uncapped time. The window averages latency over requests, so the features are averaged over the caps applied
  during the window (ticks inside it): exact for a model linear in its parameters, which it is.
- draw: the measured draw of the role's GPUs at the cap of the last tick, when that cap held for a whole tick.

Probing (safe exploration) asks for one cap level of one role at a time, next to the cap in force, where the
belief's predicted slowdown is most uncertain, only while the observed latency keeps a margin below its target;
the planner then verifies it against the budget and the belief's attainment before it plans it
(``Planner._probe``), so a probe is a normal plan through the same optimiser and transition rules.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from powerplanner.errors import UserError
from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Observation
from powerplanner.planning.belief import Gaussian2, RoleBelief, learned_profile, slowdown_features

_RHO_MAX = 0.5  # above it queueing dominates TTFT and the M/D/1 inversion's error grows with the load (and so
# with lower caps, which would bias the compute share); sizing.py's corrections stop at 0.7 for the same reason


@dataclass(frozen=True)
class CalibrationSettings:
    """``planner.calibration`` in the core's units (docs/configuration.md)."""

    enabled: bool = False
    probing: bool = True
    learn_draw: bool = False
    prior_scale_std: float = 0.1  # prior std of the latency scale at full clock (the profile measured it)
    prior_share_std: float = 0.3  # prior std of the compute share's term (the cap model assumed it)
    draw_prior_fraction: float = 0.1  # prior std of idle and natural draw, as a fraction of the profile's
    latency_noise: float = 0.08  # std of one window's latency ratio
    draw_noise_fraction: float = 0.03  # std of one measured draw, as a fraction of it
    scale_min: float = 1.0  # the learned latency scale is kept in [scale_min, scale_max]
    scale_max: float = 2.0
    probe_min_std: float = 0.03  # probe only where the predicted slowdown's std exceeds this
    probe_margin: float = 0.25  # probe only while observed latency <= (1 - margin) x target
    probe_hold_s: float = 60.0  # how long one probe holds its cap
    probe_interval_s: float = 300.0  # quiet time after a probe before the next
    departure_fraction: float = 0.1  # a learned constant this far from the profile's is reported (Event)
    deadband: float = 0.04  # plan with a role's belief once its slowdown departs this far from the profile's


@dataclass(frozen=True)
class _Tick:
    """What one tick saw of a role: its cap, the slowdown features there and its busy fraction from the draw."""

    time_s: float
    cap_watts: float
    x: tuple[float, float]
    busy_fraction: float | None  # of its ready GPUs, from the measured draw; None without one


@dataclass(frozen=True)
class Probe:
    role: Role
    cap_watts: float
    until_s: float


class Calibrator:
    """Keeps each role's belief, the recent caps (for the window's features) and the probe in progress."""

    def __init__(self, settings: CalibrationSettings, profile: CappedProfile) -> None:
        self.settings = settings
        self.prior = profile
        self.beliefs: dict[Role, RoleBelief] = {
            role: RoleBelief.prior(profile.cap_model(role), settings.prior_scale_std, settings.prior_share_std,
                                  settings.draw_prior_fraction)
            for role in ROLES
        }
        self._planned: dict[Role, RoleBelief | None] = dict.fromkeys(ROLES)  # the planning profile's beliefs
        self._history: dict[Role, deque[_Tick]] = {role: deque() for role in ROLES}
        self.profile = profile  # what the planner plans with: rebuilt when the belief moves
        self.probe: Probe | None = None
        self.probes_started = 0
        self._next_probe_s = -math.inf
        self._last_learned_s: dict[Role, float] = {role: -math.inf for role in ROLES}
        # (time, role, latency scale, compute share) after each latency update: how fast the belief settles
        self.trail: deque[tuple[float, Role, float, float]] = deque(maxlen=1024)

    # -- learning -------------------------------------------------------------------------------

    def observe(self, obs: Observation, caps_watts: dict[Role, float]) -> bool:
        """Absorb one tick with good data at the per-GPU ``caps_watts`` in force; True when the planning profile
        changed."""
        before = self._key()
        for role in ROLES:
            model = self.profile.cap_model(role)
            x = slowdown_features(model, caps_watts[role])
            hist = self._history[role]
            hist.append(_Tick(obs.time_s, caps_watts[role], x, busy_fraction(obs, role, model, caps_watts[role],
                                                                            self.prior.gpus_per_replica(role))))
            while hist and hist[0].time_s <= obs.time_s - obs.window_s - 1e-9:
                hist.popleft()
            self._learn_latency(role, obs)
            if self.settings.learn_draw:
                self._learn_draw(role, obs, caps_watts[role])
        if self._key() == before:
            return False
        planned = {role: self.beliefs[role] if self.departs(role) else None for role in ROLES}
        profile = learned_profile(self.prior, planned, (self.settings.scale_min, self.settings.scale_max))
        changed = self._planned != planned
        self._planned = planned
        if changed:
            self.profile = profile
        return changed

    def departs(self, role: Role) -> bool:
        """Whether ``role``'s belief replaces the profile: somewhere in the GPU's range its slowdown (latency scale
        kept within its bounds) differs from the profile's by more than ``deadband`` and by more than two standard
        deviations. Why a dead band: the observation model (M/D/1 on windowed TTFT, Little's law on ITL) is itself
        off by several percent, more at high load, and a belief fitted to that error would move caps for nothing;
        the scalar corrections, measured against the planning profile, still carry a scale error below it."""
        belief = self.beliefs[role]
        model = self.prior.cap_model(role)
        k = min(self.settings.scale_max, max(self.settings.scale_min, belief.latency_scale))
        a, b = belief.slowdown.mean
        for cap in model.cap_levels(16):
            x = slowdown_features(model, cap)
            given = model.slowdown(cap)
            mean, std = belief.slowdown.predict(x)
            learned = mean * k / (a + b) if a + b > 0 else mean
            gap = abs(learned - given)
            if gap > self.settings.deadband * given and gap > 2.0 * std:
                return True
        return False

    def _window_features(self, role: Role, obs: Observation) -> tuple[float, float] | None:
        hist = self._history[role]
        if len(hist) < 2 or obs.time_s - hist[0].time_s < 0.5 * obs.window_s:
            return None  # the window is mostly before this calibrator saw the caps
        n = len(hist)
        return sum(h.x[0] for h in hist) / n, sum(h.x[1] for h in hist) / n

    def _learn_latency(self, role: Role, obs: Observation) -> None:
        x = self._window_features(role, obs)
        rate, isl, osl = obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens
        ready = obs.role(role).ready_replicas
        if x is None or not (rate and isl and osl and rate > 0 and isl > 0 and osl > 0) or ready <= 0:
            return
        if obs.role(role).starting_replicas > 0:
            return  # a scale-up under way: queues built while capacity was short drain now, whatever the cap
        if obs.time_s - self._last_learned_s[role] < obs.window_s - 1e-9:
            return  # consecutive ticks share most of their window: one update per window keeps samples independent
        try:
            ratio = self._latency_ratio(role, obs, rate / ready, isl, osl)
        except (UserError, ValueError, ZeroDivisionError, OverflowError):
            return
        if ratio is None or not math.isfinite(ratio):
            return
        ratio = min(5.0, max(0.3, ratio))
        self._last_learned_s[role] = obs.time_s
        belief = self.beliefs[role]
        # relative noise (a window's error scales with its latency), at the prediction so the weight is not biased
        predicted = max(0.3, belief.slowdown.predict(x)[0])
        slowdown = belief.slowdown.update(x, ratio, self.settings.latency_noise * predicted, clip=3.0)
        self.beliefs[role] = updated = RoleBelief(role, _physical(slowdown), belief.draw)
        self.trail.append((obs.time_s, role, updated.latency_scale, updated.compute_share))

    def _latency_ratio(self, role: Role, obs: Observation, per_replica_rate: float, isl: float, osl: float
                       ) -> float | None:
        """Observed time over the profile's uncapped time (the regression's ``y``)."""
        if role is Role.PREFILL:
            busy = [h.busy_fraction for h in self._history[role]]
            if all(b is not None for b in busy):
                # utilisation law: busy time per request = busy fraction / per-replica rate; no queueing model
                # (whose error grows with the load, and so with lower caps, and would bias the compute share)
                rho = sum(b for b in busy if b is not None) / len(busy)
                if not (0.05 <= rho <= 0.95):
                    return None
                return rho / per_replica_rate / self.prior.prefill.time_s(isl)
            if obs.ttft_ms is None or obs.ttft_ms <= 0:
                return None
            service_s = md1_service_s(obs.ttft_ms / 1000.0, per_replica_rate)
            if service_s is None or per_replica_rate * service_s >= _RHO_MAX:
                return None
            return service_s / self.prior.prefill.time_s(isl)
        if obs.itl_ms is None or obs.itl_ms <= 0:
            return None
        context = isl + osl / 2
        batch = per_replica_rate * osl * (obs.itl_ms / 1000.0)  # Little's law, per ready replica
        batch = min(max(1.0, batch), float(self.prior.max_batch(context)))
        return obs.itl_ms / 1000.0 / self.prior.decode.itl_s(batch, context)

    def _learn_draw(self, role: Role, obs: Observation, cap_watts: float) -> None:
        hist = self._history[role]
        state = obs.role(role)
        draw = state.measured_draw_watts
        rate, isl, osl = obs.request_rate_per_s, obs.isl_tokens, obs.osl_tokens
        if draw is None or len(hist) < 2 or hist[-2].cap_watts != cap_watts or rate is None or not (isl and osl):
            return
        gpr = self.prior.gpus_per_replica(role)
        held, ready = state.holding_replicas * gpr, state.ready_replicas * gpr
        if held <= 0:
            return
        try:
            util = self._utilization(role, rate, isl, osl, ready, cap_watts)
        except (UserError, ValueError, ZeroDivisionError, OverflowError):
            return
        belief = self.beliefs[role]
        busy = ready * util
        binding = cap_watts < belief.draw.mean[1]
        noise = self.settings.draw_noise_fraction * draw + 1.0
        if binding and draw >= belief.draw.predict((held - busy, 0.0))[0] + cap_watts * busy - 3 * noise:
            x, y = (held - busy, 0.0), draw - cap_watts * busy
        else:  # the cap does not bind, or the draw says the GPUs stop below it (natural draw under the cap)
            x, y = (held - busy, busy), draw
        self.beliefs[role] = RoleBelief(role, belief.slowdown, belief.draw.update(x, y, noise))

    def _utilization(self, role: Role, rate: float, isl: float, osl: float, ready_gpus: int, cap: float) -> float:
        """Busy fraction as the planner models it (docs/planner.md): demand over raw throughput at the cap."""
        if ready_gpus <= 0 or rate <= 0:
            return 0.0
        if role is Role.PREFILL:
            raw = self.profile.prefill_throughput_tokens_per_s_per_gpu(isl, cap)
            demand = rate * isl
        else:
            raw = self.profile.decode_throughput_tokens_per_s_per_gpu(isl + osl / 2, cap)
            demand = rate * osl
        return min(1.0, max(0.0, demand / (ready_gpus * raw))) if raw > 0 else 1.0

    def _key(self) -> tuple[float, ...]:
        """The belief's planning parameters, rounded so a negligible move does not rebuild the profile."""
        out: list[float] = []
        for role in ROLES:
            p = self.beliefs[role].parameters()
            out += [round(p["latency_scale"][0], 3), round(p["compute_share"][0], 3),
                    round(p["natural_draw_watts"][0], 0), round(p["idle_watts"][0], 0)]
        return tuple(out)

    # -- probing --------------------------------------------------------------------------------

    def slowdown_std(self, role: Role, cap_watts: float) -> float:
        """The belief's standard deviation of the slowdown at ``cap_watts``."""
        return self.beliefs[role].slowdown.predict(slowdown_features(self.profile.cap_model(role), cap_watts))[1]

    def propose_probe(self, obs: Observation, caps_watts: dict[Role, float], levels: dict[Role, tuple[float, ...]],
                      margins: dict[Role, bool]) -> Probe | None:
        """The probe to plan this tick, if any: the one in progress while it lasts and its role keeps its margin,
        else (after the quiet interval) the most uncertain neighbour level of a cap in force."""
        s = self.settings
        if not s.probing:
            return None
        if self.probe is not None:
            if obs.time_s < self.probe.until_s and margins.get(self.probe.role, False):
                return self.probe
            self.probe = None
        if obs.time_s < self._next_probe_s:
            return None
        best: tuple[float, Role, float] | None = None
        for role in ROLES:
            if not margins.get(role, False):
                continue
            for cap in neighbour_levels(levels[role], caps_watts[role]):
                std = self.slowdown_std(role, cap)
                if std > s.probe_min_std and (best is None or std > best[0]):
                    best = (std, role, cap)
        if best is None:
            return None
        self.probe = Probe(best[1], best[2], obs.time_s + s.probe_hold_s)
        self._next_probe_s = self.probe.until_s + s.probe_interval_s
        self.probes_started += 1
        return self.probe

    def cancel_probe(self) -> None:
        """The planner found the probe unsafe this tick (budget or predicted attainment): drop it."""
        self.probe = None

    # -- reporting ------------------------------------------------------------------------------

    def departure(self) -> dict[str, float]:
        """Each learned constant's relative distance from the profile's, ``role.name`` -> fraction."""
        out: dict[str, float] = {}
        for role in ROLES:
            model = self.prior.cap_model(role)
            given = {"latency_scale": 1.0, "compute_share": model.compute_share, "idle_watts": model.idle_watts,
                     "natural_draw_watts": model.natural_draw_watts}
            for name, (value, _std) in self.beliefs[role].parameters().items():
                base = given[name]
                out[f"{role.value}.{name}"] = abs(value - base) / max(abs(base), 1e-3 if name != "compute_share"
                                                                      else 0.05)
        return out

    def departed(self) -> list[str]:
        """The constants further from the profile than ``departure_fraction`` (the Event's subject)."""
        return sorted(k for k, v in self.departure().items() if v > self.settings.departure_fraction)


def _physical(g: Gaussian2) -> Gaussian2:
    """Keep the mean where the model means something: ``a = k (1 - share) >= 0`` and ``b = k share >= 0``
    (a share outside [0, 1] has no clock to belong to); the covariance stays."""
    a, b = g.mean
    if a >= 0 and b >= 0:
        return g
    k = a + b
    a, b = (0.0, k) if a < 0 else (k, 0.0)
    return Gaussian2((a, b), g.cov, g.count)


def settled_s(trail: Sequence[tuple[float, Role, float, float]], role: Role, tolerance: float = 0.05
              ) -> float | None:
    """The time after which ``role``'s latency scale and compute share stay within ``tolerance`` (relative; 0.05
    absolute for the share) of their last values; None before any update."""
    points = [(t, k, c) for t, r, k, c in trail if r is role]
    if not points:
        return None
    _, k_end, c_end = points[-1]
    settled = points[-1][0]
    for t, k, c in reversed(points):
        if abs(k - k_end) > tolerance * k_end or abs(c - c_end) > 0.05:
            break
        settled = t
    return settled


def busy_fraction(obs: Observation, role: Role, model: CapModel, cap_watts: float, gpus_per_replica: int
                  ) -> float | None:
    """The ready GPUs' busy fraction from the role's measured draw: every holding GPU draws idle power, a busy
    one ``min(cap, natural)`` (the cap model); None without a draw or a ready replica."""
    state = obs.role(role)
    if state.measured_draw_watts is None or state.ready_replicas <= 0:
        return None
    busy_w = min(cap_watts, model.natural_draw_watts) - model.idle_watts
    if busy_w <= 0:
        return None
    idle = model.idle_watts * state.holding_replicas * gpus_per_replica
    return min(1.0, max(0.0, (state.measured_draw_watts - idle) / (busy_w * state.ready_replicas * gpus_per_replica)))


def neighbour_levels(levels: tuple[float, ...], cap_watts: float) -> tuple[float, ...]:
    """The levels just below and just above ``cap_watts`` (the caps nearest to one observed)."""
    below = [c for c in levels if c < cap_watts - 1e-6]
    above = [c for c in levels if c > cap_watts + 1e-6]
    return tuple([*below[-1:], *above[:1]])


def md1_service_s(ttft_s: float, rate_per_s: float) -> float | None:
    """The service time ``S`` whose M/D/1 TTFT ``S + rho S / (2 (1 - rho))`` at ``rate_per_s`` is ``ttft_s``
    (monotone in ``S``, so bisection), or None when no stable queue gives it."""
    if not (ttft_s > 0 and math.isfinite(ttft_s)) or rate_per_s < 0:
        return None
    hi = ttft_s if rate_per_s == 0 else min(ttft_s, 1.0 / rate_per_s)
    lo = 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        rho = rate_per_s * mid
        t = math.inf if rho >= 1 else mid + rho * mid / (2 * (1 - rho))
        lo, hi = (mid, hi) if t < ttft_s else (lo, mid)
    return (lo + hi) / 2
