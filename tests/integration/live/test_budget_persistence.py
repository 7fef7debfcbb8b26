"""A budget set through the admin endpoint survives a planner restart: the real service (``build_service``) with
its real ``kubernetes`` client against kmock's emulator and a real Prometheus. ``PUT /budget`` writes the
ConfigMap before it answers; a restarted service reads it back and plans with it from its first tick. When the
write fails, a raise is refused (503, not applied) and a cut is applied in memory (503, not persisted) and
stored on a later cap tick; when the read at start-up fails, the planner does not start."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from powerplanner.cli import main
from powerplanner.config import Config, config_from_mapping
from powerplanner.errors import EndpointError, UserError
from powerplanner.live.clock import FakeClock
from powerplanner.live.service import Service, build_service
from tests.fixtures.k8s import EmulatedCluster
from tests.integration.live.conftest import LivePrometheus
from tests.integration.live.test_run_cli import config, error_lines, kubeconfig

pytest.importorskip("powerplanner.planning.planner", reason="the planner core (issue 3) is not in this tree yet")

pytestmark = pytest.mark.integration

TOKEN = "persist-token"
CONFIGMAPS = "v1/configmaps"
STATE = "pp-powerplanner-budget"
BUDGET_WATTS = 16000.0
GPUS = 4


def make_config(prom_url: str) -> Config:
    return config_from_mapping({
        "budget": {"watts": BUDGET_WATTS, "reload_config": False,
                   "admin": {"enabled": True, "bind": "127.0.0.1:0", "token": TOKEN, "state_configmap": STATE}},
        "planner": {"adjustment_interval_s": 30, "cap_interval_s": 5},
        "prometheus": {"url": prom_url, "window_s": 5, "model": "persist", "dynamo_namespace": "dyn",
                       "timeout_s": 2, "retries": 1, "backoff_s": 0.05},
        "kubernetes": {"namespace": "default", "dgd_name": "llm"},
        "profile": {"name": "llama2-70b-h100-tp4"},
    })


class Planner:
    """Starts and restarts the planner service against one emulated cluster, as a pod would be restarted."""

    def __init__(self, live: LivePrometheus, cluster: EmulatedCluster) -> None:
        self.live = live
        self.cluster = cluster
        self.service: Service | None = None
        self.clock = FakeClock()

    def start(self) -> Service:
        self.stop()
        self.service = build_service(make_config(self.live.server.url), None, clock=self.clock,
                                     api_client=self.cluster.api_client(), serve_metrics=False, watch_pods=False)
        return self.service

    def stop(self) -> None:
        if self.service is not None:
            self.service.close()
            self.service = None

    def call(self, method: str, watts: float | None = None) -> httpx.Response:
        assert self.service is not None and self.service.admin_server is not None
        url = f"{self.service.admin_server.url}/budget"
        body = {"json": {"watts": watts}} if watts is not None else {}
        return httpx.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}, **body)  # type: ignore[arg-type]

    def tick_budget(self) -> tuple[float, str]:
        assert self.service is not None
        self.clock.advance(5)
        report = self.service.loop.tick()
        assert report.budget is not None
        return report.budget.watts, report.budget.source


@pytest.fixture
def planner(live_prometheus: LivePrometheus, cluster: EmulatedCluster) -> Iterator[Planner]:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1, gpus_per_replica=GPUS)
    cluster.reconcile(gpus=GPUS)
    live_prometheus.frontend.touch("persist")
    p = Planner(live_prometheus, cluster)
    yield p
    p.stop()


def stored(cluster: EmulatedCluster) -> dict[str, str] | None:
    obj = cluster.get(CONFIGMAPS, "default", STATE)
    return None if obj is None else dict(obj.get("data") or {})


def test_a_cut_survives_a_restart(planner: Planner, cluster: EmulatedCluster) -> None:
    planner.start()
    assert stored(cluster) is None and planner.tick_budget() == (BUDGET_WATTS, "config")
    resp = planner.call("PUT", 5000)
    assert resp.status_code == 200 and resp.json() == {"admin_watts": 5000.0, "applied": True, "persisted": True}
    data = stored(cluster)
    assert data is not None and data["budget_watts"] == "5000"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["updated_at"])

    planner.start()  # a restart: a new service, same cluster
    assert planner.service is not None and planner.service.admin_budget.watts == 5000.0
    assert planner.tick_budget() == (5000.0, "admin")  # from its very first tick
    body = planner.call("GET").json()
    assert body["admin_watts"] == 5000.0 and body["persisted"] is True and body["watts"] == 5000.0

    assert planner.call("PUT", 7000).status_code == 200  # a raise, still under the config value
    assert planner.call("DELETE").status_code == 200
    after = stored(cluster)
    assert after is not None and after["budget_watts"] == "none" and after["updated_at"] > data["updated_at"]
    planner.start()
    assert planner.service is not None and planner.service.admin_budget.watts is None
    assert planner.tick_budget() == (BUDGET_WATTS, "config")


def test_a_failed_write_refuses_a_raise_and_keeps_a_cut_in_memory(planner: Planner, cluster: EmulatedCluster) -> None:
    planner.start()
    assert planner.call("PUT", 6000).status_code == 200
    cluster.inject("PATCH", "configmaps", status=500, times=100)

    raised = planner.call("PUT", 9000)
    assert raised.status_code == 503 and raised.json()["applied"] is False and raised.json()["admin_watts"] == 6000
    assert "not applied" in raised.json()["error"] and "ConfigMap default/" + STATE in raised.json()["error"]
    cleared = planner.call("DELETE")
    assert cleared.status_code == 503 and cleared.json()["applied"] is False
    assert planner.tick_budget() == (6000.0, "admin") and stored(cluster)["budget_watts"] == "6000"  # type: ignore[index]

    cut = planner.call("PUT", 4000)
    assert cut.status_code == 503 and cut.json() == {"error": cut.json()["error"], "admin_watts": 4000.0,
                                                     "applied": True, "persisted": False}
    assert "lost if the planner restarts" in cut.json()["error"]
    assert planner.tick_budget() == (4000.0, "admin")  # in force at once
    assert stored(cluster)["budget_watts"] == "6000"  # type: ignore[index]
    assert planner.call("GET").json()["persisted"] is False

    cluster.clear_faults()
    assert planner.tick_budget() == (4000.0, "admin")  # this tick's read stores the cut
    assert stored(cluster)["budget_watts"] == "4000"  # type: ignore[index]
    assert planner.call("GET").json()["persisted"] is True
    planner.start()
    assert planner.tick_budget() == (4000.0, "admin")


def test_the_first_write_creates_the_configmap_even_when_raced(planner: Planner, cluster: EmulatedCluster) -> None:
    planner.start()

    def someone_creates_it(c: EmulatedCluster) -> None:
        c.put(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STATE, "namespace": "default"},
                           "data": {"budget_watts": "9999"}})

    cluster.inject("POST", "configmaps", status=409, before=someone_creates_it)
    assert planner.call("PUT", 5000).status_code == 200
    assert stored(cluster)["budget_watts"] == "5000"  # type: ignore[index]


def test_no_start_when_the_stored_budget_cannot_be_read(planner: Planner, cluster: EmulatedCluster) -> None:
    planner.start()
    assert planner.call("PUT", 5000).status_code == 200
    planner.stop()

    cluster.inject("GET", "configmaps", status=500, times=100)
    with pytest.raises(EndpointError) as down:
        planner.start()
    (line,) = down.value.lines
    assert "budget.admin.state_configmap" in line and f"ConfigMap default/{STATE}" in line and "500" in line
    assert "does not start" in line
    cluster.clear_faults()

    cluster.inject("GET", "configmaps", status=403, times=100)
    with pytest.raises(UserError) as err:
        planner.start()
    assert "configmaps" in err.value.lines[0] and "RBAC" in err.value.lines[0]
    cluster.clear_faults()

    cluster.patch(CONFIGMAPS, "default", STATE, {"data": {"budget_watts": "lots"}})
    with pytest.raises(UserError) as err:
        planner.start()
    assert "'lots' is not a plain positive decimal" in err.value.lines[0]

    cluster.patch(CONFIGMAPS, "default", STATE, {"data": {"budget_watts": "5000"}})
    planner.start()
    assert planner.tick_budget() == (5000.0, "admin")


def test_run_stops_with_one_line_when_the_stored_budget_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], live_prometheus: LivePrometheus, cluster: EmulatedCluster,
) -> None:
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1, gpus_per_replica=GPUS)
    cluster.reconcile(gpus=GPUS)
    cluster.inject("GET", "configmaps", status=503, times=100)
    admin = {"enabled": True, "bind": "127.0.0.1:0", "token": TOKEN, "state_configmap": STATE}
    path = config(tmp_path, live_prometheus.server.url, kubeconfig(tmp_path, cluster.url),
                  budget={"watts": BUDGET_WATTS, "admin": admin})
    assert main(["run", "--config", str(path), "--once"]) == 3
    (line,) = error_lines(capsys)
    assert "budget.admin.state_configmap" in line and "503" in line and "does not start" in line
    assert ("PATCH", f"/api/v1/namespaces/default/configmaps/{STATE}") not in cluster.requests()
