"""`profile fit`'s pure parts: durations, which steps a history covers whole, and range answers (MockTransport);
the whole command runs against a real Prometheus in tests/integration/live/test_profile_fit.py."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.commands.profile_fit import parse_duration_s
from powerplanner.errors import UserError
from powerplanner.live.history import MAX_POINTS, _covered
from powerplanner.live.prometheus import PrometheusClient, PrometheusError


@given(h=st.integers(0, 48), m=st.integers(0, 59), s=st.integers(0, 59))
def test_durations_read_as_prometheus_writes_them(h: int, m: int, s: int) -> None:
    text = "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n)
    if not text:
        return
    assert parse_duration_s(text) == h * 3600 + m * 60 + s


@pytest.mark.parametrize("text", ["", "2 hours", "h", "10", "-5m", "0s", "1h-2m"])
def test_a_bad_duration_is_one_line_naming_the_form(text: str) -> None:
    with pytest.raises(UserError) as err:
        parse_duration_s(text)
    assert len(err.value.lines) == 1 and "--since" in err.value.lines[0]


def test_only_steps_a_whole_window_into_an_unbroken_run_are_covered() -> None:
    times = [float(t) for t in range(0, 200, 5)] + [float(t) for t in range(400, 500, 5)]
    covered = _covered(times, 5.0, 60.0)
    assert min(covered) == 60.0  # the first window is partial
    assert 395.0 not in covered and 455.0 not in covered and 460.0 in covered  # a gap starts a new run
    assert covered <= set(times)


@given(step=st.sampled_from([1.0, 5.0, 15.0, 60.0]), n=st.integers(0, 60))
def test_a_step_never_covers_more_than_the_history_before_it(step: float, n: int) -> None:
    times = [i * step for i in range(n)]
    for t in _covered(times, step, 60.0):
        assert t - times[0] >= 60.0 - 1e-3


def test_range_queries_parse_matrices_and_nan_is_no_data() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"pod_name": "a"}, "values": [[100.0, "1.5"], [105.0, "NaN"]]}]}})

    client = PrometheusClient("http://prom:9090", retries=0, transport=httpx.MockTransport(handler))
    (series,) = client.query_range("up", 100.0, 105.0, 5.0)
    assert series.labels == {"pod_name": "a"} and series.points == ((100.0, 1.5), (105.0, None))
    assert seen[0]["step"] == "5" and seen[0]["start"] == "100.000"
    assert MAX_POINTS < 11_000  # Prometheus' own limit per series


def test_a_range_answer_without_a_matrix_is_garbage() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    client = PrometheusClient("http://prom:9090", retries=0, transport=httpx.MockTransport(handler))
    with pytest.raises(PrometheusError) as err:
        client.query_range("up", 0.0, 10.0, 5.0)
    assert err.value.kind == "garbage"


def test_a_long_range_is_asked_in_chunks_and_merged_by_labels() -> None:
    from powerplanner.config import PrometheusConfig
    from powerplanner.live.history import HistoryReader
    from powerplanner.live.prometheus import RangeSeries

    calls: list[tuple[float, float]] = []

    class Client:
        def query_range(self, promql: str, start_s: float, end_s: float, step_s: float) -> list[RangeSeries]:
            calls.append((start_s, end_s))
            n = round((end_s - start_s) / step_s) + 1
            return [RangeSeries({"a": "1"}, tuple((start_s + i * step_s, 1.0) for i in range(n)))]

    reader = HistoryReader(Client(), PrometheusConfig(), "llm", None)  # type: ignore[arg-type]
    (series,) = reader._range("up", (0.0, 25_000.0, 1.0))
    assert len(calls) == 3 and all((e - s) / 1.0 + 1 <= MAX_POINTS for s, e in calls)
    times = [t for t, _ in series.points]
    assert times == [float(t) for t in range(25_001)]  # every step once, in order
