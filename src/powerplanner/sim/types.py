"""Values the simulator exchanges: a request trace in, a result with time series out.

Arrays, not per-request objects, because a one-hour trace at 10x holds ~200k requests and the
simulator must run hundreds of times faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival. ``arrival_s`` starts near 0; lengths are positive token counts."""

    name: str
    arrival_s: FloatArray
    isl_tokens: IntArray
    osl_tokens: IntArray

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0


@dataclass(frozen=True)
class TimeSeries:
    """Cluster state sampled at every planner tick (and at every actuation), for plots and checks."""

    time_s: FloatArray
    budget_watts: FloatArray
    provisioned_watts: FloatArray  # sum over holding replicas (ready+starting+draining) of GPUs x applied cap
    drawn_watts: FloatArray  # mean draw over the interval ending at time_s
    prefill_replicas: IntArray  # holding replicas
    decode_replicas: IntArray
    prefill_cap_watts: FloatArray
    decode_cap_watts: FloatArray
    # Added by the engine: requests arrived without a first token yet (queued, prefilling, KV transfer, waiting
    # for decode KV room) and requests decoding, at time_s.
    waiting_requests: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    decoding_requests: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class SimResult:
    """Everything one policy's run produced. Per-request arrays cover completed requests only."""

    policy: str
    simulated_s: float
    requests: int
    completed: int
    ttft_ms: FloatArray
    itl_ms: FloatArray  # per completed request: mean inter-token latency
    output_tokens: int
    energy_j: float  # integral of all GPUs' draw, idle and starting GPUs included
    gpu_seconds: float  # GPUs held (ready, starting, draining) integrated over time
    peak_provisioned_watts: float
    peak_drawn_watts: float
    seconds_over_budget: float  # time during which provisioned power exceeded the budget
    series: TimeSeries
    reasons: dict[str, int] = field(default_factory=dict)  # decision reason -> count
    wall_s: float = 0.0
    # Added by the engine (sim/engine.py):
    request_index: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # trace index per
    # completed request, aligned with ttft_ms / itl_ms (ascending)
    seconds_over_budget_after_cut: float = 0.0  # part of seconds_over_budget within the grace after a budget cut
    decisions: int = 0  # planner ticks
    unfinished_by_stage: dict[str, int] = field(default_factory=dict)  # where unfinished requests were at the end
    refused: int = 0  # requests longer (prompt + output) than the profile's context window, refused at arrival
    peak_gpus: int = 0  # most GPUs held at once (ready, starting, draining)
    # Added by the runner for a learning planner (sim/calibration_report.py): learned vs plant constants
    calibration: dict[str, Any] = field(default_factory=dict)
    decode_queue_max: int = 0  # most requests waiting at once for decode admission (KV room), whole run
