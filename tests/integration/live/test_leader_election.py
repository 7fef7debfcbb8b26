"""Two planners on one deployment, against the Kubernetes emulator and the real Prometheus: only the holder of
the Lease writes; when it is cut off from the Lease (its other API calls still answer) it stops writing at its
renew deadline, before the other takes the Lease over, and the other then acts; a planner that stops releases
the Lease and the other takes over at once.

Each planner has its own User-Agent, so the emulator's log of applied writes (in the order the server applied
them) says who wrote what; "no interval where both act" is asserted on that log. Fake clocks, stepped by the
test: the electors run no thread (``elect_in_background=False``), time moves only when the test moves it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import generate_latest

from powerplanner.config import Config, config_from_mapping
from powerplanner.kube.errors import KubernetesError
from powerplanner.live.clock import FakeClock
from powerplanner.live.service import Service, build_service
from powerplanner.model.roles import Role
from tests.fixtures.k8s import CAP_ANNOTATION, LEASES, EmulatedCluster
from tests.support.dynamo_frontend import LivePrometheus
from tests.support.network import free_port
from tests.support.run_cli import config as run_config
from tests.support.run_cli import kubeconfig

pytest.importorskip("powerplanner.planning.planner", reason="the planner core (issue 3) is not in this tree yet")

pytestmark = pytest.mark.integration

GPUS = 4
LEASE_S, DEADLINE_S, RETRY_S = 15.0, 10.0, 2.0
LEASE_NAME = "powerplanner-llm"


BUDGET_WATTS, CUT_WATTS = 16000, 4000  # 2 workers x 4 GPUs x 700 W fit the first, not the second


def config_mapping(prom_url: str, identity_env: str, budget_watts: float) -> dict[str, Any]:
    return {
        "budget": {"watts": budget_watts, "reload_config": True,
                   "admin": {"enabled": True, "bind": "127.0.0.1:0", "token": "lease-token"}},
        "planner": {"adjustment_interval_s": 30, "cap_interval_s": 2,
                    "prefill": {"min_replicas": 1, "max_replicas": 4},
                    "decode": {"min_replicas": 1, "max_replicas": 4}},
        "prometheus": {"url": prom_url, "window_s": 5, "model": "lease", "dynamo_namespace": "dyn", "timeout_s": 2,
                       "retries": 0},
        "kubernetes": {"namespace": "default", "dgd_name": "llm", "emit_events": False},
        "profile": {"name": "llama2-70b-h100-tp4"},
        "leader_election": {"enabled": True, "identity_env": identity_env, "lease_duration_s": LEASE_S,
                            "renew_deadline_s": DEADLINE_S, "retry_period_s": RETRY_S},
    }


def write_config(path: Path, prom_url: str, identity_env: str, budget_watts: float) -> Config:
    """The planner's config file; its budget is re-read every tick (budget.reload_config), by both planners."""
    data = config_mapping(prom_url, identity_env, budget_watts)
    path.write_text(yaml.safe_dump(data))
    return config_from_mapping(data)


@dataclass
class Planner:
    name: str
    service: Service
    clock: FakeClock
    config_path: Path
    env: str

    @property
    def acting(self) -> bool:
        return self.service.loop.may_act()

    def leader_gauge(self) -> float:
        registry = self.service.loop.telemetry.registry
        value = registry.get_sample_value("powerplanner_leader")
        assert value is not None, generate_latest(registry).decode()
        return value


class Pair:
    """Two planners and the time they share (each its own fake clock, moved together)."""

    def __init__(self, a: Planner, b: Planner, cluster: EmulatedCluster, prom_url: str) -> None:
        self.a, self.b, self.cluster, self.prom_url = a, b, cluster, prom_url
        self.now_s = 0.0

    def cut_budget(self) -> None:
        """Both config files now say CUT_WATTS: whoever acts must cut the caps."""
        for planner in (self.a, self.b):
            write_config(planner.config_path, self.prom_url, planner.env, CUT_WATTS)

    def period(self, *, tick: bool = True) -> None:
        """One retry period: both electors try, both loops tick (each tick: read, decide, act if leading)."""
        for planner in (self.a, self.b):
            planner.clock.advance(RETRY_S)
            if planner.service.leader is not None:
                planner.service.leader.step()
            if tick:
                planner.service.loop.tick()
        self.now_s += RETRY_S

    def writers(self) -> list[tuple[str, str]]:
        """(planner, what) of every applied write, Lease writes marked, in the server's order."""
        out = []
        for agent, method, path in self.cluster.writes():
            if agent in (self.a.name, self.b.name):
                out.append((agent, "lease" if "/leases" in path else f"{method} {path}"))
        return out


def build(live: LivePrometheus, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
          name: str) -> Planner:
    env = f"POWERPLANNER_TEST_ID_{name.replace('-', '_').upper()}"
    monkeypatch.setenv(env, name)
    clock = FakeClock()
    path = tmp_path / f"{name}.yaml"
    cfg = write_config(path, live.server.url, env, BUDGET_WATTS)
    service = build_service(cfg, path, clock=clock, api_client=cluster.api_client(agent=name), serve_metrics=False,
                            pod_watch_read_timeout_s=0.5, elect_in_background=False)
    return Planner(name, service, clock, path, env)


@pytest.fixture
def pair(live_prometheus: LivePrometheus, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch,
         tmp_path: Path) -> Iterator[Pair]:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1, gpus_per_replica=GPUS)
    cluster.add_scaling_adapter("llm", "VllmDecodeWorker", 1)
    cluster.reconcile(gpus=GPUS)
    live_prometheus.frontend.touch("lease")
    a = build(live_prometheus, cluster, monkeypatch, tmp_path, "planner-a")
    b = build(live_prometheus, cluster, monkeypatch, tmp_path, "planner-b")
    try:
        yield Pair(a, b, cluster, live_prometheus.server.url)
    finally:
        b.service.close()
        a.service.close()


def holder(cluster: EmulatedCluster) -> str | None:
    lease = cluster.get(LEASES, "default", LEASE_NAME)
    return None if lease is None else str(lease["spec"].get("holderIdentity") or "")


def caps(cluster: EmulatedCluster) -> list[int]:
    """The cap annotation of every worker pod."""
    return sorted(int((p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION, 0)) for p in cluster.pods("llm"))


def fits_cut(cluster: EmulatedCluster) -> bool:
    return sum(GPUS * cap for cap in caps(cluster)) <= CUT_WATTS


def test_one_acts_the_other_observes_then_takes_over_a_partitioned_leader(pair: Pair) -> None:
    a, b, cluster = pair.a, pair.b, pair.cluster
    for _ in range(3):
        pair.period()
    assert holder(cluster) == a.name
    assert a.acting and not b.acting
    assert (a.leader_gauge(), b.leader_gauge()) == (1.0, 0.0)
    before = pair.writers()
    assert any(w == a.name and what != "lease" for w, what in before), before  # a capped the pods
    assert not [w for w in before if w[0] == b.name], before  # b wrote nothing, not even the Lease
    assert b.service.loop.last is not None and b.service.loop.last.decision is not None  # b still decides

    # Partition: a's Lease calls fail, its other calls still answer (the worst case: it could still write).
    cluster.inject(plural="leases", agent=a.name, status=503, times=10_000)
    last_renewal_s = pair.now_s
    while a.acting:
        pair.period()
    stopped_s = pair.now_s
    assert stopped_s - last_renewal_s <= DEADLINE_S
    assert holder(cluster) == a.name  # a has stopped acting, the Lease is not yet free
    pair.cut_budget()  # something a would act on, if it still acted
    pair.period()
    would = a.service.loop.last
    assert would is not None and would.decision is not None and would.decision.steps  # a would cut caps
    assert would.outcomes == () and not fits_cut(cluster)  # but executes nothing
    took_over_s = None
    for _ in range(int((LEASE_S + 2 * RETRY_S) / RETRY_S)):
        pair.period()
        if b.acting and took_over_s is None:
            took_over_s = pair.now_s
    assert took_over_s is not None, "b never took the Lease over"
    # not before the lease duration (a's writes may still be in flight until then), at b's next try after it
    assert LEASE_S <= took_over_s - last_renewal_s <= LEASE_S + RETRY_S
    assert stopped_s < took_over_s
    assert holder(cluster) == b.name and not a.acting
    assert (a.leader_gauge(), b.leader_gauge()) == (0.0, 1.0)
    assert fits_cut(cluster), caps(cluster)  # b acts

    # The partition heals: a reads b's Lease and stays a follower.
    cluster.clear_faults()
    for _ in range(3):
        pair.period()
    assert b.acting and not a.acting
    log = pair.writers()
    takeover = log.index((b.name, "lease"))
    assert not [w for w in log[takeover:] if w[0] == a.name], log[takeover:]  # a wrote nothing after
    assert not [w for w in log[:takeover] if w[0] == b.name], log[:takeover]  # b wrote nothing before
    assert any(w == b.name and what != "lease" for w, what in log[takeover:]), log[takeover:]


def test_a_stopping_leader_releases_and_the_other_takes_over_at_once(pair: Pair) -> None:
    a, b, cluster = pair.a, pair.b, pair.cluster
    pair.period()
    assert a.acting and not b.acting
    a.service.close()  # SIGTERM: the loop has stopped; the Lease is released
    assert holder(cluster) == ""
    pair.cut_budget()
    b.clock.advance(RETRY_S)
    assert b.service.leader is not None and b.service.leader.step()  # no lease duration to wait
    b.service.loop.tick()
    assert b.acting and holder(cluster) == b.name
    assert fits_cut(cluster), caps(cluster)
    log = pair.writers()
    release = max(i for i, w in enumerate(log) if w == (a.name, "lease"))
    assert not [w for w in log[:release] if w[0] == b.name]
    assert not [w for w in log[release + 1:] if w[0] == a.name]


def test_a_follower_sends_no_write_and_a_new_leader_reads_the_admin_budget_first(pair: Pair) -> None:
    a, b = pair.a, pair.b
    pair.period()
    with pytest.raises(KubernetesError, match="does not hold the leader Lease"):
        b.service.loop.actuator.scale(Role.DECODE, 2)  # refused before it is sent
    refused = b.service.admin_budget.change(1000.0)
    assert not refused.applied and refused.error is not None and "follower" in refused.error
    assert b.service.admin_budget.watts is None
    assert a.service.admin_budget.change(9000.0).persisted  # the leader's cut, in the ConfigMap
    assert not [w for w in pair.writers() if w[0] == b.name]
    a.service.close()
    b.clock.advance(RETRY_S)
    assert b.service.leader is not None and b.service.leader.step()
    assert b.service.admin_budget.watts is None  # not yet: b reads it when its first tick as leader starts
    report = b.service.loop.tick()
    assert b.service.admin_budget.watts == 9000.0
    assert report.budget is not None and report.budget.watts == 9000.0


def test_the_process_leads_serves_healthz_and_releases_the_lease_on_sigterm(
        tmp_path: Path, live_prometheus: LivePrometheus, cluster: EmulatedCluster) -> None:
    """`powerplanner run` itself, with its elector thread and the real clock: it takes the Lease, says so on
    /metrics, answers /healthz, and on SIGTERM gives the Lease up (holder "") and exits 0."""
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    port = free_port()
    path = run_config(tmp_path, live_prometheus.server.url, kubeconfig(tmp_path, cluster.url),
                      serve={"metrics_bind": f"127.0.0.1:{port}"},
                      leader_election={"enabled": True, "identity_env": "POD_NAME"})
    env = {**os.environ, "POD_NAME": "planner-proc"}
    proc = subprocess.Popen([sys.executable, "-m", "powerplanner.cli", "run", "--config", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        text = ""
        for _ in range(300):  # until it says it leads (or the process died)
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
                if "powerplanner_leader 1.0" in text:
                    break
            time.sleep(0.1)
        assert "powerplanner_leader 1.0" in text, text[-2000:] if proc.poll() is None else proc.communicate()[0]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).text == "ok\n"
        assert holder(cluster) == "planner-proc"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and b"Traceback" not in out, out.decode()[-2000:]
        assert holder(cluster) == ""  # released: a successor need not wait the lease duration
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_leader_elected_again_first_reads_what_the_other_changed_meanwhile(pair: Pair) -> None:
    """a leads, loses the Lease to b (partition), b cuts the admin budget; when b stops, a wins a NEW term and
    re-reads the admin budget from its ConfigMap before it acts: it plans with b's cut, not its old value."""
    a, b, cluster = pair.a, pair.b, pair.cluster
    pair.period()
    assert a.acting and a.service.leader is not None and a.service.leader.term == 1
    cluster.inject(plural="leases", agent=a.name, status=503, times=10_000)
    while not b.acting:
        pair.period()
    cluster.clear_faults()
    assert b.service.admin_budget.change(3000.0).persisted
    pair.period()
    assert a.service.admin_budget.watts is None  # a, a follower, has not read it yet
    b.service.close()
    pair.period()
    assert a.acting and a.service.leader.term == 2
    assert a.service.admin_budget.watts == 3000.0
    last = a.service.loop.last
    assert last is not None and last.budget is not None and last.budget.watts == 3000.0
