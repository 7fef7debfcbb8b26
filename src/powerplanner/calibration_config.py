"""``planner.calibration``: the online calibration's configuration (docs/configuration.md; docs/planner.md,
"Calibration"). Apart from config.py, which is at its size limit; the core's values are
:class:`powerplanner.planning.calibration.CalibrationSettings`, built in core_settings.py."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from powerplanner.input_schema import InputModel

_Std = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
_Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class CalibrationConfig(InputModel):
    """Learn each role's response to the cap from telemetry and plan with the learned profile."""

    enabled: bool = Field(False, description="Policy ours plans with the profile learned online (off: the given "
                          "profile, as before). Baselines never learn; the ours-calibrated policy always does.")
    probing: bool = Field(True, description="Probe one cap level next to the cap in force, where the belief is "
                          "uncertain, while latency keeps probe_margin below its target and the budget allows.")
    learn_draw: bool = Field(False, description="Also learn idle and natural draw from the measured draw. Off by "
                             "default: the busy fraction is estimated from load over modelled throughput, which "
                             "misreads a decode GPU that is busy whenever any sequence runs.")
    prior_scale_std: _Std = Field(0.1, description="Prior std of the latency scale at full clock (1 = the "
                                  "profile's latency).")
    prior_share_std: _Std = Field(0.3, description="Prior std of the compute share (the cap model's assumption).")
    latency_noise: _Std = Field(0.08, description="Std of one window's observed latency ratio.")
    deadband: _Fraction = Field(0.04, description="Plan with a role's belief once its slowdown departs this far "
                                "(and two std) from the profile's at some cap; below it the given profile stays.")
    probe_margin: _Fraction = Field(0.25, description="Probe only while observed latency <= (1 - this) x target.")
    probe_hold_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = Field(
        60.0, description="How long a probe holds its cap.")
    probe_interval_s: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = Field(
        300.0, description="Quiet time after a probe before the next.")
    probe_min_std: _Std = Field(0.03, description="Probe only where the predicted slowdown's std exceeds this.")
    departure_fraction: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = Field(
        0.1, description="A learned constant this far (relative) from the profile's raises a CalibrationDeparted "
        "Event and sets powerplanner_calibration_departed.")
