"""`powerplanner profile fit` against a real Prometheus backfilled (promtool) with history the simulator generated
under a known plant (tests/support/sim_history.py).

The plant is ``prefill-compute-bound``: prefill's compute share 1.0 where the given profile says 0.7342; the rest
equals the profile (latency scales 1.0, decode's compute share 0.2). 15 simulated minutes of ``ours-calibrated``
(which probes, so the caps move), 3 requests/s. The fit must recover, within 10%: prefill's compute share and
latency scale, decode's compute share and latency scale. Idle and natural draw are not learned by default
(``planner.calibration.learn_draw`` is off), so they are the prior's and not asserted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from powerplanner import contract
from powerplanner.cli import main
from powerplanner.config import PrometheusConfig
from powerplanner.live.history import HistoryReader
from powerplanner.live.observe import build_observation
from powerplanner.live.prometheus import PrometheusClient
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import ROLES, Role
from tests.fixtures.prometheus import PROMTOOL, PrometheusServer, find_prometheus_binary, start_prometheus
from tests.support.run_cli import error_lines
from tests.support.sim_history import MODEL, PROFILE, SimHistory, simulated_history

HISTORY_S = 900.0
TOLERANCE = 0.10
PLANT = {("prefill", "compute_share"): 1.0, ("prefill", "latency_scale"): 1.0,
         ("decode", "compute_share"): 0.2, ("decode", "latency_scale"): 1.0}

pytestmark = pytest.mark.skipif(find_prometheus_binary() is None or not Path(PROMTOOL).exists(),
                                reason="needs the Debian package `prometheus` (server and promtool)")


@dataclass
class Backfilled:
    server: PrometheusServer
    history: SimHistory
    end_s: float  # the last tick's Unix time
    config: Path


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    end = math.floor((time.time() - 1) / 5) * 5  # on the cap tick's grid, as the fit's steps are
    history = simulated_history("prefill-compute-bound", HISTORY_S, 3.0, end)
    workdir = tmp_path_factory.mktemp("fit")
    server = start_prometheus(workdir, [], backfill=history.openmetrics)
    config = workdir / "cfg.yaml"
    config.write_text(yaml.safe_dump({"budget": {"watts": 30000}, "sla": {"ttft_ms": 1000, "itl_ms": 60},
                                      "prometheus": {"url": "http://127.0.0.1:1", "model": MODEL, "retries": 0},
                                      "profile": {"name": PROFILE}}))
    yield Backfilled(server, history, end, config)
    server.stop()


def _fit(b: Backfilled, tmp_path: Path, *extra: str) -> int:
    return main(["profile", "fit", "--config", str(b.config), "--prometheus", b.server.url, "--since", "20m",
                 "--end", str(b.end_s), "--dgd", "llm", "-o", str(tmp_path / "learned.yaml"), *extra])


def test_fit_recovers_the_plant_within_10_percent(backfilled: Backfilled, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _fit(backfilled, tmp_path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["windows_found"] >= 13 and report["windows_used"]["prefill"]["latency"] >= 13
    params = report["parameters"]
    for (role, name), want in PLANT.items():
        got = params[role][name]["learned"]
        assert abs(got - want) <= TOLERANCE * want, (role, name, got, want)
    share = params["prefill"]["compute_share"]
    assert share["given"] == pytest.approx(0.7342) and share["learned"] > 0.85  # it moved: the prior is 0.7342
    learned = load_profile(path=str(tmp_path / "learned.yaml"))  # our format, loadable as a profile
    assert learned.cap_model(Role.PREFILL).compute_share == pytest.approx(share["learned"], rel=1e-6)
    assert learned.source.startswith("powerplanner profile fit: ") and "DGD default/llm" in learned.source


def test_the_history_is_what_the_planner_saw(backfilled: Backfilled) -> None:
    """Every step read back from Prometheus is the observation the simulated planner got at that tick (windows the
    history covers whole; the first window is left out)."""
    cfg = PrometheusConfig(url=backfilled.server.url, model=MODEL)
    client = PrometheusClient.from_config(cfg)
    try:
        namespace, steps = HistoryReader(client, cfg, "llm", None).read(
            backfilled.end_s - HISTORY_S, backfilled.end_s, 5.0, 60.0)
    finally:
        client.close()
    assert namespace == "default"
    seen = {round(o.time_s, 3): o for o in backfilled.history.observations}
    compared = 0
    for step in steps:
        want = seen[round(step.time_s, 3)]
        got = build_observation(step.time_s, 60.0, step.reading, step.state, want.budget_watts)
        if got.request_rate_per_s is None:
            continue
        compared += 1
        for field in ("request_rate_per_s", "isl_tokens", "osl_tokens", "ttft_ms", "itl_ms"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-6), (step.time_s, field)
        for role in ROLES:
            g, w = got.role(role), want.role(role)
            assert (g.ready_replicas, g.starting_replicas, g.draining_replicas, g.applied_cap_watts) == (
                w.ready_replicas, w.starting_replicas, w.draining_replicas, w.applied_cap_watts)
            if w.measured_draw_watts is not None:
                assert g.measured_draw_watts == pytest.approx(w.measured_draw_watts, abs=0.05)
    assert compared >= len(backfilled.history.observations) - 13  # all but the first window's


def test_too_little_history_says_how_much(backfilled: Backfilled, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _fit(backfilled, tmp_path, "--min-windows", "1000") == 2
    (line,) = error_lines(capsys)
    assert "usable window(s) of 60 s" in line and "need at least 1000" in line and "--since" in line
    found = int(line.split("found ")[1].split()[0])
    assert 13 <= found <= 16
    assert not (tmp_path / "learned.yaml").exists()


def test_an_unknown_dgd_names_the_planner_series(backfilled: Backfilled, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "fit", "--config", str(backfilled.config), "--prometheus", backfilled.server.url,
                 "--since", "20m", "--dgd", "other", "-o", str(tmp_path / "x.yaml")]) == 2
    (line,) = error_lines(capsys)
    assert 'powerplanner_worker_pod_info{deployment="other"}' in line and "planner's /metrics" in line


def test_missing_agent_series_name_the_metric_and_its_exporter(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    end = math.floor((time.time() - 1) / 5) * 5
    history = simulated_history("prefill-compute-bound", 300.0, 3.0, end)
    text = "\n".join(line for line in history.openmetrics.splitlines() if contract.AGENT_DRAW_WATTS not in line)
    server = start_prometheus(tmp_path / "prom", [], backfill=text + "\n")
    try:
        rc = main(["profile", "fit", "--prometheus", server.url, "--since", "10m", "--end", str(end),
                   "-o", str(tmp_path / "x.yaml")])
    finally:
        server.stop()
    assert rc == 2
    (line,) = error_lines(capsys)
    assert f'{contract.AGENT_DRAW_WATTS}{{pod_namespace="default"}}' in line and "power agent" in line


@pytest.mark.parametrize("since", ["2 hours", "0m", "h"])
def test_a_bad_duration_is_one_line(since: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "fit", "--since", since, "-o", str(tmp_path / "x.yaml")]) == 2
    (line,) = error_lines(capsys)
    assert "--since" in line and "2h" in line


def test_an_unreachable_prometheus_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "fit", "--prometheus", "http://127.0.0.1:1", "--since", "1h",
                 "-o", str(tmp_path / "x.yaml")]) != 0
    (line,) = error_lines(capsys)
    assert "prometheus" in line.lower() and "unreachable" in line


def test_the_config_prometheus_access_is_used(backfilled: Backfilled, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Basic auth from the config's prometheus section (the planner's own client): the fit reads; without the
    credentials it is one line naming the fields to set."""
    from tests.integration.live.test_prometheus_auth import PASSWORD, USER, bcrypt_hash

    hashed = bcrypt_hash(PASSWORD)
    if hashed is None:
        pytest.skip("no bcrypt: neither the `bcrypt` package nor a C library crypt with $2b$")
    server = start_prometheus(tmp_path / "auth", [], web_config=f"basic_auth_users:\n  {USER}: '{hashed}'\n",
                              ready_client={"auth": (USER, PASSWORD)}, backfill=backfilled.history.openmetrics)
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    base = yaml.safe_load(backfilled.config.read_text())
    with_auth = tmp_path / "auth.yaml"
    with_auth.write_text(yaml.safe_dump({**base, "prometheus": {**base["prometheus"], "url": server.url,
                                                                "basic_auth_username": USER,
                                                                "basic_auth_password_file": str(password)}}))
    without = tmp_path / "plain.yaml"
    without.write_text(yaml.safe_dump({**base, "prometheus": {**base["prometheus"], "url": server.url}}))
    args = ["profile", "fit", "--since", "20m", "--end", str(backfilled.end_s), "-o", str(tmp_path / "l.yaml")]
    try:
        assert main([*args, "--config", str(with_auth)]) == 0
        capsys.readouterr()
        assert main([*args, "--config", str(without)]) == 2
    finally:
        server.stop()
    (line,) = error_lines(capsys)
    assert "HTTP 401" in line and "prometheus.bearer_token_file or prometheus.basic_auth_username" in line


def test_the_text_summary_sets_learned_beside_given(backfilled: Backfilled, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _fit(backfilled, tmp_path) == 0
    out = capsys.readouterr().out
    share = next(line for line in out.splitlines() if "prefill" in line and "compute_share" in line)
    assert "given 0.7342" in share and "+-" in share
    assert "DGD default/llm" in out and f"wrote {tmp_path / 'learned.yaml'}" in out


def test_missing_frontend_series_name_the_metric_and_its_exporter(backfilled: Backfilled, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = yaml.safe_load(backfilled.config.read_text())
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**base, "prometheus": {**base["prometheus"], "model": "not-served"}}))
    assert main(["profile", "fit", "--config", str(other), "--prometheus", backfilled.server.url, "--since", "20m",
                 "--end", str(backfilled.end_s), "-o", str(tmp_path / "x.yaml")]) == 2
    (line,) = error_lines(capsys)
    assert 'dynamo_frontend_requests_total{model="not-served"}' in line and "dynamo frontend exports it" in line
