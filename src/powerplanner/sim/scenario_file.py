"""YAML scenario files: the pydantic model of the file, its validation into a :class:`Scenario`, and
:func:`load_scenario` (a built-in name or a file).

pydantic lives here, at the edge: every problem in a file becomes one line of a
:class:`~powerplanner.errors.ConfigError` naming the field, and the rest of the simulator receives the frozen
:class:`~powerplanner.sim.scenarios.Scenario`. The format is documented field by field in docs/simulator.md
("Scenario file format").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from powerplanner.errors import ConfigError, validation_lines
from powerplanner.input_files import read_yaml
from powerplanner.input_schema import InputModel, PositiveFloat
from powerplanner.model.plant import parse_plant
from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.scenarios import DEFAULT_PROFILE, Scenario, SyntheticSpec, TraceSpec, builtin_scenarios
from powerplanner.sim.traces.builtin import BUILTIN_TRACE_NAMES
from powerplanner.sim.traces.lengths import FixedLengths, LengthDistribution, LognormalLengths
from powerplanner.sim.traces.limits import MAX_SPAN_S
from powerplanner.sim.traces.shapes import BurstShape, ConstantShape, DiurnalShape, ProductShape, RateShape, StepShape


class _Strict(InputModel):
    """Strict, like every input model (powerplanner.input_schema)."""


SpanSeconds = Annotated[float, Field(gt=0, le=MAX_SPAN_S, allow_inf_nan=False)]
"""A trace duration: at most the span the simulator replays (powerplanner.sim.traces.limits.MAX_SPAN_S, 8 days)."""


class _LognormalModel(_Strict):
    mean: PositiveFloat = Field(description="Mean tokens.")
    p99: PositiveFloat = Field(description="99th percentile tokens (must exceed the mean).")
    max: Annotated[int, Field(ge=1)] = Field(32768, description="Clip samples to at most this many tokens.")


class _LengthModel(_Strict):
    lognormal: _LognormalModel | None = None
    fixed: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> _LengthModel:
        if (self.lognormal is None) == (self.fixed is None):
            raise ValueError("give exactly one of lognormal: {mean, p99} or fixed: N")
        return self

    def build(self) -> LengthDistribution:
        if self.fixed is not None:
            return FixedLengths(self.fixed)
        assert self.lognormal is not None
        return LognormalLengths(self.lognormal.mean, self.lognormal.p99, max_tokens=self.lognormal.max)


class _ShapeModel(_Strict):
    kind: Literal["constant", "diurnal", "step", "burst"]
    period_s: PositiveFloat | None = None
    amplitude: Annotated[float, Field(ge=0, lt=1)] = 0.5
    phase: float = 0.0
    starts_s: list[Annotated[float, Field(ge=0)]] = Field(default_factory=list)
    levels: list[Annotated[float, Field(ge=0)]] = Field(default_factory=list)
    width_s: PositiveFloat = 60.0
    factor: Annotated[float, Field(ge=0)] = 3.0

    def build(self, duration_s: float) -> RateShape:
        if self.kind == "constant":
            return ConstantShape()
        if self.kind == "diurnal":
            return DiurnalShape(self.period_s or duration_s, self.amplitude, self.phase)
        if self.kind == "step":
            return StepShape(tuple(self.starts_s) or (0.0,), tuple(self.levels) or (1.0,))
        return BurstShape(tuple(self.starts_s), self.width_s, self.factor)


class _SyntheticModel(_Strict):
    duration_s: SpanSeconds
    mean_rate_per_s: PositiveFloat
    isl: _LengthModel
    osl: _LengthModel
    shape: list[_ShapeModel] = Field(default_factory=list, description="Shapes multiplied together.")


class _TraceModel(_Strict):
    builtin: str | None = None
    path: str | None = None
    synthetic: _SyntheticModel | None = None

    @model_validator(mode="after")
    def _one(self) -> _TraceModel:
        if sum(x is not None for x in (self.builtin, self.path, self.synthetic)) != 1:
            raise ValueError("give exactly one of builtin, path, synthetic")
        if self.builtin is not None and self.builtin not in BUILTIN_TRACE_NAMES:
            raise ValueError(f"unknown built-in trace; use one of {', '.join(BUILTIN_TRACE_NAMES)}")
        return self


class _BudgetModel(_Strict):
    watts: PositiveFloat | None = None
    fraction_of_dynamo_sla_peak: PositiveFloat | None = None

    @model_validator(mode="after")
    def _one(self) -> _BudgetModel:
        if (self.watts is None) == (self.fraction_of_dynamo_sla_peak is None):
            raise ValueError("give exactly one of watts or fraction_of_dynamo_sla_peak")
        return self


class _PoolModel(_Strict):
    gpus: Annotated[int, Field(ge=1)] | None = None
    fraction_of_dynamo_sla_peak: PositiveFloat | None = None

    @model_validator(mode="after")
    def _one(self) -> _PoolModel:
        if (self.gpus is None) == (self.fraction_of_dynamo_sla_peak is None):
            raise ValueError("give exactly one of gpus or fraction_of_dynamo_sla_peak")
        return self


class _SlaModel(_Strict):
    ttft_ms: PositiveFloat = 500.0
    itl_ms: PositiveFloat = 50.0


class ScenarioFile(_Strict):
    """The YAML scenario file (documented field by field in docs/simulator.md)."""

    name: str | None = None
    description: str = ""
    trace: _TraceModel
    rate_scale: PositiveFloat = 1.0
    duration_s: SpanSeconds | None = None
    compress_gaps_s: PositiveFloat | None = None
    budget: _BudgetModel | None = None
    gpu_pool: _PoolModel | None = None
    sla: _SlaModel = Field(default_factory=lambda: _SlaModel())
    profile: str = DEFAULT_PROFILE
    profile_gpu: str | None = None
    plant: str = Field("", description="Simulated hardware: a preset or ROLE.KEY=VALUE overrides (docs/simulator.md).")
    policies: list[str] | None = None
    planner: dict[str, Any] = Field(default_factory=dict)
    sim: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0


def scenario_from_mapping(data: Any, source: str, base_dir: Path | None = None) -> Scenario:
    """Validate a parsed scenario mapping; raise :class:`ConfigError` with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a scenario file holds a YAML mapping (got {type(data).__name__})")
    try:
        model = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(*validation_lines(exc, source, docs="docs/simulator.md")) from None
    t = model.trace
    if t.path is not None:
        path = Path(t.path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        spec = TraceSpec(path=str(path))
    elif t.synthetic is not None:
        syn = t.synthetic
        shapes = tuple(s.build(syn.duration_s) for s in syn.shape)
        shape: RateShape = shapes[0] if len(shapes) == 1 else ProductShape(shapes) if shapes else ConstantShape()
        spec = TraceSpec(synthetic=SyntheticSpec(syn.duration_s, syn.mean_rate_per_s, syn.isl.build(),
                                                 syn.osl.build(), shape))
    else:
        spec = TraceSpec(builtin=t.builtin)
    try:
        parse_plant(model.plant)
    except ConfigError as exc:
        raise ConfigError(*(f"{source}: {line}" for line in exc.lines)) from None
    scenario = Scenario(
        name=model.name or (Path(source).stem if source else "scenario"),
        description=model.description,
        trace=spec,
        sla=SlaTargets(ttft_ms=model.sla.ttft_ms, itl_ms=model.sla.itl_ms),
        rate_scale=model.rate_scale,
        duration_s=model.duration_s,
        compress_gaps_s=model.compress_gaps_s,
        budget_watts=model.budget.watts if model.budget else None,
        budget_fraction=model.budget.fraction_of_dynamo_sla_peak if model.budget else None,
        gpu_pool=model.gpu_pool.gpus if model.gpu_pool else None,
        gpu_pool_fraction=model.gpu_pool.fraction_of_dynamo_sla_peak if model.gpu_pool else None,
        profile=model.profile,
        profile_gpu=model.profile_gpu,
        plant=model.plant,
        planner=dict(model.planner),
        sim=dict(model.sim),
        policies=tuple(model.policies) if model.policies is not None else None,
        seed=model.seed,
        source=source,
    )
    scenario.config(scenario.budget_watts or 1.0)  # validate the planner overrides now, not in a worker
    return scenario


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a YAML scenario file (trace paths relative to the file)."""
    builtins = builtin_scenarios()
    if name_or_path in builtins:
        return builtins[name_or_path]
    p = Path(name_or_path).expanduser()
    names = ", ".join(sorted(builtins))
    not_found = f"scenario file not found; pass an existing YAML file or a built-in name ({names})"
    if not p.exists():
        if p.suffix.lower() in (".yaml", ".yml") or "/" in name_or_path:
            raise ConfigError(f"{p}: {not_found}")
        raise ConfigError(f"unknown scenario {name_or_path!r}; use a built-in name ({names}) or a YAML scenario file")
    data = read_yaml(p, ConfigError, not_found=not_found, what="scenario file")
    return scenario_from_mapping(data, str(p), base_dir=p.parent)
