"""Request traces: readers for published formats, seeded synthetic generators, rate scaling.

Every reader returns a :class:`~powerplanner.sim.types.Trace` (arrays, arrivals relative to the first
request) and turns every problem in the file into a :class:`~powerplanner.errors.TraceError` naming the
file, the line and the fix, because a trace is user input and a traceback tells the user nothing.

Formats
- Azure LLM inference trace (Azure/AzurePublicDataset, 2023): CSV with ``TIMESTAMP`` (wall clock,
  ``2023-11-16 18:15:46.6805900``, 7-digit fractional seconds), ``ContextTokens``, ``GeneratedTokens``.
- Mooncake trace (kvcache-ai/Mooncake): JSON lines with ``timestamp`` (milliseconds), ``input_length``,
  ``output_length`` (other keys such as ``hash_ids`` are ignored).

The project ships no third-party trace. The built-in default (:func:`builtin_trace`) is generated in code
from the published statistics of the Azure conversation trace (see ``AZURE_CONV_STATS``).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.input_files import DocumentProblem, loads_json, open_input
from powerplanner.sim.types import FloatArray, IntArray, Trace

MAX_REPORTED_PROBLEMS = 5
"""A broken file can have thousands of bad lines; the first few tell the user what to fix."""

MAX_TRACE_BYTES = 1024**3
"""Largest trace file read (1 GiB, tens of millions of requests: more than the simulator replays in useful
time); it also stops a file that never ends."""

MAX_LINE_CHARS = 1024 * 1024
"""Longest line of a trace file: one request is well under a kilobyte (a Mooncake line with its block hashes a
few); a longer line is not a trace (``/dev/zero``-like data, a binary file)."""

MAX_TOKENS_PER_REQUEST = 10_000_000
"""Largest token count of one request: ten times the longest context window offered today; more is a corrupt
field (and would overflow the simulator's 64-bit counters)."""

MAX_REQUESTS = 10_000_000
"""Most requests a generated or rate-scaled trace may hold (about 3 GB of simulator state)."""

MAX_SPAN_S = 8 * 86400.0
"""Longest trace the simulator replays (8 days: a week-long production trace fits). The simulator ticks the
planner every cap interval through the whole span, idle or not (17,280 ticks per day at 5 s), so a trace whose
timestamps are in the wrong unit or that holds two requests years apart would run for hours or days."""

MAX_GAP_S = 24 * 3600.0
"""Longest silence between two consecutive requests (24 h): a longer one is traces joined together or a bad
timestamp, and replaying it only ticks an idle cluster."""

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")

_Z99 = 2.3263478740408408  # standard normal quantile at 0.99


# ----------------------------------------------------------------------------------------------------------
# Building and checking traces


class _Problems:
    """Collects per-line problems so one bad file yields one error listing the first few lines."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []
        self.count = 0

    def add(self, line: int | None, message: str) -> None:
        self.count += 1
        if len(self.lines) < MAX_REPORTED_PROBLEMS:
            where = f"{self.source}: line {line}: " if line is not None else f"{self.source}: "
            self.lines.append(where + message)

    def raise_if_any(self) -> None:
        if not self.count:
            return
        lines = list(self.lines)
        if self.count > len(lines):
            hidden = self.count - len(lines)
            lines.append(f"{self.source}: {hidden} more problem(s) not shown; fix the lines above first")
        raise TraceError(*lines)


def make_trace(name: str, arrival_s: Iterable[float], isl_tokens: Iterable[int], osl_tokens: Iterable[int]) -> Trace:
    """Build a trace from plain sequences, checking the invariants the simulator relies on.

    Arrivals are shifted so the first request arrives at 0. Raises :class:`TraceError` when the trace is
    empty, unsorted, or has non-positive lengths (a programming error in a generator, or bad user arrays).
    """
    arrival = np.asarray(list(arrival_s) if not isinstance(arrival_s, np.ndarray) else arrival_s, dtype=np.float64)
    isl = np.asarray(list(isl_tokens) if not isinstance(isl_tokens, np.ndarray) else isl_tokens, dtype=np.int64)
    osl = np.asarray(list(osl_tokens) if not isinstance(osl_tokens, np.ndarray) else osl_tokens, dtype=np.int64)
    if not (arrival.shape == isl.shape == osl.shape) or arrival.ndim != 1:
        raise TraceError(f"{name}: arrival, input-length and output-length arrays must have the same length")
    if arrival.size == 0:
        raise TraceError(f"{name}: the trace holds no requests; give a trace with at least one request")
    if not np.all(np.isfinite(arrival)):
        raise TraceError(f"{name}: arrival times must be finite numbers")
    if arrival.size > 1 and np.any(np.diff(arrival) < 0):
        i = int(np.argmax(np.diff(arrival) < 0)) + 1
        raise TraceError(f"{name}: request {i} arrives before request {i - 1}; sort the trace by arrival time")
    if np.any(isl <= 0) or np.any(osl <= 0):
        i = int(np.argmax((isl <= 0) | (osl <= 0)))
        raise TraceError(f"{name}: request {i} has a non-positive token length; lengths must be >= 1")
    arrival = arrival - arrival[0]
    return Trace(name=name, arrival_s=arrival, isl_tokens=isl, osl_tokens=osl)


def _open_text(path: Path) -> Iterator[str]:
    """Yield the file's lines, converting OS and encoding failures into a TraceError.

    The file must be a regular file of at most :data:`MAX_TRACE_BYTES` (a FIFO or a device is refused by
    :func:`~powerplanner.input_files.open_input`, never waited on or read forever), and no line may exceed
    :data:`MAX_LINE_CHARS`.
    """
    binary = open_input(path, TraceError, not_found="trace file not found; pass an existing file with --trace",
                        what="trace", max_bytes=MAX_TRACE_BYTES)
    total = 0
    try:
        with io.TextIOWrapper(binary, encoding="utf-8", newline="") as handle:
            for line_no in itertools.count(1):
                line = handle.readline(MAX_LINE_CHARS + 1)
                if not line:
                    return
                if len(line) > MAX_LINE_CHARS:
                    raise TraceError(f"{path}: line {line_no}: longer than {MAX_LINE_CHARS:,} characters; a trace has "
                                     "one short line per request, is this a trace file?")
                total += len(line)
                if total > MAX_TRACE_BYTES:
                    raise TraceError(f"{path}: more than {MAX_TRACE_BYTES / 1024**3:g} GiB, the most a trace may "
                                     "hold; cut it (e.g. with head) or check that it is the right file")
                yield line
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text ({exc.reason}); pass a CSV or JSONL trace") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace file ({exc.strerror}); check the path and permissions") from None


def _positive_int(text: str) -> int | None:
    """Parse a token count; ``None`` when it is not an integer (``"12.0"`` is accepted)."""
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if math.isfinite(value) and value == int(value) else None


# ----------------------------------------------------------------------------------------------------------
# Azure CSV


def _parse_azure_timestamp(text: str, day_cache: dict[str, float]) -> float | None:
    """Seconds since midnight of the first day seen for ``YYYY-MM-DD HH:MM:SS[.fffffff]``; ``None`` if malformed.

    Hand-parsed because ``datetime`` keeps only 6 fractional digits and is several times slower; the
    trace has 7 and tens of thousands of rows.
    """
    text = text.strip()
    day, sep, clock = text.partition(" ")
    if not sep:
        day, sep, clock = text.partition("T")
        if not sep:
            return None
    if len(day) != 10:
        return None
    day_s = day_cache.get(day)
    if day_s is None:
        try:
            ordinal = date.fromisoformat(day).toordinal()
        except ValueError:
            return None
        # Seconds from the first day seen, so the 7th fractional digit survives in a float64.
        base = day_cache.setdefault("", float(ordinal))
        day_s = (ordinal - base) * 86400.0
        day_cache[day] = day_s
    parts = clock.split(":")
    if len(parts) != 3:
        return None
    h, m, s = parts
    if not (h.isdigit() and m.isdigit() and len(h) <= 2 and len(m) == 2):
        return None
    sec_whole, _, frac = s.partition(".")
    if not (sec_whole.isdigit() and len(sec_whole) == 2) or (frac and not frac.isdigit()):
        return None
    hours, minutes, seconds = int(h), int(m), int(sec_whole)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    fraction = int(frac) / 10 ** len(frac) if frac else 0.0
    return day_s + hours * 3600.0 + minutes * 60.0 + seconds + fraction


def read_azure_csv(path: str | Path, name: str | None = None) -> Trace:
    """Read an Azure LLM inference trace CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    Columns may come in any order; extra columns are ignored. Arrivals are relative to the first request.
    """
    p = Path(path)
    problems = _Problems(str(p))
    lines = _open_text(p)
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise TraceError(
            f"{p}: the file is empty; an Azure trace needs the header {','.join(AZURE_COLUMNS)} and one row per request"
        ) from None
    except csv.Error as exc:
        raise TraceError(f"{p}: line 1: malformed CSV ({exc}); fix the header") from None
    columns = [c.strip().lstrip("\ufeff") for c in header]
    missing = [c for c in AZURE_COLUMNS if c not in columns]
    if missing:
        raise TraceError(
            f"{p}: line 1: missing column(s) {', '.join(missing)}; an Azure trace's header is "
            f"{','.join(AZURE_COLUMNS)} (got {','.join(columns)!r:.80})"
        )
    i_ts, i_in, i_out = (columns.index(c) for c in AZURE_COLUMNS)
    width = max(i_ts, i_in, i_out) + 1
    times: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    day_cache: dict[str, float] = {}
    previous = -math.inf
    try:
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < width:
                problems.add(line, f"expected {len(columns)} fields, got {len(row)}; every row needs "
                             f"{','.join(AZURE_COLUMNS)}")
                continue
            t = _parse_azure_timestamp(row[i_ts], day_cache)
            n_in = _positive_int(row[i_in].strip())
            n_out = _positive_int(row[i_out].strip())
            if t is None:
                problems.add(line, f"bad TIMESTAMP {row[i_ts]!r:.40}; use 'YYYY-MM-DD HH:MM:SS.fffffff'")
                continue
            if n_in is None or not 0 < n_in <= MAX_TOKENS_PER_REQUEST:
                problems.add(line, f"ContextTokens must be a positive integer of at most {MAX_TOKENS_PER_REQUEST:,} "
                             f"(got {row[i_in]!r:.20}); fix or drop the row")
                continue
            if n_out is None or not 0 < n_out <= MAX_TOKENS_PER_REQUEST:
                problems.add(line, f"GeneratedTokens must be a positive integer of at most "
                             f"{MAX_TOKENS_PER_REQUEST:,} (got {row[i_out]!r:.20}); fix or drop the row")
                continue
            if t < previous:
                problems.add(line, f"TIMESTAMP {row[i_ts].strip()} is earlier than the previous row's; "
                             "sort the file by TIMESTAMP")
                continue
            previous = t
            times.append(t)
            isl.append(n_in)
            osl.append(n_out)
    except csv.Error as exc:
        problems.add(reader.line_num, f"malformed CSV ({exc}); fix the quoting on that line")
    problems.raise_if_any()
    if not times:
        raise TraceError(f"{p}: the trace has a header but no requests; add at least one row")
    return _from_lists(name or p.stem, times, isl, osl)


def _from_lists(name: str, times: list[float], isl: list[int], osl: list[int]) -> Trace:
    arrival = np.asarray(times, dtype=np.float64)
    arrival -= arrival[0]
    return Trace(
        name=name,
        arrival_s=arrival,
        isl_tokens=np.asarray(isl, dtype=np.int64),
        osl_tokens=np.asarray(osl, dtype=np.int64),
    )


# ----------------------------------------------------------------------------------------------------------
# Mooncake JSONL


def read_mooncake_jsonl(path: str | Path, name: str | None = None) -> Trace:
    """Read a Mooncake trace: one JSON object per line with ``timestamp`` (ms), ``input_length``,
    ``output_length``. Blank lines are skipped; arrivals are relative to the first request."""
    p = Path(path)
    problems = _Problems(str(p))
    times: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    previous = -math.inf
    seen_any = False
    for line_no, text in enumerate(_open_text(p), start=1):
        if not text.strip():
            continue
        seen_any = True
        try:
            obj = loads_json(text)
        except DocumentProblem as exc:
            problems.add(line_no, f"{exc.message} (a Mooncake trace has one JSON object per line)")
            continue
        if not isinstance(obj, dict):
            problems.add(line_no, "expected a JSON object with timestamp, input_length, output_length")
            continue
        missing = [k for k in MOONCAKE_KEYS if k not in obj]
        if missing:
            problems.add(line_no, f"missing key(s) {', '.join(missing)}; each line needs {', '.join(MOONCAKE_KEYS)}")
            continue
        ts, n_in, n_out = obj["timestamp"], obj["input_length"], obj["output_length"]
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            problems.add(line_no, f"bad timestamp {ts!r:.30}; use a number of milliseconds")
            continue
        bad_len = [
            k for k, v in (("input_length", n_in), ("output_length", n_out))
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v != int(v)
            or not 0 < v <= MAX_TOKENS_PER_REQUEST
        ]
        if bad_len:
            problems.add(line_no, f"{', '.join(bad_len)} must be a positive integer of at most "
                         f"{MAX_TOKENS_PER_REQUEST:,}; fix or drop the line")
            continue
        t = float(ts) / 1000.0
        if t < previous:
            problems.add(line_no, f"timestamp {ts} is earlier than the previous line's; sort the file by timestamp")
            continue
        previous = t
        times.append(t)
        isl.append(int(n_in))
        osl.append(int(n_out))
    if not seen_any:
        raise TraceError(f"{p}: the file is empty; a Mooncake trace has one JSON object per line")
    problems.raise_if_any()
    return _from_lists(name or p.stem, times, isl, osl)


def read_trace(path: str | Path) -> Trace:
    """Read a trace file, choosing the reader by extension (``.csv`` Azure, ``.jsonl``/``.json`` Mooncake)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return read_azure_csv(p)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_mooncake_jsonl(p)
    raise TraceError(
        f"{p}: unknown trace format {suffix or '(no extension)'!r}; "
        "use an Azure CSV (.csv) or a Mooncake JSONL (.jsonl)"
    )


# ----------------------------------------------------------------------------------------------------------
# Token-length distributions


@dataclass(frozen=True)
class LognormalLengths:
    """Token lengths from a lognormal fitted to a published mean and 99th percentile.

    With ``X = exp(mu + sigma Z)``: ``mean = exp(mu + sigma^2/2)`` and ``p99 = exp(mu + z99 sigma)``, so
    ``sigma^2/2 - z99 sigma + ln(p99/mean) = 0``; the smaller root is taken (the narrower distribution).
    Samples are rounded and clipped to ``[min_tokens, max_tokens]``.
    """

    mean_tokens: float
    p99_tokens: float
    min_tokens: int = 1
    max_tokens: int = 32768

    def __post_init__(self) -> None:
        if not (self.mean_tokens > 0 and self.p99_tokens > 0):
            raise TraceError("lognormal lengths: mean and p99 must be positive")
        ratio = math.log(self.p99_tokens / self.mean_tokens)
        if ratio <= 0:
            raise TraceError(
                f"lognormal lengths: p99 ({self.p99_tokens:g}) must exceed the mean ({self.mean_tokens:g})"
            )
        if 2 * ratio > _Z99**2:
            raise TraceError(
                f"lognormal lengths: p99/mean = {self.p99_tokens / self.mean_tokens:.1f} is too skewed for a "
                f"lognormal (at most {math.exp(_Z99**2 / 2):.1f}); lower p99 or use empirical lengths"
            )
        if not (1 <= self.min_tokens <= self.max_tokens):
            raise TraceError("lognormal lengths: need 1 <= min_tokens <= max_tokens")

    @property
    def sigma(self) -> float:
        return _Z99 - math.sqrt(_Z99**2 - 2 * math.log(self.p99_tokens / self.mean_tokens))

    @property
    def mu(self) -> float:
        return math.log(self.mean_tokens) - self.sigma**2 / 2

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        raw = rng.lognormal(self.mu, self.sigma, size=n)
        return np.clip(np.rint(raw), self.min_tokens, self.max_tokens).astype(np.int64)


@dataclass(frozen=True)
class FixedLengths:
    """Every request has the same length (handy for tests and profile checks)."""

    tokens: int

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise TraceError("fixed lengths: tokens must be >= 1")

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True)
class EmpiricalLengths:
    """Resample lengths observed in a real trace (keeps their exact distribution, loses nothing to a fit)."""

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.values or min(self.values) < 1:
            raise TraceError("empirical lengths: need at least one value, all >= 1")

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, replace=True)


LengthDistribution = LognormalLengths | FixedLengths | EmpiricalLengths


# ----------------------------------------------------------------------------------------------------------
# Rate shapes: multipliers of the mean rate over time


@dataclass(frozen=True)
class ConstantShape:
    """A homogeneous Poisson process."""

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        return np.ones_like(t_s)


@dataclass(frozen=True)
class DiurnalShape:
    """``1 + amplitude * sin(2 pi (t / period + phase))``: the day/night swing, compressed to ``period_s``
    so a short simulation still sees the planner follow a rise and a fall."""

    period_s: float = 3600.0
    amplitude: float = 0.5
    phase: float = 0.0

    def __post_init__(self) -> None:
        if self.period_s <= 0 or not (0 <= self.amplitude < 1):
            raise TraceError("diurnal shape: period_s must be > 0 and amplitude in [0, 1)")

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        return 1.0 + self.amplitude * np.sin(2 * np.pi * (t_s / self.period_s + self.phase))


@dataclass(frozen=True)
class StepShape:
    """Piecewise-constant multipliers: ``levels[i]`` from ``starts_s[i]`` (the first start should be 0)."""

    starts_s: tuple[float, ...] = (0.0,)
    levels: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if len(self.starts_s) != len(self.levels) or not self.levels:
            raise TraceError("step shape: starts_s and levels must have the same, non-zero length")
        if list(self.starts_s) != sorted(self.starts_s) or min(self.levels) < 0:
            raise TraceError("step shape: starts_s must be ascending and levels >= 0")

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        idx = np.searchsorted(np.asarray(self.starts_s), t_s, side="right") - 1
        levels = np.asarray(self.levels, dtype=np.float64)
        return np.where(idx >= 0, levels[np.clip(idx, 0, None)], levels[0])


@dataclass(frozen=True)
class BurstShape:
    """A base multiplier with rectangular bursts: ``factor`` times the base during
    ``[start, start + width)`` for each start. Flash crowds are what stress a planner's budget logic."""

    starts_s: tuple[float, ...] = ()
    width_s: float = 60.0
    factor: float = 3.0
    base: float = 1.0

    def __post_init__(self) -> None:
        if self.width_s <= 0 or self.factor < 0 or self.base < 0:
            raise TraceError("burst shape: width_s must be > 0, factor and base >= 0")

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        out = np.full_like(t_s, self.base)
        for start in self.starts_s:
            inside = (t_s >= start) & (t_s < start + self.width_s)
            out = np.where(inside, self.base * self.factor, out)
        return out


@dataclass(frozen=True)
class ProductShape:
    """Several shapes multiplied together (e.g. diurnal x bursts)."""

    parts: tuple[RateShape, ...]

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        out = np.ones_like(t_s)
        for part in self.parts:
            out = out * part.multiplier(t_s)
        return out


RateShape = ConstantShape | DiurnalShape | StepShape | BurstShape | ProductShape


def poisson_arrivals(
    rate_per_s: Callable[[FloatArray], FloatArray], duration_s: float, peak_rate_per_s: float,
    rng: np.random.Generator,
) -> FloatArray:
    """Arrivals of a non-homogeneous Poisson process on ``[0, duration_s)`` by thinning (Lewis-Shedler):
    draw a homogeneous process at the peak rate, keep each point with probability rate(t)/peak."""
    if duration_s <= 0 or peak_rate_per_s <= 0:
        return np.zeros(0, dtype=np.float64)
    expected = peak_rate_per_s * duration_s
    n = int(rng.poisson(expected))
    candidates = np.sort(rng.uniform(0.0, duration_s, size=n))
    keep = rng.uniform(0.0, 1.0, size=n) * peak_rate_per_s < rate_per_s(candidates)
    return candidates[keep]


def synthetic_trace(
    name: str,
    duration_s: float,
    mean_rate_per_s: float,
    isl: LengthDistribution,
    osl: LengthDistribution,
    shape: RateShape | None = None,
    seed: int = 0,
) -> Trace:
    """A seeded Poisson trace whose rate is ``mean_rate_per_s x shape(t)``; same seed, same trace.

    ``mean_rate_per_s`` is the base rate the shape multiplies (for a diurnal shape over whole periods it
    is also the time-average).
    """
    if duration_s <= 0 or not math.isfinite(duration_s):
        raise TraceError(f"{name}: synthetic duration_s must be a positive number (got {duration_s!r})")
    if mean_rate_per_s <= 0 or not math.isfinite(mean_rate_per_s):
        raise TraceError(f"{name}: synthetic mean rate must be a positive number of requests/s")
    if mean_rate_per_s * duration_s > MAX_REQUESTS:
        raise TraceError(f"{name}: {mean_rate_per_s:g} requests/s for {_span_text(duration_s)} is about "
                         f"{mean_rate_per_s * duration_s:,.0f} requests, more than the {MAX_REQUESTS:,} a trace may "
                         "hold; lower the rate (or rate scale) or the duration")
    shape = shape or ConstantShape()
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, duration_s, 4097)
    peak_mult = float(np.max(shape.multiplier(grid)))
    # Burst edges fall between grid points; evaluate the shape at its step starts too.
    peak_mult = max(peak_mult, 1e-12)
    for extra in _shape_breakpoints(shape):
        if 0 <= extra < duration_s:
            peak_mult = max(peak_mult, float(shape.multiplier(np.asarray([extra]))[0]))
    peak = mean_rate_per_s * peak_mult
    if peak * duration_s > 4 * MAX_REQUESTS:  # thinning draws at the peak rate: a spiky shape could still explode
        raise TraceError(f"{name}: the rate shape's peak ({peak:g} requests/s) over {_span_text(duration_s)} draws "
                         f"more than {4 * MAX_REQUESTS:,} candidate requests; lower the peak or the duration")

    def rate(t: FloatArray) -> FloatArray:
        return mean_rate_per_s * shape.multiplier(t)

    arrival = poisson_arrivals(rate, duration_s, peak, rng)
    if arrival.size == 0:
        arrival = np.zeros(1, dtype=np.float64)
    n = arrival.size
    return Trace(
        name=name,
        arrival_s=arrival - arrival[0],
        isl_tokens=isl.sample(rng, n),
        osl_tokens=osl.sample(rng, n),
    )


def _shape_breakpoints(shape: RateShape) -> list[float]:
    if isinstance(shape, StepShape):
        return list(shape.starts_s)
    if isinstance(shape, BurstShape):
        return list(shape.starts_s)
    if isinstance(shape, ProductShape):
        return [t for part in shape.parts for t in _shape_breakpoints(part)]
    return []


# ----------------------------------------------------------------------------------------------------------
# Rate scaling


def scale_rate(trace: Trace, k: float, seed: int = 0, spread_s: float = 60.0) -> Trace:
    """Multiply the request rate by ``k`` while keeping the trace's shape and duration.

    The trace is superposed with time-shifted copies of itself: copy ``i`` is shifted by
    ``i x spread_s / ceil(k)`` seconds and wrapped around the trace's span, so each copy keeps the
    original's minute-scale shape (diurnal swings, bursts, idle gaps) while the copies' individual
    arrivals interleave instead of landing on the same instants. A non-integer ``k`` thins the last copy
    (each of its requests kept with probability ``k - floor(k)``, seeded), so the count is about
    ``k x len(trace)``. ``k < 1`` just thins. Token lengths travel with their requests.
    """
    if not (k > 0 and math.isfinite(k)):
        raise TraceError(f"rate scale must be a positive number (got {k!r}); e.g. --rate-scale 2.5")
    if k == 1:
        return trace
    n = len(trace)
    if k * n > MAX_REQUESTS:
        raise TraceError(f"{trace.name}: rate scale {k:g} makes about {k * n:,.0f} requests, more than the "
                         f"{MAX_REQUESTS:,} a trace may hold; lower --rate-scale or replay less with --duration-s")
    whole = math.floor(k)
    frac = k - whole
    copies = whole + (1 if frac > 1e-12 else 0)
    span = trace.duration_s + (trace.duration_s / n if n > 1 else 1.0)  # wrap period: one mean gap past the end
    shift_step = min(spread_s, span) / copies
    rng = np.random.default_rng(seed)
    parts_t: list[FloatArray] = []
    parts_i: list[IntArray] = []
    parts_o: list[IntArray] = []
    for i in range(copies):
        t = trace.arrival_s
        isl = trace.isl_tokens
        osl = trace.osl_tokens
        if i == whole:  # the fractional copy
            keep = rng.uniform(size=n) < frac
            t, isl, osl = t[keep], isl[keep], osl[keep]
        if i:
            t = np.mod(t + i * shift_step, span)
        parts_t.append(t)
        parts_i.append(isl)
        parts_o.append(osl)
    arrival = np.concatenate(parts_t)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order]
    if arrival.size == 0:
        raise TraceError(f"{trace.name}: rate scale {k:g} leaves no requests; use a larger --rate-scale")
    return Trace(
        name=f"{trace.name}x{k:g}",
        arrival_s=arrival - arrival[0],
        isl_tokens=np.concatenate(parts_i)[order],
        osl_tokens=np.concatenate(parts_o)[order],
    )


def compress_gaps(trace: Trace, max_gap_s: float) -> Trace:
    """The trace with every silence between consecutive requests longer than ``max_gap_s`` shortened to it
    (``--compress-gaps-s``): idle nights or traces joined together replay without ticking an idle cluster for
    hours. Requests keep their order and lengths; only the arrivals after a long gap move earlier."""
    if not (max_gap_s > 0 and math.isfinite(max_gap_s)):
        raise TraceError(f"gap compression must be a positive number of seconds (got {max_gap_s!r}); "
                         "e.g. --compress-gaps-s 60")
    gaps = np.diff(trace.arrival_s)
    if gaps.size == 0 or float(np.max(gaps)) <= max_gap_s:
        return trace
    arrival = np.concatenate(([0.0], np.cumsum(np.minimum(gaps, max_gap_s))))
    return Trace(trace.name, arrival, trace.isl_tokens, trace.osl_tokens)


def _span_text(seconds: float) -> str:
    """A duration as a person reads it: ``45 s``, ``3.5 h``, ``12.0 days``, ``3.0 years``."""
    if seconds >= 365.25 * 86400:
        return f"{seconds / (365.25 * 86400):,.1f} years"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:,.0f} s"


def check_extent(trace: Trace, source: str, *, max_span_s: float = MAX_SPAN_S, max_gap_s: float = MAX_GAP_S) -> None:
    """Refuse a trace the simulator would replay for hours on end (it ticks through every second of the span):
    a silence between two requests over ``max_gap_s``, or a span over ``max_span_s``. The line names the
    figure and the options that fix it (``--compress-gaps-s``, ``--duration-s``)."""
    if len(trace) > 1:
        gaps = np.diff(trace.arrival_s)
        i = int(np.argmax(gaps))
        if float(gaps[i]) > max_gap_s:
            raise TraceError(
                f"{source}: requests {i + 1} and {i + 2} (in arrival order) are {_span_text(float(gaps[i]))} apart, "
                f"more than the {_span_text(max_gap_s)} of silence a trace may hold (traces joined together, or "
                "timestamps in the wrong unit?); pass --compress-gaps-s 60 to shorten every gap to 60 s, or "
                "--duration-s to replay only the start")
    if trace.duration_s > max_span_s:
        raise TraceError(
            f"{source}: spans {_span_text(trace.duration_s)} from its first request to its last, more than the "
            f"{_span_text(max_span_s)} the simulator replays (it ticks through every second); pass --duration-s "
            "to replay only the start, or check the timestamps' unit (Mooncake: milliseconds)")


def truncate(trace: Trace, duration_s: float) -> Trace:
    """The requests arriving before ``duration_s`` (a scenario's duration limit)."""
    if duration_s <= 0:
        raise TraceError(f"duration limit must be positive (got {duration_s:g} s)")
    n = int(np.searchsorted(trace.arrival_s, duration_s, side="left"))
    if n == 0:
        raise TraceError(f"{trace.name}: no request arrives within the first {duration_s:g} s; raise the duration")
    return Trace(trace.name, trace.arrival_s[:n], trace.isl_tokens[:n], trace.osl_tokens[:n])


# ----------------------------------------------------------------------------------------------------------
# Built-in trace


@dataclass(frozen=True)
class TraceStats:
    """Published statistics of a trace: what a synthetic stand-in is generated from."""

    mean_rate_per_s: float
    isl_mean_tokens: float
    isl_p99_tokens: float
    osl_mean_tokens: float
    osl_p99_tokens: float
    source: str


AZURE_CONV_STATS = TraceStats(
    mean_rate_per_s=5.53,
    isl_mean_tokens=1155.0,
    isl_p99_tokens=4142.0,
    osl_mean_tokens=211.0,
    osl_p99_tokens=601.0,
    source="Azure LLM inference trace 2023, conversation (Azure/AzurePublicDataset; Patel et al., Splitwise, "
    "ISCA 2024): 19,366 requests in ~1 h, mean 5.53 req/s, input mean 1,155 (p99 4,142), output mean 211 "
    "(p99 601); figures as listed in ../shared/data/traces/SOURCES.md",
)
AZURE_CODE_STATS = TraceStats(
    mean_rate_per_s=2.57,
    isl_mean_tokens=2048.0,
    isl_p99_tokens=7436.0,
    osl_mean_tokens=27.9,
    osl_p99_tokens=251.0,
    source="Azure LLM inference trace 2023, code (Azure/AzurePublicDataset): 8,819 requests, mean 2.57 req/s, "
    "input mean 2,048 (p99 7,436), output mean 27.9 (p99 251)",
)

BUILTIN_TRACE_NAMES = ("default", "azure-conv-like", "azure-code-like")


def builtin_trace(
    name: str = "default", duration_s: float = 1800.0, rate_scale: float = 1.0, seed: int = 0
) -> Trace:
    """A trace generated in code from published statistics; deterministic for a given seed.

    - ``default`` / ``azure-conv-like``: Azure conversation statistics (``AZURE_CONV_STATS``), lengths
      lognormal fitted to mean and p99, with a compressed diurnal swing (one period over the trace,
      amplitude 0.35, starting at the trough so load rises then falls) and two 2-minute bursts at 1.5x,
      so the planner must scale up, hit the budget, and scale down within one run. Per-minute peak/mean
      is ~1.7 (the real conv trace: 1.5; the real code trace: 4.2). The shape is
      normalised so the time-averaged rate is ``rate_scale`` x the published mean rate.
    - ``azure-code-like``: the code trace's statistics, steadier base with three 2x bursts.
    """
    if name in ("default", "azure-conv-like"):
        stats = AZURE_CONV_STATS
        shape: RateShape = ProductShape(
            (
                DiurnalShape(period_s=duration_s, amplitude=0.35, phase=-0.25),
                BurstShape(starts_s=(0.35 * duration_s, 0.7 * duration_s), width_s=min(120.0, 0.1 * duration_s),
                           factor=1.5),
            )
        )
    elif name == "azure-code-like":
        stats = AZURE_CODE_STATS
        shape = BurstShape(
            starts_s=(0.2 * duration_s, 0.5 * duration_s, 0.8 * duration_s),
            width_s=min(120.0, 0.08 * duration_s), factor=2.0,
        )
    else:
        raise TraceError(f"unknown built-in trace {name!r}; use one of: {', '.join(BUILTIN_TRACE_NAMES)}")
    if not rate_scale > 0:
        raise TraceError(f"rate scale must be positive (got {rate_scale:g})")
    # Normalise so the time-averaged rate equals the published mean (times rate_scale).
    mean_multiplier = float(np.mean(shape.multiplier(np.linspace(0.0, duration_s, 20001))))
    return synthetic_trace(
        name=name,
        duration_s=duration_s,
        mean_rate_per_s=stats.mean_rate_per_s * rate_scale / mean_multiplier,
        isl=LognormalLengths(stats.isl_mean_tokens, stats.isl_p99_tokens),
        osl=LognormalLengths(stats.osl_mean_tokens, stats.osl_p99_tokens),
        shape=shape,
        seed=seed,
    )
