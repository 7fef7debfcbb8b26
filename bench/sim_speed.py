"""How fast the simulator runs: Azure conv at rate scale 10 (~194k requests, ~1 h) with a planner in the loop.

Prints one JSON object: {"simulated_s", "wall_s", "sim_seconds_per_wall_second", "requests", "completed",
"peak_rss_mb", ...}. One process, one core (BLAS threads pinned to 1). The goal is >= 200 simulated seconds per
wall second and < 1 GB peak RSS.

    .venv/bin/python bench/sim_speed.py [--trace PATH] [--rate-scale 10] [--policy ours] [--budget-watts W]

The trace is read in place from ../shared/data/traces (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

# numpy is imported inside main(), after this: keep BLAS to the one core the benchmark claims
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
)

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(DEFAULT_TRACE))
    parser.add_argument("--rate-scale", type=float, default=10.0)
    parser.add_argument("--policy", default="ours")
    parser.add_argument("--profile", default="llama2-70b-h100-tp4")
    parser.add_argument("--budget-watts", type=float, default=40_000.0,
                        help="binding for this load: TDP caps on the replicas it needs would draw ~50 kW")
    parser.add_argument("--prefill-replicas", type=int, default=None, help="default: sized for the opening load")
    parser.add_argument("--decode-replicas", type=int, default=None, help="default: sized for the opening load")
    parser.add_argument("--profile-out", default=None, help="write a cProfile dump here")
    args = parser.parse_args(argv)

    from powerplanner.config import config_from_mapping
    from powerplanner.model.profiles import load_profile
    from powerplanner.sim.engine import simulate
    from powerplanner.sim.settings import SimSettings
    from powerplanner.sim.traces import read_azure_csv, scale_rate
    from powerplanner.sim.types import SimResult

    t0 = time.perf_counter()
    trace = scale_rate(read_azure_csv(args.trace), args.rate_scale)
    read_s = time.perf_counter() - t0
    config = config_from_mapping({"budget": {"watts": args.budget_watts}, "profile": {"name": args.profile},
                                  "planner": {"policy": args.policy}})
    profile = load_profile(name=args.profile)
    try:
        from powerplanner.core_settings import build_planner, engine_settings
    except ImportError:
        print("planning.planner is not available; cannot run a policy", file=sys.stderr)
        return 2
    planner = build_planner(config, profile, args.policy)
    settings = SimSettings(initial_prefill_replicas=args.prefill_replicas,
                           initial_decode_replicas=args.decode_replicas)

    def run() -> SimResult:
        return simulate(trace, profile, planner, engine_settings(config), settings, args.budget_watts,
                        oracle=planner.receives_oracle_load)

    t1 = time.perf_counter()
    if args.profile_out:
        import cProfile

        prof = cProfile.Profile()
        result: SimResult = prof.runcall(run)
        prof.dump_stats(args.profile_out)
    else:
        result = run()
    wall_s = time.perf_counter() - t1
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    r = result
    out = {
        "trace": trace.name,
        "policy": args.policy,
        "simulated_s": round(r.simulated_s, 3),
        "wall_s": round(wall_s, 3),
        "sim_seconds_per_wall_second": round(r.simulated_s / wall_s, 1),
        "trace_duration_s": round(trace.duration_s, 3),  # simulated_s also counts the drain after the last arrival
        "trace_seconds_per_wall_second": round(trace.duration_s / wall_s, 1),
        "requests": r.requests,
        "completed": r.completed,
        "planner_ticks": r.decisions,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "trace_read_s": round(read_s, 3),
        "seconds_over_budget": r.seconds_over_budget,
        "energy_kwh": round(r.energy_j / 3.6e6, 3),
        "reasons": r.reasons,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
