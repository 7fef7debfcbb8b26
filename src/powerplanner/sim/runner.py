"""Run several policies on the same trace, profile and budget, side by side, in parallel processes.

Each policy is one :class:`PolicyJob`; a job is self-contained (trace arrays, scenario, budget) so it can
be pickled to a worker process, where the profile, planner and simulator are built fresh: nothing is
shared between policies except the inputs, so one policy cannot influence another's run. With one
worker, or one job, everything runs in this process (no pool start-up cost, easier to debug).

Progress travels from workers as ``(label, fraction)`` messages (the engine reports the fraction of the
trace's duration simulated so far) on a manager queue and is drawn as one rich progress bar per
policy on stderr.
"""

from __future__ import annotations

import math
import os
import queue as queue_module
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from powerplanner.errors import ConfigError, UserError
from powerplanner.model.plant import parse_plant
from powerplanner.sim.cost import Prices
from powerplanner.sim.metrics import PolicyMetrics, summarize
from powerplanner.sim.scenarios import Scenario
from powerplanner.sim.types import SimResult, Trace

UNLIMITED_BUDGET_WATTS = 1e12
"""Budget used to measure what ``dynamo-sla`` provisions when it is never constrained."""

ProgressFn = Callable[[float], None]
"""Called with the fraction (0..1) of the trace simulated so far."""


class QueueLike(Protocol):
    def put(self, item: Any) -> None: ...


@dataclass(frozen=True)
class PolicyJob:
    """One policy's run. ``label`` keys the results (e.g. ``dynamo-power@best`` for a second
    ``dynamo-power`` run at other static caps); it defaults to the policy name."""

    policy: str
    trace: Trace
    scenario: Scenario
    budget_watts: float
    static_caps_watts: Mapping[str, float] | None = None  # role name ("prefill"/"decode") -> watts per GPU
    label: str = ""
    gpu_pool: int | None = None  # None: the scenario's planner.gpu_pool, if any

    @property
    def key(self) -> str:
        return self.label or self.policy


RunOne = Callable[[PolicyJob, ProgressFn | None], SimResult]
"""Runs one job to a :class:`SimResult`; :func:`run_job` (the real simulator) unless a test injects one."""


def policy_names() -> tuple[str, ...]:
    """The planner's policies, in the order the comparison shows them."""
    from powerplanner.planning.registry import policy_names as registered

    return registered()


def check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    """Validate user-given policy names (one line per unknown name, naming the valid ones)."""
    known = policy_names()
    bad = [p for p in policies if p not in known]
    if bad:
        raise ConfigError(*(f"unknown policy {p!r}; choose from: {', '.join(known)}" for p in bad))
    if not policies:
        raise ConfigError(f"no policy chosen; pass --policies with some of: {', '.join(known)}")
    seen: list[str] = []
    for p in policies:
        if p not in seen:
            seen.append(p)
    return tuple(seen)


def sim_settings(scenario: Scenario) -> Any:
    """The simulator settings of a scenario: engine defaults with the scenario's ``sim`` overrides."""
    import dataclasses

    from powerplanner.sim.settings import SimSettings

    known = {f.name for f in dataclasses.fields(SimSettings)}
    unknown = [k for k in scenario.sim if k not in known]
    if unknown:
        raise ConfigError(
            *(f"scenario {scenario.name}: sim.{k}: unknown simulator setting; known: {', '.join(sorted(known))}"
              for k in unknown)
        )
    try:
        return dataclasses.replace(SimSettings(), **dict(scenario.sim))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scenario {scenario.name}: sim: {exc}; fix the simulator settings") from None


def run_job(job: PolicyJob, progress: ProgressFn | None = None) -> SimResult:
    """Build profile, plant, planner and settings for one job and run the simulator (in this process). The planner
    plans with the scenario's profile; the simulated GPUs follow the scenario's plant (model/plant.py)."""
    from powerplanner.core_settings import build_planner, engine_settings, profile_from_config
    from powerplanner.model.plant import build_plant
    from powerplanner.model.roles import Role
    from powerplanner.sim.engine import simulate

    scenario = job.scenario
    config = scenario.config(job.budget_watts, job.gpu_pool)
    profile = profile_from_config(config.profile)  # the planner's belief
    spec = parse_plant(scenario.plant)
    plant = build_plant(profile, spec)  # the simulated GPUs (the profile by default)
    settings = sim_settings(scenario)
    variation, seed = spec.gpu_variation()
    if variation > 0:
        settings = replace(settings, gpu_time_variation=variation, gpu_variation_seed=seed)
    caps = {Role(k): float(v) for k, v in job.static_caps_watts.items()} if job.static_caps_watts else None
    planner = build_planner(config, profile, job.policy, caps)
    started = time.perf_counter()
    result = simulate(
        job.trace, profile, planner, engine_settings(config), settings, job.budget_watts,
        oracle=planner.receives_oracle_load, progress=progress, plant=plant,
    )
    wall = time.perf_counter() - started
    if planner.calibration is not None:
        from powerplanner.sim.calibration_report import calibration_json

        mean_isl = float(job.trace.isl_tokens.mean()) if len(job.trace) else 1.0
        mean_osl = float(job.trace.osl_tokens.mean()) if len(job.trace) else 1.0
        result = replace(result, calibration=calibration_json(planner.calibration, plant, mean_isl, mean_osl,
                                                              variation))
    if job.label and job.label != result.policy:
        result = _relabel(result, job.label)
    if not result.wall_s:
        result = _with_wall(result, wall)
    return result


def _relabel(result: SimResult, label: str) -> SimResult:
    return replace(result, policy=label)


def _with_wall(result: SimResult, wall_s: float) -> SimResult:
    return replace(result, wall_s=wall_s)


def _run_in_worker(run_one: RunOne, job: PolicyJob, messages: QueueLike | None, every_s: float) -> SimResult:
    """Worker entry point: run the job, sending throttled progress messages."""
    last = [-math.inf]

    def report(fraction: float) -> None:
        if messages is None:
            return
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            messages.put((job.key, float(fraction)))

    try:
        return run_one(job, report)
    except UserError as exc:  # re-raised in the parent with its lines intact
        raise _PicklableUserError(type(exc).__name__, exc.lines) from None


class _PicklableUserError(Exception):
    """Carries a UserError's class name and lines across the process boundary."""

    def __init__(self, kind: str, lines: tuple[str, ...]) -> None:
        super().__init__(kind, lines)
        self.kind = kind
        self.lines = lines


def _reraise(exc: BaseException) -> None:
    if isinstance(exc, _PicklableUserError):
        import powerplanner.errors as errors

        cls = getattr(errors, exc.kind, UserError)
        raise cls(*exc.lines) from None
    raise exc


@dataclass
class _Bars:
    """Rich progress bars, one per job, on stderr (a no-op when disabled)."""

    enabled: bool
    labels: Sequence[str]
    _progress: Any = None
    _tasks: dict[str, Any] = field(default_factory=dict)
    _finished: set[str] = field(default_factory=set)

    def __enter__(self) -> _Bars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<22}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=False,
            )
            self._progress.start()
            for label in self.labels:
                self._tasks[label] = self._progress.add_task(label, total=1.0)
        return self

    def update(self, label: str, fraction: float) -> None:
        if self._progress is not None and label in self._tasks and label not in self._finished:
            self._progress.update(self._tasks[label], completed=min(max(fraction, 0.0), 1.0))

    def done(self, label: str) -> None:
        self._finished.add(label)  # late progress messages from the worker must not move the bar back
        if self._progress is not None and label in self._tasks:
            self._progress.update(self._tasks[label], completed=1.0)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def run_jobs(
    jobs: Sequence[PolicyJob],
    workers: int | None = None,
    show_progress: bool = False,
    run_one: RunOne = run_job,
) -> dict[str, SimResult]:
    """Run the jobs (in parallel processes when ``workers`` > 1), returning results by job key in job order."""
    if not jobs:
        return {}
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job labels must be unique")
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[str, SimResult] = {}
    if workers == 1:
        with _Bars(show_progress, keys) as bars:
            for job in jobs:
                results[job.key] = run_one(job, _bound(bars, job.key))
                bars.done(job.key)
        return {k: results[k] for k in keys}

    import multiprocessing
    import threading

    # fork is the cheapest start (workers inherit the imported modules), but forking a process that runs
    # other threads can copy a lock mid-use; then pay forkserver's start-up instead.
    context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    with context.Manager() as manager:
        before = set(multiprocessing.active_children())  # the manager: leave it to its context
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)
        try:
            messages = manager.Queue() if show_progress else None
            futures: dict[Future[SimResult], str] = {
                pool.submit(_run_in_worker, run_one, job, messages, 0.25): job.key for job in jobs
            }
            with _Bars(show_progress, keys) as bars:
                pending = set(futures)
                while pending:
                    done = {f for f in pending if f.done()}
                    for f in done:
                        pending.discard(f)
                        exc = f.exception()
                        if exc is not None:
                            _reraise(exc)
                        results[futures[f]] = f.result()
                        bars.done(futures[f])
                    if messages is not None:
                        _drain(messages, bars)
                    if pending:
                        _wait_a_little(pending, messages)
        except BaseException:
            # A failed job or Ctrl-C: the other simulations' results would be thrown away, so stop them now
            # instead of waiting minutes for them to finish.
            pool.shutdown(wait=False, cancel_futures=True)
            for child in set(multiprocessing.active_children()) - before:
                child.terminate()
            raise
        pool.shutdown(wait=True)
    return {k: results[k] for k in keys}


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback from every worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _bound(bars: _Bars, label: str) -> ProgressFn:
    def report(fraction: float) -> None:
        bars.update(label, fraction)

    return report


def _drain(messages: Any, bars: _Bars) -> None:
    while True:
        try:
            label, fraction = messages.get_nowait()
        except (queue_module.Empty, EOFError, OSError):
            return
        bars.update(label, fraction)


def _wait_a_little(pending: set[Future[SimResult]], messages: Any) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    wait(pending, timeout=0.1 if messages is not None else 1.0, return_when=FIRST_COMPLETED)


# ----------------------------------------------------------------------------------------------------------
# A whole comparison


@dataclass(frozen=True)
class Comparison:
    """The outcome of one side-by-side run: what results.json and the report are made of."""

    scenario: Scenario
    trace: Trace
    budget_watts: float
    results: dict[str, SimResult]
    metrics: dict[str, PolicyMetrics]
    wall_s: float
    budget_note: str = ""
    gpu_pool: int | None = None
    pool_note: str = ""
    prices: Prices = field(default_factory=Prices)

    @property
    def simulated_s(self) -> float:
        return max((r.simulated_s for r in self.results.values()), default=0.0)

    def to_json(self) -> dict[str, Any]:
        """Exactly the results.json schema: scenario, plant, budget_watts, gpu_pool, prices, simulated_s, wall_s,
        policies."""
        return {
            "scenario": self.scenario.name,
            "plant": parse_plant(self.scenario.plant).to_json(self.scenario.profile),
            "budget_watts": self.budget_watts,
            "gpu_pool": self.gpu_pool,
            "prices": {"gpu_hour_usd": self.prices.gpu_hour_usd, "energy_usd_per_kwh": self.prices.energy_usd_per_kwh,
                       "source": self.prices.source},
            "simulated_s": self.simulated_s,
            "wall_s": self.wall_s,
            "policies": {name: m.to_json() for name, m in self.metrics.items()},
            **({"calibration": self.calibration()} if self.calibration() else {}),
        }

    def calibration(self) -> dict[str, Any]:
        """Each learning policy's learned vs plant constants (sim/calibration_report.py)."""
        return {name: r.calibration for name, r in self.results.items() if r.calibration}


def compare(
    scenario: Scenario,
    policies: Sequence[str],
    trace: Trace | None = None,
    workers: int | None = None,
    show_progress: bool = False,
    run_one: RunOne = run_job,
    extra_jobs: Sequence[PolicyJob] = (),
    prices: Prices | None = None,
) -> Comparison:
    """Run ``policies`` (plus ``extra_jobs``, e.g. dynamo-power at other caps) on one scenario, every one with the
    same budget and GPU pool; cost at ``prices`` (default: the config's ``cost:`` defaults)."""
    started = time.perf_counter()
    if trace is None:
        trace = scenario.load_trace()
    from powerplanner.sim.limits import resolve_limits  # it runs its probe through this module's run_jobs

    limits = resolve_limits(scenario, trace, run_one=run_one, show_progress=show_progress)
    budget, pool = limits.budget_watts, limits.gpu_pool
    jobs = [PolicyJob(p, trace, scenario, budget, gpu_pool=pool) for p in policies]
    jobs += [replace(j, budget_watts=budget, gpu_pool=pool) for j in extra_jobs]
    results = run_jobs(jobs, workers=workers, show_progress=show_progress, run_one=run_one)
    prices = prices or scenario.config(budget, pool).cost.prices()
    metrics = {k: summarize(r, scenario.sla, prices) for k, r in results.items()}
    return Comparison(
        scenario=scenario, trace=trace, budget_watts=budget, results=results, metrics=metrics,
        wall_s=time.perf_counter() - started, budget_note=limits.budget_note, gpu_pool=pool, pool_note=limits.pool_note,
        prices=prices,
    )
