"""Scenarios: everything one side-by-side comparison needs besides the policies.

A :class:`Scenario` names a trace (built-in, file or synthetic spec), a rate scale, a duration
limit, a power budget (absolute watts, or a fraction of what ``dynamo-sla`` provisions at its peak on
the same trace, so "a budget that binds" stays meaningful when the trace or profile changes), the SLA,
the GPU pool (absolute, or a fraction of the GPUs ``dynamo-sla`` holds at its unconstrained peak on the same
trace: every policy gets the same pool, sized by a baseline, never by ours), the profile and overrides of planner
and simulator settings. It is a frozen value; YAML scenario
files are validated with pydantic at the edge (:mod:`powerplanner.sim.scenario_file`), and every problem
becomes one line of a :class:`~powerplanner.errors.ConfigError` naming the field. The file format is in
docs/simulator.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from powerplanner.config import Config, config_from_mapping
from powerplanner.errors import ConfigError
from powerplanner.model.plant import parse_plant
from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.traces.builtin import builtin_trace
from powerplanner.sim.traces.lengths import LengthDistribution, LognormalLengths
from powerplanner.sim.traces.limits import MAX_SPAN_S
from powerplanner.sim.traces.operations import check_extent, compress_gaps, scale_rate, truncate
from powerplanner.sim.traces.readers import read_trace
from powerplanner.sim.traces.shapes import ConstantShape, DiurnalShape, RateShape
from powerplanner.sim.traces.synthetic import synthetic_trace
from powerplanner.sim.types import Trace

DEFAULT_PROFILE = "llama2-70b-h100-tp4"
DEFAULT_BUILTIN_DURATION_S = 1800.0

TRACE_BUDGET_FRACTION = 0.7
"""A trace given without a budget (``simulate --trace``, bench/planner_quality.py) gets this fraction of what
``dynamo-sla`` provisions at its unconstrained peak on it: a budget that binds at the peaks whatever the trace."""

POOL_FRACTION_OF_DYNAMO_PEAK = 1.0
"""The built-in scenarios' GPU pool, and a replayed trace's: the GPUs ``dynamo-sla`` holds at its unconstrained
peak (at TDP) on the same trace, i.e. a cluster sized for Dynamo's peak demand. The budget, lower, then binds;
no policy may hold more GPUs than that (docs/simulator.md, "GPU pool and cost")."""

# Long-context chat (docs/simulator.md, "Built-in scenarios"): the Mooncake conversation trace's published means
# (Qin et al., "Mooncake", FAST 2025; kvcache-ai/Mooncake, traces/conversation_trace.jsonl: mean input 12,035 and
# mean output 343 tokens); the lognormal's p99 (80k) and its 120k cut (Llama 3.1's 128k window less the output)
# are ours: they give the long tail the issue describes, they are not published figures.
LONG_CONTEXT_ISL = LognormalLengths(mean_tokens=12035.0, p99_tokens=80000.0, min_tokens=64, max_tokens=120000)
LONG_CONTEXT_OSL = LognormalLengths(mean_tokens=343.0, p99_tokens=1500.0, min_tokens=1, max_tokens=4096)
LONG_CONTEXT_RATE_PER_S = 80.0


@dataclass(frozen=True)
class SyntheticSpec:
    """A seeded Poisson trace: ``mean_rate_per_s x shape(t)`` over ``duration_s``."""

    duration_s: float
    mean_rate_per_s: float
    isl: LengthDistribution
    osl: LengthDistribution
    shape: RateShape = field(default_factory=ConstantShape)


@dataclass(frozen=True)
class TraceSpec:
    """Exactly one of: a built-in trace name, a trace file path, a synthetic spec."""

    builtin: str | None = None
    path: str | None = None
    synthetic: SyntheticSpec | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.builtin, self.path, self.synthetic)) != 1:
            raise ConfigError("trace: give exactly one of builtin, path, synthetic")

    def describe(self) -> str:
        if self.builtin is not None:
            return f"built-in:{self.builtin}"
        if self.path is not None:
            return self.path
        return "synthetic"


@dataclass(frozen=True)
class Scenario:
    """One comparison setting. ``budget_watts`` and ``budget_fraction`` are exclusive; with neither the
    budget is unlimited (1e12 W)."""

    name: str
    trace: TraceSpec
    sla: SlaTargets = field(default_factory=lambda: SlaTargets(ttft_ms=500.0, itl_ms=50.0))
    rate_scale: float = 1.0
    duration_s: float | None = None
    compress_gaps_s: float | None = None  # shorten every silence between requests to at most this
    budget_watts: float | None = None
    budget_fraction: float | None = None  # of dynamo-sla's peak provisioned power on this scenario
    # GPUs every policy may hold together: absolute, or a fraction of dynamo-sla's unconstrained peak GPUs on this
    # scenario's trace (rounded up); with neither, planner.gpu_pool if set, else unlimited.
    gpu_pool: int | None = None
    gpu_pool_fraction: float | None = None
    profile: str = DEFAULT_PROFILE
    profile_gpu: str | None = None
    plant: str = ""  # the simulated hardware (model/plant.py spec); empty: the planner's profile
    # Plain dicts (picklable for worker processes); treat them as read-only.
    planner: Mapping[str, Any] = field(default_factory=dict)
    sim: Mapping[str, Any] = field(default_factory=dict)
    policies: tuple[str, ...] | None = None
    seed: int = 0
    description: str = ""
    source: str = ""  # the scenario file, named in error messages

    def __post_init__(self) -> None:
        if self.budget_watts is not None and self.budget_fraction is not None:
            raise ConfigError(f"scenario {self.name}: give budget watts or a fraction, not both")
        if not (self.rate_scale > 0 and math.isfinite(self.rate_scale)):
            raise ConfigError(f"scenario {self.name}: rate_scale must be a positive number")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_SPAN_S:
            raise ConfigError(f"scenario {self.name}: duration must be more than 0 and at most {MAX_SPAN_S:g} s "
                              f"(8 days; got {self.duration_s:g}); e.g. --duration-s 3600")
        if self.compress_gaps_s is not None and not (self.compress_gaps_s > 0 and math.isfinite(self.compress_gaps_s)):
            raise ConfigError(f"scenario {self.name}: gap compression must be a positive number of seconds "
                              f"(got {self.compress_gaps_s:g}); e.g. --compress-gaps-s 60")
        if self.budget_watts is not None and not self.budget_watts > 0:
            raise ConfigError(f"scenario {self.name}: budget watts must be positive")
        if self.budget_fraction is not None and not self.budget_fraction > 0:
            raise ConfigError(f"scenario {self.name}: budget fraction must be positive")
        if self.gpu_pool is not None and self.gpu_pool_fraction is not None:
            raise ConfigError(f"scenario {self.name}: give a GPU pool or a pool fraction, not both")
        if self.gpu_pool is not None and not self.gpu_pool >= 1:
            raise ConfigError(f"scenario {self.name}: the GPU pool must be at least 1 GPU (got {self.gpu_pool})")
        fraction = self.gpu_pool_fraction
        if fraction is not None and not (fraction > 0 and math.isfinite(fraction)):
            raise ConfigError(f"scenario {self.name}: the GPU pool fraction must be a positive number")
        parse_plant(self.plant)  # a bad spec fails here, one line per item, before any worker starts

    # --- derived values ----------------------------------------------------------------------------------

    def load_trace(self) -> Trace:
        """The scenario's requests: read or generate, shorten long gaps, cut to the duration limit, then
        rate-scale. A trace file is then checked for its span and gaps (:func:`check_extent`), so the simulator
        never replays a user's trace without bound."""
        spec = self.trace
        if spec.builtin is not None:
            return self._compressed(builtin_trace(
                spec.builtin, duration_s=self.duration_s or DEFAULT_BUILTIN_DURATION_S,
                rate_scale=self.rate_scale, seed=self.seed,
            ))
        if spec.synthetic is not None:
            syn = spec.synthetic
            duration = min(syn.duration_s, self.duration_s) if self.duration_s else syn.duration_s
            return self._compressed(synthetic_trace(
                self.name, duration, syn.mean_rate_per_s * self.rate_scale, syn.isl, syn.osl, syn.shape, self.seed
            ))
        assert spec.path is not None
        trace = self._compressed(read_trace(spec.path))
        if self.duration_s is not None:
            trace = truncate(trace, self.duration_s)
        check_extent(trace, spec.path)
        return scale_rate(trace, self.rate_scale, seed=self.seed)

    def _compressed(self, trace: Trace) -> Trace:
        return trace if self.compress_gaps_s is None else compress_gaps(trace, self.compress_gaps_s)

    def config(self, budget_watts: float, gpu_pool: int | None = None) -> Config:
        """The planner configuration of this scenario at a given budget and GPU pool (``None``: the planner
        overrides' ``gpu_pool``, if any); the overrides are validated here."""
        planner = dict(self.planner) if gpu_pool is None else {**self.planner, "gpu_pool": gpu_pool}
        data: dict[str, Any] = {
            "sla": {"ttft_ms": self.sla.ttft_ms, "itl_ms": self.sla.itl_ms},
            "budget": {"watts": budget_watts},
            "planner": planner,
            "profile": {"name": self.profile} if self.profile_gpu is None else {"name": self.profile,
                                                                               "gpu": self.profile_gpu},
        }
        if _looks_like_path(self.profile):
            data["profile"] = {"name": None, "path": self.profile, "gpu": self.profile_gpu}
        return config_from_mapping(data, self.source or f"scenario {self.name}")

    def with_overrides(
        self,
        trace_path: str | None = None,
        rate_scale: float | None = None,
        budget_watts: float | None = None,
        seed: int | None = None,
        policies: tuple[str, ...] | None = None,
        duration_s: float | None = None,
        compress_gaps_s: float | None = None,
        plant: str | None = None,
        gpu_pool: int | None = None,
    ) -> Scenario:
        """The scenario with command-line overrides applied (``None`` keeps the scenario's value).

        A new trace replaces the scenario's rate scale, duration limit and gap compression too (they were
        chosen for the scenario's own trace): the file is replayed whole at its own rate unless ``rate_scale``,
        ``duration_s`` or ``compress_gaps_s`` is given. Its budget and GPU pool are derived from it
        (:data:`TRACE_BUDGET_FRACTION`, :data:`POOL_FRACTION_OF_DYNAMO_PEAK`) unless ``budget_watts`` or
        ``gpu_pool`` is given: the scenario's were sized for its own trace.
        """
        out = self
        if trace_path is not None:
            out = replace(out, trace=TraceSpec(path=trace_path), rate_scale=1.0, duration_s=None, compress_gaps_s=None,
                          budget_watts=None, budget_fraction=TRACE_BUDGET_FRACTION, gpu_pool=None,
                          gpu_pool_fraction=POOL_FRACTION_OF_DYNAMO_PEAK)
        if gpu_pool is not None:
            out = replace(out, gpu_pool=gpu_pool, gpu_pool_fraction=None)
        if rate_scale is not None:
            out = replace(out, rate_scale=rate_scale)
        if budget_watts is not None:
            out = replace(out, budget_watts=budget_watts, budget_fraction=None)
        if seed is not None:
            out = replace(out, seed=seed)
        if policies is not None:
            out = replace(out, policies=policies)
        if duration_s is not None:
            out = replace(out, duration_s=duration_s)
        if compress_gaps_s is not None:
            out = replace(out, compress_gaps_s=compress_gaps_s)
        if plant is not None:
            out = replace(out, plant=plant)
        return out


def _looks_like_path(profile: str) -> bool:
    return "/" in profile or profile.endswith((".yaml", ".yml", ".npz", ".json"))


# ----------------------------------------------------------------------------------------------------------
# Built-in scenarios


def builtin_scenarios() -> dict[str, Scenario]:
    """The scenarios that ship with the package. A function, not module state."""
    default = Scenario(
        name="default",
        description=(
            "Built-in Azure-conversation-like trace (published statistics, compressed diurnal swing and two "
            "bursts), llama2-70b on H100 TP4, a budget that binds at the peaks."
        ),
        trace=TraceSpec(builtin="default"),
        rate_scale=4.0,
        duration_s=1800.0,
        budget_watts=30000.0,
        gpu_pool_fraction=POOL_FRACTION_OF_DYNAMO_PEAK,
        sla=SlaTargets(ttft_ms=500.0, itl_ms=50.0),
        profile=DEFAULT_PROFILE,
        planner={"adjustment_interval_s": 60.0, "cap_interval_s": 5.0},
    )
    code = replace(
        default,
        name="code-like",
        description="Built-in trace with the Azure code statistics (long prompts, short answers) and bursts.",
        trace=TraceSpec(builtin="azure-code-like"),
    )
    return {s.name: s for s in (default, code, long_context_scenario())}


def long_context_scenario(duration_s: float = 1800.0) -> Scenario:
    """Long prompts on the 8B H200 profile: decode is bound by KV memory, not by ITL (docs/planner.md,
    "Decode KV footprint"). ``duration_s`` shortens it for tests."""
    return Scenario(
        name="long-context",
        description=(
            "Long-context chat: lognormal prompts with the Mooncake conversation trace's mean (12k tokens, tail "
            "to 120k), outputs ~340 tokens, 80 req/s with a diurnal swing from its trough, llama3.1-8b on H200 TP1, "
            "budget 0.7 x dynamo-sla's peak; SLA TTFT 2 s / ITL 50 ms."
        ),
        trace=TraceSpec(synthetic=SyntheticSpec(
            duration_s=duration_s, mean_rate_per_s=LONG_CONTEXT_RATE_PER_S, isl=LONG_CONTEXT_ISL,
            osl=LONG_CONTEXT_OSL, shape=DiurnalShape(period_s=1800.0, amplitude=0.3, phase=0.75),
        )),
        budget_fraction=0.7,
        gpu_pool_fraction=POOL_FRACTION_OF_DYNAMO_PEAK,
        sla=SlaTargets(ttft_ms=2000.0, itl_ms=50.0),
        profile="llama3.1-8b-h200-tp1",
        planner={"adjustment_interval_s": 60.0, "cap_interval_s": 5.0},
    )


def builtin_scenario_names() -> list[str]:
    return sorted(builtin_scenarios())

