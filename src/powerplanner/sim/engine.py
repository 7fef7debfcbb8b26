"""The discrete-event simulator's entry point: :func:`simulate` one policy on one trace.

Usage (what ``sim/runner.py`` does for each policy)::

    from powerplanner.sim.engine import simulate
    from powerplanner.core_settings import engine_settings
    from powerplanner.sim.settings import SimSettings
    result = simulate(trace, profile, planner, engine_settings(config), SimSettings(initial_prefill_replicas=4,
                      initial_decode_replicas=6), budget_watts=20_000.0, oracle=planner.receives_oracle_load,
                      progress=lambda fraction: bar.update(fraction))

The run is deterministic (no randomness, no clock reads except ``wall_s``). It imports nothing from
``planning/``: any object with ``policy_name`` and ``tick(obs, oracle_load=None) -> Decision`` drives it.
See :mod:`powerplanner.sim.cluster` for the request/power model and :mod:`powerplanner.sim.loop` for how
observations are built and decisions executed.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

import numpy as np

from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import Role
from powerplanner.sim.cluster import (
    DECODE,
    EV_CAP_APPLY,
    EV_DECODE_DONE,
    EV_KV_DONE,
    EV_PREFILL_DONE,
    EV_REPLICA_READY,
    EV_TICK,
    PREFILL,
    Cluster,
)
from powerplanner.sim.loop import ClosedLoop, TickingPlanner
from powerplanner.sim.settings import EngineSettings, SimSettings
from powerplanner.sim.types import SimResult, TimeSeries, Trace


def simulate(
    trace: Trace,
    profile: PowerProfile,
    planner: TickingPlanner,
    engine: EngineSettings,
    settings: SimSettings | None = None,
    budget_watts: float | Callable[[float], float] | None = None,
    oracle: bool = False,
    progress: Callable[[float], None] | None = None,
    plant: PowerProfile | None = None,
) -> SimResult:
    """Replay ``trace`` through a simulated prefill/decode cluster with ``planner`` in the loop.

    - ``budget_watts``: a constant, or a function of simulated time (seconds since the first arrival) that is
      read at every cap tick, the way the live loop reads its budget sources. None: ``engine.budget_watts``.
    - ``oracle``: pass the true load of the next adjustment interval to ``planner.tick`` as ``oracle_load``.
    - ``progress``: called after every planner tick with the fraction of the trace's duration simulated so far
      (0..1; the drain after the last arrival reports 1.0).
    - ``plant``: the simulated hardware (latency and draw of every GPU), when it differs from ``profile``, the
      planner's belief (model/plant.py). ``profile`` still sizes the starting deployment, as an operator who
      believes it would have. Same GPU and TP sizes as ``profile``. None: the GPUs follow ``profile``.

    The planner is ticked at t=0 and every ``engine.cap_interval_s``. The run ends when every request
    has completed, or ``settings.drain_limit_s`` after the last arrival; ``SimResult.completed < requests``
    then says how many did not finish (their latencies are not in the per-request arrays).
    """
    wall_start = time.perf_counter()
    settings = settings if settings is not None else SimSettings()
    budget_at = _budget_function(budget_watts if budget_watts is not None else engine.budget_watts)

    arrival = trace.arrival_s.astype(np.float64).tolist()
    isl = trace.isl_tokens.astype(np.int64).tolist()
    osl = trace.osl_tokens.astype(np.int64).tolist()
    n = len(arrival)
    prefix_isl = [0.0, *np.cumsum(trace.isl_tokens, dtype=np.float64).tolist()]
    prefix_osl = [0.0, *np.cumsum(trace.osl_tokens, dtype=np.float64).tolist()]

    replicas = _initial_replicas(trace, profile, engine, settings, float(budget_at(0.0)))
    caps = _initial_caps(profile, settings, replicas, budget_at(0.0))
    pool = settings.gpu_pool if settings.gpu_pool is not None else engine.gpu_pool
    if plant is not None and any(plant.gpus_per_replica(r) != profile.gpus_per_replica(r) for r in Role):
        raise ValueError("the plant must keep the profile's TP sizes: the planner's steps count its replicas' GPUs")
    cluster = Cluster(plant if plant is not None else profile, settings, arrival, isl, osl, caps, pool)
    loop = ClosedLoop(cluster, planner, engine, settings, budget_at, oracle, prefix_isl, prefix_osl)
    cluster.set_budget(0.0, float(budget_at(0.0)), 0.0)
    for role in (PREFILL, DECODE):
        for _ in range(replicas[role]):
            cluster.add_ready(role, 0.0)

    horizon_s = (arrival[-1] if n else 0.0) + settings.drain_limit_s
    end_s = _run_events(cluster, loop, arrival, horizon_s, engine.cap_interval_s, trace.duration_s, progress)
    cluster.accumulate(end_s)
    loop.sample(end_s)
    if progress is not None:
        progress(1.0)
    return _result(planner.policy_name, trace, cluster, loop, end_s, time.perf_counter() - wall_start)


def _run_events(cluster: Cluster, loop: ClosedLoop, arrival: list[float], horizon_s: float, cap_interval_s: float,
                duration_s: float, progress: Callable[[float], None] | None) -> float:
    """The event loop: arrivals in trace order, interleaved with the cluster's events and the planner's ticks,
    until every request has completed or ``horizon_s``. Returns the simulated end time. The hot path of a run
    (bench/sim_speed.py): names it calls per event are bound to locals."""
    n = len(arrival)
    heap = cluster.heap
    heappop = heapq.heappop
    i = 0
    next_arrival = arrival[0] if n else math.inf
    cluster.push(0.0, EV_TICK)
    tick_index = 0
    end_s = 0.0
    while True:
        if heap and heap[0][0] <= next_arrival:
            t, _, kind, payload, version = heappop(heap)
            if t > horizon_s:
                end_s = horizon_s
                break
            if kind == EV_DECODE_DONE:
                cluster.decode_done(payload, version, t)
            elif kind == EV_KV_DONE:
                cluster.kv_done(payload, t)
            elif kind == EV_PREFILL_DONE:
                cluster.prefill_done(payload, version, t)
            elif kind == EV_TICK:
                loop.tick(t)
                tick_index += 1
                cluster.push(tick_index * cap_interval_s, EV_TICK)
                if progress is not None:
                    progress(min(1.0, t / duration_s) if duration_s > 0 else 1.0)
            elif kind == EV_CAP_APPLY:
                loop.cap_applied(payload, t)
            elif kind == EV_REPLICA_READY:
                cluster.replica_ready(payload, version, t)
                loop.sample(t)
            end_s = t
            if cluster.completed + cluster.refused == n and i == n:
                break
        elif i < n:
            t = next_arrival
            cluster.arrive(i, t)
            i += 1
            next_arrival = arrival[i] if i < n else math.inf
            end_s = t
        else:  # pragma: no cover - the tick keeps the heap non-empty
            break
    return end_s


def _budget_function(budget: float | Callable[[float], float]) -> Callable[[float], float]:
    if callable(budget):
        return budget
    value = float(budget)
    return lambda _t: value


def _initial_replicas(
    trace: Trace, profile: PowerProfile, engine: EngineSettings, settings: SimSettings, budget_watts: float
) -> tuple[int, int]:
    """The deployment as it stands when the trace starts. Explicit settings win; otherwise each role is sized
    with Dynamo's rule at TDP (``ceil(demand / (SLA-bound throughput per GPU x GPUs x target utilisation))``) for
    the busiest window of true load that starts before any policy could have a new replica serving (first
    adjustment + replica start time), as an operator would have provisioned it: the same start for every
    policy, instead of a cold start at the minimum that every policy must first dig out of. Bounded by the
    replica bounds, the GPU pool and (at the lowest caps) the budget."""
    explicit = (settings.initial_prefill_replicas, settings.initial_decode_replicas)
    gpus = (profile.gpus_per_replica(Role.PREFILL), profile.gpus_per_replica(Role.DECODE))
    window_s = engine.window_s
    lowest, highest = engine.min_replicas, engine.max_replicas
    sized = list(lowest)
    if len(trace) and (explicit[0] is None or explicit[1] is None):
        tdp = profile.gpu.default_limit_watts
        util = engine.target_utilization
        # No policy can have a new replica serving before its first adjustment plus the start time, so size
        # for the busiest window that begins within that horizon.
        horizon_s = engine.adjustment_interval_s + settings.replica_start_s
        arrival = trace.arrival_s
        start_s = 0.0
        while True:
            lo = int(np.searchsorted(arrival, start_s, side="left"))
            hi = int(np.searchsorted(arrival, start_s + window_s, side="left"))
            if hi > lo:
                span_s = min(window_s, max(trace.duration_s - start_s, 1e-9)) if hi == len(trace) else window_s
                rate = (hi - lo) / max(span_s, 1e-9)
                isl = float(trace.isl_tokens[lo:hi].mean())
                osl = float(trace.osl_tokens[lo:hi].mean())
                p_tput = profile.prefill_throughput_tokens_per_s_per_gpu(isl, tdp, engine.sla_ttft_s)
                d_tput = profile.decode_throughput_tokens_per_s_per_gpu(isl + osl / 2.0, tdp, engine.sla_itl_s)
                if p_tput > 0:
                    sized[0] = max(sized[0], math.ceil(rate * isl / (p_tput * gpus[0] * util)))
                if d_tput > 0:
                    sized[1] = max(sized[1], math.ceil(rate * osl / (d_tput * gpus[1] * util)))
            start_s += window_s / 2.0
            if start_s > horizon_s or hi >= len(trace):
                break
    replicas: list[int] = []
    for k in (0, 1):
        given = explicit[k]
        replicas.append(given if given is not None else min(max(sized[k], lowest[k]), highest[k]))
    pool = settings.gpu_pool if settings.gpu_pool is not None else engine.gpu_pool
    floor_w = profile.gpu.min_limit_watts

    def too_big() -> bool:
        held = replicas[0] * gpus[0] + replicas[1] * gpus[1]
        return (pool is not None and held > pool) or held * floor_w > budget_watts

    adjustable = [k for k in (0, 1) if explicit[k] is None]
    while too_big():
        shrinkable = [k for k in adjustable if replicas[k] > lowest[k]]
        if not shrinkable:
            break
        replicas[max(shrinkable, key=lambda j: replicas[j])] -= 1
    return replicas[0], replicas[1]


def _initial_caps(
    profile: PowerProfile, settings: SimSettings, replicas: tuple[int, int], budget_watts: float
) -> tuple[float, float]:
    """Initial per-GPU caps: as given (or TDP), lowered uniformly when needed to start within the budget."""
    gpu = profile.gpu
    caps = [
        gpu.clamp(settings.initial_prefill_cap_watts or gpu.default_limit_watts),
        gpu.clamp(settings.initial_decode_cap_watts or gpu.default_limit_watts),
    ]
    gpus = [replicas[0] * profile.gpus_per_replica(Role.PREFILL), replicas[1] * profile.gpus_per_replica(Role.DECODE)]
    provisioned = gpus[0] * caps[0] + gpus[1] * caps[1]
    if provisioned > budget_watts > 0:
        scale = budget_watts / provisioned
        caps = [gpu.clamp(math.floor(c * scale)) for c in caps]
    return caps[0], caps[1]


def _result(policy: str, trace: Trace, cluster: Cluster, loop: ClosedLoop, end_s: float, wall_s: float) -> SimResult:
    ttft = np.asarray(cluster.ttft_s, dtype=np.float64)
    itl = np.asarray(cluster.itl_s, dtype=np.float64)
    done = ~np.isnan(itl)
    index = np.flatnonzero(done).astype(np.int64)
    series = TimeSeries(
        time_s=np.asarray(loop.ts_time, dtype=np.float64),
        budget_watts=np.asarray(loop.ts_budget, dtype=np.float64),
        provisioned_watts=np.asarray(loop.ts_prov, dtype=np.float64),
        drawn_watts=np.asarray(loop.ts_drawn, dtype=np.float64),
        prefill_replicas=np.asarray(loop.ts_prefill, dtype=np.int64),
        decode_replicas=np.asarray(loop.ts_decode, dtype=np.int64),
        prefill_cap_watts=np.asarray(loop.ts_prefill_cap, dtype=np.float64),
        decode_cap_watts=np.asarray(loop.ts_decode_cap, dtype=np.float64),
        waiting_requests=np.asarray(loop.ts_waiting, dtype=np.int64),
        decoding_requests=np.asarray(loop.ts_decoding, dtype=np.int64),
    )
    return SimResult(
        policy=policy,
        simulated_s=end_s,
        requests=len(trace),
        completed=cluster.completed,
        ttft_ms=ttft[done] * 1000.0,
        itl_ms=itl[done] * 1000.0,
        output_tokens=cluster.output_tokens,
        energy_j=cluster.energy_j,
        gpu_seconds=cluster.gpu_seconds,
        peak_gpus=cluster.peak_gpus,
        peak_provisioned_watts=cluster.peak_provisioned_watts,
        peak_drawn_watts=cluster.peak_drawn_watts,
        seconds_over_budget=cluster.over_budget_s,
        series=series,
        reasons=dict(loop.reasons),
        wall_s=wall_s,
        request_index=index,
        seconds_over_budget_after_cut=cluster.over_budget_after_cut_s,
        decisions=loop.decisions,
        unfinished_by_stage=cluster.unfinished_by_stage(),
        refused=cluster.refused,
        decode_queue_max=cluster.decode_queue_max,
    )
