"""Latency of one live tick of ``powerplanner run``: budget sources, the cluster read (DGD, adapters, pods),
nine Prometheus instant queries (five frontend; the agents' draw, applied limit and revision min and max, by
``pod_name``), the Planner's decision and the resulting patches. The fake agents export no revision, so the
planner's feedback is blind from the third tick (one more query then, in the warm-up: its diagnosis) and every
pod counts at its highest cap; the caps still follow the budget both ways.

Peers are the test ones: a real Prometheus (Debian package) scraping Dynamo-shaped frontend histograms and
the agent's power gauges, and kmock's Kubernetes emulator through the real ``kubernetes`` client (a v1alpha1
DGD, a decode scaling adapter, 4 prefill + 4 decode pods). The budget alternates every tick between two
values through the admin source, so every tick re-caps and patches every pod (the worst case for patches).
Planner time comes from a fake clock (5 s per tick), wall time is measured around ``LiveLoop.tick()``.

Prints one JSON object: {"p50_ms", "p99_ms", "mean_ms", "max_ms", "ticks", "patches_per_tick", ...}.
Goal: p99 < 200 ms.

    .venv/bin/python bench/live_tick.py [--ticks 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the peers live in tests/fixtures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    from tests.fixtures.k8s import EmulatedCluster
    from tests.fixtures.prometheus import serve_registry, start_prometheus
    from tests.integration.live.conftest import DynamoFrontend

    from powerplanner.config import config_from_mapping
    from powerplanner.live.clock import FakeClock
    from powerplanner.live.service import build_service

    frontend = DynamoFrontend.create()
    target = serve_registry(frontend.registry)
    workdir = Path(tempfile.mkdtemp(prefix="live-tick-"))
    prom = start_prometheus(workdir, [target.target], scrape_interval_s=0.5)
    cluster = EmulatedCluster()
    try:
        frontend.touch("bench")
        for i, pod in enumerate([f"p{i}" for i in range(4)] + [f"d{i}" for i in range(4)]):
            frontend.draw.labels(str(i), f"GPU-{i}", pod, "default", "main").set(300)
            frontend.limit.labels(str(i), f"GPU-{i}", pod, "default", "main").set(400)
        prom.wait_for_scrapes(1)
        for _ in range(50):
            frontend.serve("bench", 2000, 200, 0.2, 0.03)
        prom.wait_for_scrapes(2)

        cluster.add_dgd_v1alpha1(prefill_replicas=4, decode_replicas=4)
        cluster.add_scaling_adapter("llm", "VllmDecodeWorker", 4)
        cluster.reconcile()
        cfg = config_from_mapping({
            "budget": {"watts": 20000, "reload_config": False},
            "planner": {"adjustment_interval_s": 30, "cap_interval_s": 5,
                        "prefill": {"min_replicas": 4, "max_replicas": 4},
                        "decode": {"min_replicas": 4, "max_replicas": 4}},
            "prometheus": {"url": prom.url, "window_s": 30, "model": "bench", "dynamo_namespace": "dyn"},
            "kubernetes": {"namespace": "default", "dgd_name": "llm", "emit_events": False},
        })
        clock = FakeClock()
        service = build_service(cfg, None, clock=clock, api_client=cluster.api_client(), serve_metrics=False)
        loop = service.loop
        from powerplanner.live.budget import AdminBudget, CompositeBudget

        admin = AdminBudget()
        loop.budget = CompositeBudget([*loop.budget.sources, admin])
        durations_ms: list[float] = []
        patches: list[int] = []
        query_counts: list[int] = []
        parts: dict[str, list[float]] = {"planner": [], "prometheus": [], "kubernetes": []}
        current: dict[str, float] = {}

        def timed(part: str, fn):  # type: ignore[no-untyped-def]
            def wrapper(*a, **k):  # type: ignore[no-untyped-def]
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    current[part] = current.get(part, 0.0) + (time.perf_counter() - t0) * 1000.0
            return wrapper

        loop.planner.tick = timed("planner", loop.planner.tick)  # type: ignore[method-assign]
        loop.metrics.read = timed("prometheus", loop.metrics.read)  # type: ignore[method-assign]
        client = loop.metrics._client  # type: ignore[attr-defined]
        queries: list[str] = []
        plain_query = client.query

        def counted_query(promql: str, *a, **k):  # type: ignore[no-untyped-def]
            queries.append(promql)
            return plain_query(promql, *a, **k)

        client.query = counted_query
        for name in ("read_state", "scale", "set_cap"):
            setattr(loop.actuator, name, timed("kubernetes", getattr(loop.actuator, name)))
        for i in range(args.warmup + args.ticks):
            admin.set(7000.0 if i % 2 else 7800.0)
            clock.advance(5)
            current.clear()
            queries.clear()
            started = time.perf_counter()
            report = loop.tick()
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            if report.decision is None or not (report.observation and report.observation.source_ok):
                raise SystemExit(f"tick {i} failed: {report.errors}")
            if i >= args.warmup:
                durations_ms.append(elapsed_ms)
                patches.append(sum(o.pods_patched for o in report.outcomes))
                query_counts.append(len(queries))
                for part in parts:
                    parts[part].append(current.get(part, 0.0))
        service.close()
        ordered = sorted(durations_ms)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

        print(json.dumps({
            "p50_ms": round(pct(50), 2),
            "p99_ms": round(pct(99), 2),
            "mean_ms": round(statistics.fmean(ordered), 2),
            "max_ms": round(ordered[-1], 2),
            "ticks": len(ordered),
            "patches_per_tick": round(statistics.fmean(patches), 2),
            **{f"{part}_p50_ms": round(statistics.median(v), 2) for part, v in parts.items()},
            **{f"{part}_p99_ms": round(sorted(v)[min(len(v) - 1, round(0.99 * (len(v) - 1)))], 2)
               for part, v in parts.items()},
            "prometheus_queries_per_tick": round(statistics.fmean(query_counts), 2),
            "pods": 8,
        }))
    finally:
        cluster.close()
        prom.stop()
        target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
