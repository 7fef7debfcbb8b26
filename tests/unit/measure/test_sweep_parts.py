"""The sweep's pure parts: the cap grid, the busy time of overlapping requests, the busy draw, and the restore
on any error, on the in-memory GPU backend (agent/sim_backend.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.agent.gpu import GpuInfo
from powerplanner.errors import MeasureError
from powerplanner.measure.load import LoadResult, busy_s
from powerplanner.measure.sweep import CapMeasurement, cap_grid

GPU = GpuInfo(0, "GPU-0", "H100", 200.0, 700.0, 700.0)


def test_the_grid_spans_the_range_or_checks_the_caps_given() -> None:
    assert cap_grid([GPU], None, 6) == (200.0, 300.0, 400.0, 500.0, 600.0, 700.0)
    assert cap_grid([GPU], [500.0, 300.0, 500.0], 6) == (300.0, 500.0)
    narrow = GpuInfo(1, "GPU-1", "H100", 300.0, 650.0, 650.0)
    assert cap_grid([GPU, narrow], None, 2) == (300.0, 650.0)  # the range both GPUs of a TP group accept
    with pytest.raises(MeasureError, match=r"outside the range of GPU 0 \[200, 700\] W"):
        cap_grid([GPU], [150.0, 300.0], 6)
    with pytest.raises(MeasureError, match="at least 2 caps"):
        cap_grid([GPU], None, 1)


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)), max_size=12))
def test_busy_time_is_the_union_of_the_intervals(spans: list[tuple[float, float]]) -> None:
    intervals = [(a, a + d) for a, d in spans]
    total = busy_s(intervals)
    assert total <= sum(d for _, d in spans) + 1e-9
    assert total >= max((d for _, d in spans), default=0.0) - 1e-9
    if intervals:
        assert total <= max(b for _, b in intervals) - min(a for a, _ in intervals) + 1e-9


def test_busy_draw_takes_the_idle_gaps_out() -> None:
    load = LoadResult(requests=4, ttft_s=0.1, itl_s=0.01, output_tokens=40, duration_s=2.0, busy_s=1.5)
    m = CapMeasurement(400.0, load, energy_j=400.0 * 1.5 + 80.0 * 0.5, duration_s=2.0, idle_watts=80.0)
    assert m.busy_draw_watts == pytest.approx(400.0) and m.mean_draw_watts == pytest.approx(320.0)
    assert CapMeasurement(400.0, load, 640.0, 2.0).busy_draw_watts == pytest.approx(320.0)  # idle unknown
