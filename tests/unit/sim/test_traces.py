"""Trace readers on the real Azure files (read in place), bad-trace errors, generators, rate scaling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.errors import TraceError
from powerplanner.sim.traces import (
    AZURE_CONV_STATS,
    MAX_LINE_CHARS,
    MAX_REQUESTS,
    BurstShape,
    DiurnalShape,
    FixedLengths,
    LognormalLengths,
    StepShape,
    builtin_trace,
    check_extent,
    compress_gaps,
    make_trace,
    read_azure_csv,
    read_mooncake_jsonl,
    read_trace,
    scale_rate,
    synthetic_trace,
    truncate,
)

TRACES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "traces"
CONV = TRACES / "AzureLLMInferenceTrace_conv.csv"
CODE = TRACES / "AzureLLMInferenceTrace_code.csv"
needs_traces = pytest.mark.skipif(not CONV.exists(), reason="shared trace data not present beside the repo")

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --- real files ------------------------------------------------------------------------------------------


@needs_traces
def test_azure_conv_reads_all_rows_with_published_statistics() -> None:
    trace = read_azure_csv(CONV)
    assert len(trace) == 19366
    assert trace.name == "AzureLLMInferenceTrace_conv"
    assert trace.arrival_s[0] == 0.0
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert len(trace) / trace.duration_s == pytest.approx(5.53, abs=0.01)
    assert trace.isl_tokens.mean() == pytest.approx(1155, rel=0.01)
    assert trace.osl_tokens.mean() == pytest.approx(211, rel=0.01)
    # 7-digit fractions survive: second row is 18:15:50.9951690 - 18:15:46.6805900.
    assert trace.arrival_s[1] == pytest.approx(4.314579, abs=1e-7)


@needs_traces
def test_azure_code_reads_all_rows_with_published_statistics() -> None:
    trace = read_trace(CODE)
    assert len(trace) == 8819
    assert len(trace) / trace.duration_s == pytest.approx(2.57, abs=0.01)
    assert trace.isl_tokens.mean() == pytest.approx(2048, rel=0.01)
    assert trace.osl_tokens.mean() == pytest.approx(27.9, rel=0.02)
    assert float(np.max(np.diff(trace.arrival_s))) == pytest.approx(217, abs=1.0)  # the longest idle gap


@needs_traces
def test_scaling_the_real_trace_keeps_duration_and_shape() -> None:
    trace = read_azure_csv(CONV)
    scaled = scale_rate(trace, 3)
    assert len(scaled) == 3 * len(trace)
    assert scaled.duration_s == pytest.approx(trace.duration_s, rel=0.001)
    bins = np.linspace(0, trace.duration_s, 13)
    base, _ = np.histogram(trace.arrival_s, bins)
    triple, _ = np.histogram(scaled.arrival_s, bins)
    np.testing.assert_allclose(triple / base, 3.0, rtol=0.1)


# --- readers on small files ------------------------------------------------------------------------------


def test_azure_columns_in_any_order_and_extra_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "GeneratedTokens,Extra,TIMESTAMP,ContextTokens\n"
              "5,x,2023-11-16 23:59:59.5000000,10\n7,y,2023-11-17 00:00:00.2500000,20\n")
    trace = read_azure_csv(p)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.75])
    assert trace.isl_tokens.tolist() == [10, 20]
    assert trace.osl_tokens.tolist() == [5, 7]


def test_mooncake_jsonl(tmp_path: Path) -> None:
    lines = [
        {"timestamp": 1000, "input_length": 100, "output_length": 10, "hash_ids": [1, 2]},
        {"timestamp": 1500, "input_length": 200, "output_length": 20},
        {"timestamp": 4000, "input_length": 300, "output_length": 30},
    ]
    p = write(tmp_path, "m.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    trace = read_trace(p)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.5, 3.0])
    assert trace.isl_tokens.tolist() == [100, 200, 300]
    assert trace.osl_tokens.tolist() == [10, 20, 30]


BAD_AZURE = [
    ("", "file is empty"),
    (HEADER, "no requests"),
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,5\n", "line 1: missing column(s) GeneratedTokens"),
    (HEADER + "2023-11-16 18:15:46.6805900,5,5\nyesterday,5,5\n", "line 3: bad TIMESTAMP"),
    (HEADER + "2023-13-16 18:15:46.6805900,5,5\n", "line 2: bad TIMESTAMP"),
    (HEADER + "2023-11-16 25:15:46.6805900,5,5\n", "line 2: bad TIMESTAMP"),
    (HEADER + "2023-11-16 18:15:46.6805900,0,5\n", "line 2: ContextTokens must be a positive integer"),
    (HEADER + "2023-11-16 18:15:46.6805900,5,-3\n", "line 2: GeneratedTokens must be a positive integer"),
    (HEADER + "2023-11-16 18:15:46.6805900,abc,3\n", "line 2: ContextTokens must be a positive integer"),
    (HEADER + "2023-11-16 18:15:46.6805900,5,5\n2023-11-16 18:15:45.0000000,5,5\n", "line 3: TIMESTAMP"),
    (HEADER + "2023-11-16 18:15:46.6805900,5\n", "line 2: expected 3 fields"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_AZURE)
def test_bad_azure_traces_name_the_line_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(TraceError) as info:
        read_azure_csv(p)
    assert len(info.value.lines) == 1
    line = info.value.lines[0]
    assert line.startswith(str(p))
    assert expected in line
    assert ";" in line  # message; fix


def test_unsorted_azure_row_says_sort(tmp_path: Path) -> None:
    p = write(tmp_path, "bad.csv", HEADER + "2023-11-16 18:15:46.6805900,5,5\n2023-11-16 18:15:45.0000000,5,5\n")
    with pytest.raises(TraceError, match="sort the file by TIMESTAMP"):
        read_azure_csv(p)


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    rows = "".join(f"2023-11-16 18:15:{i:02d}.0000000,0,5\n" for i in range(20))
    p = write(tmp_path, "bad.csv", HEADER + rows)
    with pytest.raises(TraceError) as info:
        read_azure_csv(p)
    assert len(info.value.lines) == 6
    assert "15 more problem(s)" in info.value.lines[-1]


BAD_MOONCAKE = [
    ("", "file is empty"),
    ('{"timestamp": 1, "input_length": 5, "output_length": 5}\nnot json\n', "line 2: invalid JSON"),
    ('{"timestamp": 1, "input_length": 5}\n', "line 1: missing key(s) output_length"),
    ('{"timestamp": "soon", "input_length": 5, "output_length": 5}\n', "line 1: bad timestamp"),
    ('{"timestamp": 1, "input_length": 0, "output_length": 5}\n', "line 1: input_length must be a positive"),
    ('{"timestamp": 1, "input_length": 5, "output_length": -1}\n', "line 1: output_length must be a positive"),
    ('{"timestamp": 9, "input_length": 5, "output_length": 5}\n{"timestamp": 2, "input_length": 5, '
     '"output_length": 5}\n', "line 2: timestamp 2 is earlier"),
    ("[1, 2, 3]\n", "line 1: expected a JSON object"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_MOONCAKE)
def test_bad_mooncake_traces_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(TraceError) as info:
        read_mooncake_jsonl(p)
    assert len(info.value.lines) == 1
    assert expected in info.value.lines[0]


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not found"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="unknown trace format"):
        read_trace(write(tmp_path, "t.parquet", "x"))
    with pytest.raises(TraceError, match="is a directory"):
        read_azure_csv(tmp_path)


def test_make_trace_checks_invariants() -> None:
    assert len(make_trace("ok", [2.0, 3.0], [1, 2], [3, 4])) == 2
    with pytest.raises(TraceError, match="no requests"):
        make_trace("empty", [], [], [])
    with pytest.raises(TraceError, match="sort"):
        make_trace("unsorted", [2.0, 1.0], [1, 1], [1, 1])
    with pytest.raises(TraceError, match="non-positive"):
        make_trace("zero", [1.0], [0], [1])


# --- generators ------------------------------------------------------------------------------------------


def test_lognormal_fit_matches_mean_and_p99() -> None:
    dist = LognormalLengths(AZURE_CONV_STATS.isl_mean_tokens, AZURE_CONV_STATS.isl_p99_tokens)
    sample = dist.sample(np.random.default_rng(1), 200_000)
    assert sample.mean() == pytest.approx(1155, rel=0.02)
    assert np.percentile(sample, 99) == pytest.approx(4142, rel=0.03)
    assert sample.min() >= 1


def test_lognormal_rejects_impossible_skew() -> None:
    with pytest.raises(TraceError, match="too skewed"):
        LognormalLengths(10, 1000)


def test_synthetic_is_seeded_and_deterministic() -> None:
    def gen(seed: int) -> np.ndarray:
        t = synthetic_trace("s", 600, 4.0, LognormalLengths(500, 2000), FixedLengths(50), DiurnalShape(600), seed)
        return np.concatenate([t.arrival_s, t.isl_tokens.astype(float)])

    np.testing.assert_array_equal(gen(3), gen(3))
    assert not np.array_equal(gen(3), gen(4))


def test_builtin_trace_is_deterministic_and_matches_its_statistics() -> None:
    a = builtin_trace(duration_s=1800, seed=0)
    b = builtin_trace(duration_s=1800, seed=0)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.osl_tokens, b.osl_tokens)
    assert len(a) / 1800 == pytest.approx(AZURE_CONV_STATS.mean_rate_per_s, rel=0.05)
    assert a.isl_tokens.mean() == pytest.approx(1155, rel=0.05)
    assert a.osl_tokens.mean() == pytest.approx(211, rel=0.05)
    assert len(builtin_trace("azure-code-like", duration_s=600)) > 0
    with pytest.raises(TraceError, match="unknown built-in trace"):
        builtin_trace("nope")


def test_step_and_burst_shapes_shape_the_rate() -> None:
    step = synthetic_trace("step", 1000, 2.0, FixedLengths(10), FixedLengths(10),
                           StepShape((0.0, 500.0), (1.0, 3.0)), seed=2)
    first = np.sum(step.arrival_s < 500 - step.arrival_s[0])
    assert (len(step) - first) / first == pytest.approx(3.0, rel=0.2)
    burst = synthetic_trace("burst", 1000, 2.0, FixedLengths(10), FixedLengths(10),
                            BurstShape(starts_s=(400.0,), width_s=100.0, factor=5.0), seed=2)
    counts, _ = np.histogram(burst.arrival_s + 0.0, bins=np.arange(0, 1001, 100))
    assert int(np.argmax(counts)) in (3, 4)  # arrivals are re-zeroed at the first request: within one bin


# --- rate scaling ----------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(k=st.floats(min_value=0.3, max_value=6.0), seed=st.integers(0, 2**16))
def test_scale_rate_multiplies_count_keeps_duration_and_order(k: float, seed: int) -> None:
    trace = synthetic_trace("small", 900, 3.0, FixedLengths(100), FixedLengths(20), DiurnalShape(900), seed=5)
    scaled = scale_rate(trace, k, seed=seed)
    n = len(trace)
    whole = int(k)
    frac = k - whole
    # Whole copies are exact; the thinned one is Binomial(n, frac): allow 5 standard deviations.
    slack = 5 * np.sqrt(n * frac * (1 - frac)) + 1
    assert abs(len(scaled) - k * n) <= slack
    assert scaled.duration_s <= trace.duration_s * 1.01 + 1
    assert scaled.duration_s >= trace.duration_s * 0.95
    assert np.all(np.diff(scaled.arrival_s) >= 0)
    assert scaled.arrival_s[0] == 0.0


def test_scale_rate_keeps_lengths_with_requests_and_is_seeded() -> None:
    trace = synthetic_trace("s", 900, 3.0, LognormalLengths(300, 1200), LognormalLengths(80, 300), seed=5)
    scaled = scale_rate(trace, 2)
    assert sorted(scaled.isl_tokens.tolist()) == sorted(trace.isl_tokens.tolist() * 2)
    a, b = scale_rate(trace, 2.5, seed=7), scale_rate(trace, 2.5, seed=7)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert scale_rate(trace, 1) is trace
    with pytest.raises(TraceError, match="positive"):
        scale_rate(trace, 0)
    with pytest.raises(TraceError, match="positive"):
        scale_rate(trace, float("nan"))


def test_truncate_keeps_the_prefix() -> None:
    trace = builtin_trace(duration_s=600)
    cut = truncate(trace, 120)
    assert cut.duration_s < 120
    assert len(cut) == int(np.sum(trace.arrival_s < 120))
    with pytest.raises(TraceError):
        truncate(trace, 0)


# --- span, gaps and sizes: the simulator never replays a trace without bound ---------------------------------


def _mooncake(tmp_path: Path, times_ms: list[float]) -> Path:
    return write(tmp_path, "t.jsonl", "".join(json.dumps({"timestamp": t, "input_length": 10, "output_length": 5})
                                               + "\n" for t in times_ms))


def test_a_gap_of_years_names_both_options(tmp_path: Path) -> None:
    trace = read_trace(_mooncake(tmp_path, [0, 1000, 94_672_800_000]))
    with pytest.raises(TraceError) as info:
        check_extent(trace, "t.jsonl")
    (line,) = info.value.lines
    assert "requests 2 and 3 (in arrival order) are 3.0 years apart" in line
    assert "--compress-gaps-s" in line and "--duration-s" in line


def test_a_long_span_without_long_gaps_suggests_the_duration(tmp_path: Path) -> None:
    trace = read_trace(_mooncake(tmp_path, [i * 3_600_000 for i in range(24 * 9)]))  # one an hour for 9 days
    with pytest.raises(TraceError) as info:
        check_extent(trace, "t.jsonl")
    (line,) = info.value.lines
    assert "spans 9.0 days" in line and "--duration-s" in line and "milliseconds" in line
    check_extent(truncate(trace, 86400.0), "t.jsonl")


def test_limits_are_inclusive() -> None:
    days = [d * 86400.0 for d in range(9)]  # gaps of exactly 24 h, a span of exactly 8 days
    check_extent(make_trace("t", days, [1] * 9, [1] * 9), "t")


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(0, 1e9, allow_nan=False), min_size=1, max_size=30), cap=st.floats(0.001, 1e4))
def test_compress_gaps_shortens_only_long_gaps(gaps: list[float], cap: float) -> None:
    arrival = np.concatenate(([0.0], np.cumsum(gaps)))
    trace = make_trace("t", arrival, np.arange(1, arrival.size + 1), np.ones(arrival.size, dtype=np.int64))
    out = compress_gaps(trace, cap)
    new = np.diff(out.arrival_s)
    old = np.diff(trace.arrival_s)
    assert np.all(new <= cap * (1 + 1e-9) + 1e-6)
    short = old <= cap
    np.testing.assert_allclose(new[short], old[short], rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(out.isl_tokens, trace.isl_tokens)
    assert out.duration_s <= cap * len(gaps) * (1 + 1e-9) + 1e-6


def test_compress_gaps_refuses_a_non_positive_gap() -> None:
    with pytest.raises(TraceError, match="--compress-gaps-s 60"):
        compress_gaps(make_trace("t", [0.0, 1.0], [1, 1], [1, 1]), 0.0)


def test_an_endless_line_is_refused_with_its_number(tmp_path: Path) -> None:
    first = '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
    p = write(tmp_path, "t.jsonl", first + "x" * (MAX_LINE_CHARS + 5))
    with pytest.raises(TraceError) as info:
        read_trace(p)
    assert info.value.lines == (f"{p}: line 2: longer than {MAX_LINE_CHARS:,} characters; a trace has one short line "
                                "per request, is this a trace file?",)


def test_token_counts_past_int64_are_a_line_problem_not_an_overflow(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="line 1: input_length must be a positive integer of at most"):
        read_trace(write(tmp_path, "t.jsonl", '{"timestamp": 0, "input_length": 1e20, "output_length": 1}\n'))
    with pytest.raises(TraceError, match="line 2: ContextTokens must be a positive integer of at most"):
        read_trace(write(tmp_path, "t.csv", HEADER + "2023-11-16 18:15:46.6805900," + "9" * 25 + ",5\n"))


def test_generated_and_scaled_traces_are_bounded_before_allocating() -> None:
    with pytest.raises(TraceError, match=f"more than the {MAX_REQUESTS:,}"):
        synthetic_trace("big", 8 * 86400.0, 1e6, FixedLengths(1), FixedLengths(1))
    with pytest.raises(TraceError, match="lower --rate-scale"):
        scale_rate(make_trace("t", [0.0, 1.0], [1, 1], [1, 1]), 1e9)
    with pytest.raises(TraceError, match="more than the"):
        builtin_trace("default", duration_s=1800.0, rate_scale=1e6)
