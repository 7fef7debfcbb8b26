"""Budget sources: lowest active wins; reload, admin endpoint, PromQL and schedule."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from powerplanner.config import AdminConfig, ScheduleEntry
from powerplanner.errors import UserError
from powerplanner.live.admin import AdminServer
from powerplanner.live.admin_settings import AdminSettings, parse_bind, read_token
from powerplanner.live.budget import (
    AdminBudget,
    CompositeBudget,
    ConfigFileBudget,
    PromQLBudget,
    ScheduleBudget,
    StaticBudget,
)
from powerplanner.live.prometheus import PrometheusClient

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_lowest_active_source_wins() -> None:
    admin = AdminBudget()
    budget = CompositeBudget([StaticBudget(10000), admin, ScheduleBudget([ScheduleEntry(start="08:00", watts=8000)])])
    b = budget.current(NOON)
    assert (b.watts, b.source) == (8000, "schedule")
    admin.set(5000)
    assert budget.current(NOON).watts == 5000
    admin.set(20000)  # an admin cannot lift the budget above the config value
    assert budget.current(NOON).watts == 8000
    admin.set(None)
    assert [r.watts for r in budget.current(NOON).readings] == [10000, None, 8000]


def test_schedule_wraps_to_previous_day() -> None:
    sched = ScheduleBudget([ScheduleEntry(start="22:00", watts=3000), ScheduleEntry(start="06:30", watts=9000)])
    assert sched.watts_at(datetime(2026, 1, 1, 5, 0, tzinfo=UTC)) == 3000
    assert sched.watts_at(datetime(2026, 1, 1, 6, 30, tzinfo=UTC)) == 9000
    assert sched.watts_at(datetime(2026, 1, 1, 23, 59, tzinfo=UTC)) == 3000
    assert ScheduleBudget([]).watts_at(NOON) is None


def test_config_reload_keeps_last_good_value(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("budget:\n  watts: 12000\n")
    src = ConfigFileBudget(path, 12000)
    assert src.read(NOON).watts == 12000
    path.write_text("budget:\n  watts: 9000\n")
    os.utime(path, ns=(1, 10**18))
    assert src.read(NOON).watts == 9000
    path.write_text("budget:\n  watts: -1\n")
    os.utime(path, ns=(1, 2 * 10**18))
    reading = src.read(NOON)
    assert reading.watts == 9000 and reading.error and "budget.watts" in reading.error


def test_promql_budget_needs_one_positive_number() -> None:
    answers = iter([
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "7000"]}]}},
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "NaN"]}]}},
    ])
    client = PrometheusClient("http://p", retries=0, transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=next(answers))))
    src = PromQLBudget(client, "facility_budget_watts")
    assert src.read(NOON).watts == 7000
    assert src.read(NOON).watts is None and src.read(NOON).error


def test_admin_endpoint_needs_the_token_and_validates_the_body() -> None:
    admin = AdminBudget()
    server = AdminServer(AdminSettings("127.0.0.1:0", "s3cret"), admin, lambda: {"decision": "x"}).start()
    host, port = server.address
    base = f"http://{host}:{port}"
    auth = {"Authorization": "Bearer s3cret"}
    try:
        assert httpx.put(f"{base}/budget", json={"watts": 100}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.put(f"{base}/budget", json={"watts": 100}, headers=wrong).status_code == 401
        assert admin.watts is None
        bad = httpx.put(f"{base}/budget", json={"watts": -3}, headers=auth)
        assert bad.status_code == 400 and "watts" in bad.json()["error"]
        assert httpx.put(f"{base}/budget", content=b"{", headers=auth).status_code == 400
        ok = httpx.put(f"{base}/budget", json={"watts": 4200}, headers=auth)
        assert ok.status_code == 200 and admin.watts == 4200
        assert httpx.get(f"{base}/decision", headers=auth).json() == {"decision": "x"}
        assert httpx.get(f"{base}/decision").status_code == 401
        assert httpx.delete(f"{base}/budget", headers=auth).status_code == 200 and admin.watts is None
        assert httpx.get(f"{base}/nope", headers=auth).status_code == 404
    finally:
        server.stop()


def test_token_file_and_bind_errors(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert read_token(AdminConfig(enabled=True, token_file=str(token))) == "abc"
    with pytest.raises(UserError, match="token_file"):
        read_token(AdminConfig(enabled=True, token_file=str(tmp_path / "missing")))
    with pytest.raises(UserError, match="host:port"):
        parse_bind("localhost", "budget.admin.bind")
    assert parse_bind(":8081", "x") == ("0.0.0.0", 8081)
    assert parse_bind("[::]:9401", "x") == ("::", 9401)
    assert parse_bind("[fe80::1]:80", "x") == ("fe80::1", 80)
    with pytest.raises(UserError, match=r"budget.admin.bind: .*needs brackets.*\[fe80::1\]:80"):
        parse_bind("fe80::1:80", "budget.admin.bind")
