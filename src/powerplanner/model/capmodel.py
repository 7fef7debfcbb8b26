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
"""

from __future__ import annotations

from dataclasses import dataclass

from powerplanner.errors import ProfileError
from powerplanner.model.roles import Role


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
        for field_name in ("min_limit_watts", "max_limit_watts", "idle_watts", "natural_draw_watts",
                           "uncore_watts", "compute_share", "floor_clock", "min_clock"):
            value = getattr(self, field_name)
            if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
                out.append(f"{tag}: {field_name} is not a finite number; give a number")
        return out

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

    def busy_draw_at_clock_watts(self, clock: float) -> float:
        """Draw of a fully busy GPU at relative ``clock`` (duty 1)."""
        g = clock**3 if clock >= self.floor_clock else self.floor_clock**2 * clock
        return self.idle_watts + self.uncore_watts + self.core_watts * g

    def _clock_for_core_watts(self, core_budget_watts: float) -> float:
        x = core_budget_watts / self.core_watts
        floor = self.floor_clock
        if x >= floor * floor * floor:
            return min(1.0, x ** (1.0 / 3.0))
        return x / (floor * floor)

    def _clock_and_duty(self, cap_watts: float) -> tuple[float, float]:
        if not (self.min_limit_watts <= cap_watts <= self.max_limit_watts):
            self.check_cap(cap_watts)  # raises with the range in the message
        if cap_watts >= self.natural_draw_watts:
            return 1.0, 1.0
        clock = self._clock_for_core_watts(cap_watts - self.idle_watts - self.uncore_watts)
        if clock >= self.min_clock:
            return clock, 1.0
        active_watts = self.busy_draw_at_clock_watts(self.min_clock) - self.idle_watts
        return self.min_clock, max(1e-3, (cap_watts - self.idle_watts) / active_watts)

    def operating_point(self, cap_watts: float) -> OperatingPoint:
        """Where the GPU settles under ``cap_watts`` while fully busy in this role."""
        clock, duty = self._clock_and_duty(cap_watts)
        slowdown = ((1.0 - self.compute_share) + self.compute_share / clock) / duty
        return OperatingPoint(clock, duty, slowdown, min(cap_watts, self.natural_draw_watts))

    def slowdown(self, cap_watts: float) -> float:
        """Time at ``cap_watts`` divided by uncapped time (>= 1). Kept cheap: the simulator asks per event."""
        clock, duty = self._clock_and_duty(cap_watts)
        return ((1.0 - self.compute_share) + self.compute_share / clock) / duty

    def draw_watts(self, cap_watts: float, utilization: float) -> float:
        """Per-GPU draw at ``cap_watts`` and ``utilization`` in [0, 1]: idle plus the busy share, never above
        the cap (an idle GPU draws its idle power whatever the cap)."""
        if not (-1e-6 <= utilization <= 1.0 + 1e-6):  # tolerate float rounding from callers' averages
            raise ProfileError(f"utilization {utilization:g} is outside [0, 1]; pass a fraction of busy time")
        utilization = min(1.0, max(0.0, utilization))
        if not (self.min_limit_watts <= cap_watts <= self.max_limit_watts):
            self.check_cap(cap_watts)
        busy = min(cap_watts, self.natural_draw_watts)  # the cap binds exactly whenever it is below natural draw
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
