"""What the simulator reports of a learning planner: learned vs plant constants (docs/simulator.md, "Calibration").

The plant is known in the simulator, so each learned constant can be set beside the truth: the latency scale (the
plant's uncapped time over the profile's at the scenario's mean lengths, the per-GPU spread's mean pace included),
the compute share and the draw constants, each with the belief's standard deviation, and the simulated time after
which the belief settled (stayed within 5%).
"""

from __future__ import annotations

import math
from typing import Any

from powerplanner.model.capped import CappedProfile
from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import ROLES, Role
from powerplanner.planning.calibration import Calibrator, settled_s


def plant_latency_scale(profile: CappedProfile, plant: PowerProfile, role: Role, isl: float, osl: float,
                        gpu_variation: float) -> float:
    """The plant's uncapped time over the profile's, at the mean lengths; a per-GPU spread ``v`` adds the mean
    slowest-of-TP pace ``1 - v + 2v tp / (tp + 1)`` (the expected maximum of ``tp`` uniform draws)."""
    tp = profile.gpus_per_replica(role)
    spread = 1.0 - gpu_variation + 2.0 * gpu_variation * tp / (tp + 1) if gpu_variation > 0 else 1.0
    if not isinstance(plant, CappedProfile):
        return spread
    if role is Role.PREFILL:
        ratio = plant.prefill.time_s(isl) / profile.prefill.time_s(isl)
    else:
        context = isl + osl / 2
        ratio = plant.decode.itl_s(16.0, context) / profile.decode.itl_s(16.0, context)
    return ratio * spread


def calibration_json(calibrator: Calibrator, plant: PowerProfile, isl: float, osl: float,
                     gpu_variation: float) -> dict[str, Any]:
    """Per role and constant: learned (mean, std), the profile's and the plant's; plus settle time and probes."""
    profile = calibrator.prior
    out: dict[str, Any] = {"probes": calibrator.probes_started, "roles": {}}
    for role in ROLES:
        given = profile.cap_model(role)
        truth = plant.cap_model(role) if isinstance(plant, CappedProfile) else given
        real = {"latency_scale": plant_latency_scale(profile, plant, role, isl, osl, gpu_variation),
                "compute_share": truth.compute_share, "idle_watts": truth.idle_watts,
                "natural_draw_watts": truth.natural_draw_watts}
        prior = {"latency_scale": 1.0, "compute_share": given.compute_share, "idle_watts": given.idle_watts,
                 "natural_draw_watts": given.natural_draw_watts}
        params = {
            name: {"learned": mean, "std": std if math.isfinite(std) else None, "profile": prior[name],
                   "plant": real[name]}
            for name, (mean, std) in calibrator.beliefs[role].parameters().items()
        }
        out["roles"][role.value] = {"parameters": params, "settled_s": settled_s(calibrator.trail, role),
                                    "planned_with_belief": calibrator.departs(role)}
    return out


def calibration_markdown(calibration: dict[str, dict[str, Any]]) -> list[str]:
    """summary.md's section: one row per policy, role and constant."""
    if not calibration:
        return []
    lines = ["## Calibration: learned vs plant", "",
             "| policy | role | constant | learned | std | profile | plant |", "|---|---|---|---:|---:|---:|---:|"]
    for policy, report in calibration.items():
        for role, part in report["roles"].items():
            for name, p in part["parameters"].items():
                std = "n/a" if p["std"] is None else f"{p['std']:.3g}"
                lines.append(f"| {policy} | {role} | {name} | {p['learned']:.3g} | {std} | {p['profile']:.3g} | "
                             f"{p['plant']:.3g} |")
    settle = "; ".join(f"{policy} {role} {_s(part['settled_s'])}" for policy, report in calibration.items()
                       for role, part in report["roles"].items())
    lines += ["", f"Settled (within 5% for good): {settle}. Probes: "
              + ", ".join(f"{p} {r['probes']}" for p, r in calibration.items()) + ".", ""]
    return lines


def _s(value: float | None) -> str:
    return "never updated" if value is None else f"at {value / 60:.1f} simulated min"
