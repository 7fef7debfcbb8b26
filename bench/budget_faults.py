"""Every path of issue 11 ("the budget is a guarantee") in the default configuration against the fake peers.

For each path (tests/integration/e2e/budget_paths.py holds the scenarios, shared with the tests that assert
them) provisioned power, the sum of the limits in force on the deployment's GPUs read back from the fake NVML
state, is sampled every 50 ms against the budget (or the node's share of it). Prints one JSON object:

    {"paths": [{"name", "worst_ratio", "seconds_over", "samples", "detail"}, ...], "worst_ratio",
     "seconds_over", "paths_over_budget", "duration_s"}

The paths that wait out an agent resync (``long``) run alongside the others, each in its own world.

    .venv/bin/python bench/budget_faults.py [--only NAME ...] [--list] [--sequential]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the peers and the scenarios live in tests/
# Measure this tree's code, in this process and in the agent processes it starts (they inherit PYTHONPATH).
sys.path.insert(0, str(ROOT / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)


def quiet_teardown() -> None:
    """Each path closes its emulator's event loop with a watch or two still open; asyncio and aiohttp then
    report the pending tasks on stderr. They are the emulator's, not the system's under test: not reported."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda _unraisable: None


def main(argv: list[str] | None = None) -> int:
    from tests.fixtures.nvml import build_fake_nvml
    from tests.integration.e2e.budget_paths import PATHS, run_paths

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this path (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the paths and exit")
    parser.add_argument("--sequential", action="store_true", help="run the long paths one after the other too")
    args = parser.parse_args(argv)
    if args.list:
        for path in PATHS.values():
            print(f"{path.name}  (issue item {path.issue}{', long' if path.long else ''})")
        return 0
    unknown = [name for name in args.only if name not in PATHS]
    if unknown:
        print(f"unknown path(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2
    names = args.only or list(PATHS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="budget-faults-") as tmp:
        work = Path(tmp)
        try:
            lib_dir = build_fake_nvml(work / "fake-nvml")
        except RuntimeError as exc:
            print(f"cannot build the fake NVML library: {exc}", file=sys.stderr)
            return 2
        quiet_teardown()
        results = run_paths(names, lib_dir, work, side_by_side=not args.sequential,
                            on_result=lambda r: print(f"{r.name}: {r.worst_ratio:.3f}", file=sys.stderr))
    ordered = [results[n] for n in names]
    worst = max((r.worst_ratio for r in ordered), default=0.0)
    report = {
        "paths": [r.as_json() for r in ordered],
        "worst_ratio": round(worst, 4) if math.isfinite(worst) else None,
        "seconds_over": round(sum(r.seconds_over for r in ordered), 3),
        "paths_over_budget": [r.name for r in ordered if not r.within_budget],
        "duration_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
