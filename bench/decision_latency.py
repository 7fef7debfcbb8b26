"""Decision latency of one planner tick (policy ``ours``), printed as JSON.

Setup: the built-in profile (default llama2-70b-h100-tp4), 64 cap levels per role, a 1,000-GPU pool,
replica bounds up to 250 per role, a budget that binds part of the time, and a load that changes every
tick (rate, ISL and OSL drawn from a seeded generator), so every tick is an adjustment tick that runs the
full optimiser, and sizes at a new ISL/OSL. Reported (wall clock, and this thread's CPU time, which is
what to read on a shared machine): p50/p99/mean/max over ``--ticks`` timed ticks after
``--warmup`` untimed ones, for the warm memo (the steady state of a long run) and, separately, the first
tick of a fresh planner (cold: every profile lookup computed) and cap ticks (5 s apart, replicas fixed;
``cap_tick_*``).

Pin to one core for the goal figure: ``taskset -c 0 .venv/bin/python bench/decision_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import build_planner
from powerplanner.model.profiles import load_profile
from powerplanner.model.values import Observation, RoleState


def _observation(i: int, rng: np.random.Generator, budget: float, step_s: float = 60.0) -> Observation:
    rate = float(rng.uniform(5, 120))
    return Observation(
        time_s=step_s * i,
        window_s=60.0,
        request_rate_per_s=rate,
        isl_tokens=float(rng.uniform(500, 4000)),
        osl_tokens=float(rng.uniform(100, 800)),
        ttft_ms=float(rng.uniform(100, 600)),
        itl_ms=float(rng.uniform(20, 60)),
        prefill=RoleState(int(rng.integers(1, 120)), applied_cap_watts=500.0),
        decode=RoleState(int(rng.integers(1, 120)), applied_cap_watts=400.0),
        budget_watts=budget * float(rng.uniform(0.5, 1.0)),
    )


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="llama2-70b-h100-tp4")
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--cap-levels", type=int, default=64)
    parser.add_argument("--gpu-pool", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    profile = load_profile(args.profile)
    budget = args.gpu_pool * 450.0
    config = config_from_mapping({
        "budget": {"watts": budget},
        "planner": {
            "cap_levels": args.cap_levels,
            "gpu_pool": args.gpu_pool,
            "adjustment_interval_s": 60,
            "cap_interval_s": 5,
            "prefill": {"min_replicas": 1, "max_replicas": 250},
            "decode": {"min_replicas": 1, "max_replicas": 250},
            "predictor": {"kind": "kalman"},
        },
    })
    rng = np.random.default_rng(args.seed)

    cold_ms: list[float] = []
    for i in range(20):
        fresh = build_planner(config, profile, "ours")
        o = _observation(i, rng, budget)
        t0 = time.perf_counter()
        fresh.tick(o)
        cold_ms.append((time.perf_counter() - t0) * 1e3)

    planner = build_planner(config, profile, "ours")
    for i in range(args.warmup):
        planner.tick(_observation(i, rng, budget))
    samples: list[float] = []
    cpu: list[float] = []
    limited = 0
    for i in range(args.warmup, args.warmup + args.ticks):
        o = _observation(i, rng, budget)
        c0 = time.thread_time()
        t0 = time.perf_counter()
        d = planner.tick(o)
        samples.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
        limited += int(d.budget_limited)
    # the steady state in production: cap ticks every 5 s, an adjustment every 60 s
    mixed = build_planner(config, profile, "ours")
    cap_ms: list[float] = []
    cap_cpu: list[float] = []
    for i in range(args.ticks):
        o = _observation(i, rng, budget, step_s=5.0)
        c0 = time.thread_time()
        t0 = time.perf_counter()
        d = mixed.tick(o)
        if not d.replicas_may_change:
            cap_ms.append((time.perf_counter() - t0) * 1e3)
            cap_cpu.append((time.thread_time() - c0) * 1e3)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(json.dumps({
        "p50_ms": round(_percentile(samples, 50), 3),
        "p99_ms": round(_percentile(samples, 99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "max_ms": round(max(samples), 3),
        "ticks": len(samples),
        "cpu_p50_ms": round(_percentile(cpu, 50), 3),
        "cpu_p99_ms": round(_percentile(cpu, 99), 3),
        "cap_tick_p50_ms": round(_percentile(cap_ms, 50), 3),
        "cap_tick_p99_ms": round(_percentile(cap_ms, 99), 3),
        "cap_tick_cpu_p99_ms": round(_percentile(cap_cpu, 99), 3),
        "cap_ticks": len(cap_ms),
        "cold_first_tick_p50_ms": round(_percentile(cold_ms, 50), 3),
        "cold_first_tick_max_ms": round(max(cold_ms), 3),
        "budget_limited_ticks": limited,
        "cap_levels_per_role": args.cap_levels,
        "gpu_pool": args.gpu_pool,
        "profile": args.profile,
        "policy": "ours",
        "cpus": affinity,
    }))


if __name__ == "__main__":
    main()
