"""GPU specifications: the power-limit range NVML accepts, the default limit and the idle draw.

Figures from ../shared/data/calibration/SOURCES.md ("Published figures"): H100 SXM and H200 SXM TDP
700 W with a minimum settable limit of 200 W; A100 SXM4 400 W with a minimum of 100 W. Idle draw from
Splitwise's constant power model (Patel et al., ISCA 2024): 75 W per H100, 63 W per A100. H200 idle is
taken equal to H100 (same board power class); DESIGN.md section 4 states 60-75 W for idle GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from powerplanner.errors import ProfileError


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model's power envelope. All limits are per GPU, in watts."""

    name: str
    min_limit_watts: float
    max_limit_watts: float
    default_limit_watts: float
    idle_watts: float
    memory_gb: float

    def __post_init__(self) -> None:
        if not (0 < self.min_limit_watts <= self.default_limit_watts <= self.max_limit_watts):
            raise ValueError(f"{self.name}: need 0 < min <= default <= max power limit")
        if not (0 <= self.idle_watts < self.min_limit_watts):
            raise ValueError(f"{self.name}: idle draw must be below the minimum limit")

    def clamp(self, watts: float) -> float:
        """The nearest limit NVML would accept."""
        return min(self.max_limit_watts, max(self.min_limit_watts, watts))

    def check_cap(self, watts: float) -> float:
        """Return ``watts`` if it is a settable limit, else raise a clear error."""
        if not (self.min_limit_watts <= watts <= self.max_limit_watts):
            raise ProfileError(
                f"cap {watts:g} W is outside {self.name}'s settable range "
                f"[{self.min_limit_watts:g}, {self.max_limit_watts:g}] W; choose a cap in that range"
            )
        return watts


def gpu_catalog() -> dict[str, GpuSpec]:
    """Known GPUs by canonical name. A function, not module state, so callers may extend a copy."""
    specs = [
        # SOURCES.md: H100 SXM TDP 700 W, min 200 W; Splitwise idle 75 W.
        GpuSpec("H100-SXM", min_limit_watts=200.0, max_limit_watts=700.0, default_limit_watts=700.0,
                idle_watts=75.0, memory_gb=80.0),
        # SOURCES.md: H200 SXM TDP 700 W, min 200 W; idle as H100 (same power class), 141 GB HBM3e.
        GpuSpec("H200-SXM", min_limit_watts=200.0, max_limit_watts=700.0, default_limit_watts=700.0,
                idle_watts=75.0, memory_gb=141.0),
        # SOURCES.md: A100 SXM4 400 W, min 100 W; Splitwise idle 63 W.
        GpuSpec("A100-SXM4", min_limit_watts=100.0, max_limit_watts=400.0, default_limit_watts=400.0,
                idle_watts=63.0, memory_gb=80.0),
    ]
    return {s.name: s for s in specs}


_ALIASES = {
    "h100": "H100-SXM", "h100-sxm": "H100-SXM", "h100-80gb": "H100-SXM", "h100_sxm": "H100-SXM",
    "h200": "H200-SXM", "h200-sxm": "H200-SXM", "h200_sxm": "H200-SXM",
    "a100": "A100-SXM4", "a100-sxm4": "A100-SXM4", "a100-80gb": "A100-SXM4", "a100_sxm4": "A100-SXM4",
}


def gpu_by_name(name: str) -> GpuSpec:
    """Look a GPU up by its canonical name or a common alias (case-insensitive)."""
    catalog = gpu_catalog()
    if name in catalog:
        return catalog[name]
    canonical = _ALIASES.get(name.strip().lower())
    if canonical is None:
        known = ", ".join(sorted(catalog))
        raise ProfileError(f"unknown GPU {name!r}; use one of: {known}")
    return catalog[canonical]
