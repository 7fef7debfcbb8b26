"""The cap model: what a per-GPU power cap does to one role's clock, speed and draw.

Why a model and not a table: the planner asks for any cap between the GPU's minimum and maximum limit, and
the physics is simple enough to state in six numbers per GPU and role (all of them data, carried by the
profile, never constants in these code paths):

- A busy GPU in a role draws ``idle + uncore + core * g(f)`` at relative SM clock ``f`` (1 = full boost).
  ``uncore`` is the activity-proportional part that does not follow the SM clock (HBM, NVLink, fabric);
  ``core`` follows dynamic voltage and frequency scaling: ``g(f) = f^3`` above the voltage floor (V ~ f, so
  P ~ f V^2 ~ f^3) and ``g(f) = floor^2 * f`` below it (V pinned at its floor, P ~ f), continuous at the floor.
- Its natural (uncapped) draw is ``idle + uncore + core`` (prefill ~ TDP; decode ~380 W on H100).
  A cap at or above it changes nothing.
- A lower cap lowers the clock until the draw fits. Below the lowest clock the GPU throttles its activity
  (duty cycle < 1), which is where memory-bound decode, flat until then, collapses.
- Time scales as ``(1 - compute_share) + compute_share / f``, divided by the duty cycle: prefill is
  compute-bound (share near 1, about +30% latency at a 350 W cap on H100), decode memory-bound (share small).

The consequence the planner relies on: energy per token (draw x time) is U-shaped in the cap for a
compute-bound role: static power dominates at low clocks, the cubic term at high clocks.

Two measured dimensions scale the draw above idle (uncore and core alike) by an *activity* factor ``a``
(docs/profile-format.md, "Draw by TP and load"; defaults keep the draw flat, Splitwise's constant model):

- tensor parallelism: ``(tp / draw_reference_tp) ** -draw_tp_exponent`` (per-GPU decode draw falls with TP),
  applied once per profile by :meth:`CapModel.at_tp`;
- load: ``x / (x + half)`` with ``x`` the prompt tokens per GPU of a prefill batch (``draw_half_tokens_per_gpu``)
  or the sequences of a decode batch (``draw_half_batch``); 1 at saturation, so ``natural_draw_watts`` is the
  upper envelope and a load-blind caller is never below the draw.

A busy GPU then draws ``idle + a * (uncore + core * g(f))``; its natural draw is ``idle + a * (natural - idle)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from powerplanner.errors import ProfileError
from powerplanner.model.roles import Role

_MIN_ACTIVITY = 1e-3  # a busy GPU at (almost) no load still draws above idle; keeps the clock search finite


@dataclass(frozen=True)
class OperatingPoint:
    """Where a busy GPU settles under a cap: relative clock, duty cycle and the slowdown they cause."""

    clock: float  # relative SM clock, 1.0 = full boost
    duty: float  # fraction of time the GPU is allowed to be active (1.0 unless below the lowest clock)
    slowdown: float  # time at this cap / time uncapped, >= 1
    busy_draw_watts: float  # draw while fully busy, never above the cap


@dataclass(frozen=True)
class CapModel:
    """DVFS constants of one role on one GPU. ``source`` names where the numbers come from."""

    role: Role
    min_limit_watts: float
    max_limit_watts: float
    idle_watts: float
    natural_draw_watts: float
    uncore_watts: float
    compute_share: float
    floor_clock: float
    min_clock: float
    source: str = ""
    draw_reference_tp: float = 1.0  # the TP at which natural_draw_watts and uncore_watts hold
    draw_tp_exponent: float = 0.0  # above-idle draw ~ (tp / draw_reference_tp) ** -exponent; 0: flat in TP
    draw_half_batch: float = 0.0  # decode: batch (sequences) at half the above-idle draw; 0: flat in batch
    draw_half_tokens_per_gpu: float = 0.0  # prefill: batch prompt tokens per GPU at half the above-idle draw

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ProfileError(*problems)

    def problems(self) -> list[str]:
        """Every inconsistency in the constants, one line each naming the fix."""
        out: list[str] = []
        tag = f"cap model for {self.role.value}"
        if not (0 < self.min_limit_watts <= self.max_limit_watts):
            out.append(f"{tag}: need 0 < min_limit_watts <= max_limit_watts; fix the GPU's power limits")
        if not (0 <= self.idle_watts < self.min_limit_watts):
            out.append(f"{tag}: idle_watts must be >= 0 and below min_limit_watts; fix idle_watts")
        if not (self.natural_draw_watts > self.idle_watts + self.uncore_watts):
            out.append(f"{tag}: natural_draw_watts must exceed idle_watts + uncore_watts; lower uncore_watts")
        if self.uncore_watts < 0:
            out.append(f"{tag}: uncore_watts must be >= 0; fix uncore_watts")
        if not (0 <= self.compute_share <= 1):
            out.append(f"{tag}: compute_share must lie in [0, 1]; fix compute_share")
        if not (0 < self.min_clock <= self.floor_clock <= 1):
            out.append(f"{tag}: need 0 < min_clock <= floor_clock <= 1; fix the clocks")
        out += self._dimension_problems(tag)
        for field_name in ("min_limit_watts", "max_limit_watts", "idle_watts", "natural_draw_watts",
                           "uncore_watts", "compute_share", "floor_clock", "min_clock", "draw_reference_tp",
                           "draw_tp_exponent", "draw_half_batch", "draw_half_tokens_per_gpu"):
            value = getattr(self, field_name)
            if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
                out.append(f"{tag}: {field_name} is not a finite number; give a number")
        return out

    def _dimension_problems(self, tag: str) -> list[str]:
        out: list[str] = []
        if not self.draw_reference_tp >= 1:
            out.append(f"{tag}: draw_reference_tp must be >= 1 (a tensor-parallel size); fix draw_reference_tp")
        if not self.draw_tp_exponent >= 0:
            out.append(f"{tag}: draw_tp_exponent must be >= 0 (0: per-GPU draw flat in TP); fix draw_tp_exponent")
        for name, own in (("draw_half_batch", Role.DECODE), ("draw_half_tokens_per_gpu", Role.PREFILL)):
            value = getattr(self, name)
            if not value >= 0:
                out.append(f"{tag}: {name} must be >= 0 (0: draw flat in load); fix {name}")
            elif value > 0 and self.role is not own:
                out.append(f"{tag}: {name} applies to {own.value} only; move it to {own.value}.power")
        return out

    def at_tp(self, tp: float) -> CapModel:
        """This role's cap model at tensor-parallel size ``tp``: the above-idle draw (uncore and core alike)
        scaled by ``(tp / draw_reference_tp) ** -draw_tp_exponent``; ``self`` when nothing changes."""
        if self.draw_tp_exponent == 0.0 or tp == self.draw_reference_tp:
            return self
        scale = (tp / self.draw_reference_tp) ** -self.draw_tp_exponent
        return replace(self, natural_draw_watts=self.idle_watts + scale * (self.natural_draw_watts - self.idle_watts),
                       uncore_watts=self.uncore_watts * scale, draw_reference_tp=float(tp))

    @property
    def draws_by_load(self) -> bool:
        """True when the busy draw depends on the batch (decode) or the batch tokens per GPU (prefill)."""
        return (self.draw_half_batch if self.role is Role.DECODE else self.draw_half_tokens_per_gpu) > 0.0

    def activity(self, load: float) -> float:
        """The load factor ``x / (x + half)`` of the above-idle draw, in (0, 1]; ``load`` is the decode batch
        (sequences) or the prefill batch's prompt tokens per GPU. 1 when the role's draw is flat in load."""
        half = self.draw_half_batch if self.role is Role.DECODE else self.draw_half_tokens_per_gpu
        if half <= 0.0:
            return 1.0
        x = max(0.0, load)
        return max(_MIN_ACTIVITY, x / (x + half))

    @property
    def core_watts(self) -> float:
        """The clock-dependent part of the natural draw."""
        return self.natural_draw_watts - self.idle_watts - self.uncore_watts

    def check_cap(self, cap_watts: float) -> float:
        """Return ``cap_watts`` if it is settable, else raise a :class:`ProfileError` naming the range."""
        if not (self.min_limit_watts <= cap_watts <= self.max_limit_watts):  # also rejects NaN
            raise ProfileError(
                f"cap {cap_watts:g} W is outside the GPU's settable range "
                f"[{self.min_limit_watts:g}, {self.max_limit_watts:g}] W; choose a cap in that range"
            )
        return cap_watts

    def busy_draw_at_clock_watts(self, clock: float, activity: float = 1.0) -> float:
        """Draw of a fully busy GPU at relative ``clock`` (duty 1) and load factor ``activity``."""
        g = clock**3 if clock >= self.floor_clock else self.floor_clock**2 * clock
        if activity == 1.0:  # the flat model's exact arithmetic (default results stay bit-identical)
            return self.idle_watts + self.uncore_watts + self.core_watts * g
        return self.idle_watts + activity * (self.uncore_watts + self.core_watts * g)

    def natural_at_watts(self, activity: float = 1.0) -> float:
        """Uncapped draw of a busy GPU at load factor ``activity``."""
        if activity == 1.0:
            return self.natural_draw_watts
        return self.idle_watts + activity * (self.natural_draw_watts - self.idle_watts)

    def _clock_for_core_watts(self, core_budget_watts: float) -> float:
        x = core_budget_watts / self.core_watts
        floor = self.floor_clock
        if x >= floor * floor * floor:
            return min(1.0, x ** (1.0 / 3.0))
        return x / (floor * floor)

    def _clock_and_duty(self, cap_watts: float, activity: float = 1.0) -> tuple[float, float]:
        if not (self.min_limit_watts <= cap_watts <= self.max_limit_watts):
            self.check_cap(cap_watts)  # raises with the range in the message
        if cap_watts >= self.natural_at_watts(activity):
            return 1.0, 1.0
        clock = self._clock_for_core_watts((cap_watts - self.idle_watts) / activity - self.uncore_watts)
        if clock >= self.min_clock:
            return clock, 1.0
        active_watts = activity * (self.busy_draw_at_clock_watts(self.min_clock) - self.idle_watts)
        return self.min_clock, max(1e-3, (cap_watts - self.idle_watts) / active_watts)

    def operating_point(self, cap_watts: float, activity: float = 1.0) -> OperatingPoint:
        """Where the GPU settles under ``cap_watts`` while fully busy in this role at load factor ``activity``."""
        clock, duty = self._clock_and_duty(cap_watts, activity)
        slowdown = ((1.0 - self.compute_share) + self.compute_share / clock) / duty
        return OperatingPoint(clock, duty, slowdown, min(cap_watts, self.natural_at_watts(activity)))

    def slowdown(self, cap_watts: float, activity: float = 1.0) -> float:
        """Time at ``cap_watts`` divided by uncapped time (>= 1) at load factor ``activity`` (a lighter load
        draws less, so a cap binds it less). Kept cheap: the simulator asks per event."""
        clock, duty = self._clock_and_duty(cap_watts, activity)
        return ((1.0 - self.compute_share) + self.compute_share / clock) / duty

    def draw_watts(self, cap_watts: float, utilization: float, activity: float = 1.0) -> float:
        """Per-GPU draw at ``cap_watts``, ``utilization`` in [0, 1] and load factor ``activity``: idle plus the
        busy share, never above the cap (an idle GPU draws its idle power whatever the cap)."""
        if not (-1e-6 <= utilization <= 1.0 + 1e-6):  # tolerate float rounding from callers' averages
            raise ProfileError(f"utilization {utilization:g} is outside [0, 1]; pass a fraction of busy time")
        utilization = min(1.0, max(0.0, utilization))
        if not (self.min_limit_watts <= cap_watts <= self.max_limit_watts):
            self.check_cap(cap_watts)
        busy = min(cap_watts, self.natural_at_watts(activity))  # the cap binds exactly when below natural draw
        return self.idle_watts + utilization * (busy - self.idle_watts)

    def cap_levels(self, count: int) -> tuple[float, ...]:
        """``count`` caps evenly spaced from the minimum to the maximum limit, ascending."""
        if count < 1:
            raise ProfileError(f"cap level count {count} must be >= 1; ask for at least one level")
        if count == 1:
            return (self.max_limit_watts,)
        step = (self.max_limit_watts - self.min_limit_watts) / (count - 1)
        levels = [self.min_limit_watts + i * step for i in range(count - 1)] + [self.max_limit_watts]
        return tuple(levels)
