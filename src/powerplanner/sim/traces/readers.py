"""Trace readers for published formats; every problem in the file becomes one line of a TraceError.

Each reader returns a :class:`~powerplanner.sim.types.Trace` (arrays, arrivals relative to the first request)
and turns every problem in the file into a :class:`~powerplanner.errors.TraceError` naming the file, the line
and the fix, because a trace is user input and a traceback tells the user nothing (docs/simulator.md,
"Traces").

Formats
- Azure LLM inference trace (Azure/AzurePublicDataset, 2023): CSV with ``TIMESTAMP`` (wall clock,
  ``2023-11-16 18:15:46.6805900``, 7-digit fractional seconds), ``ContextTokens``, ``GeneratedTokens``.
- Mooncake trace (kvcache-ai/Mooncake): JSON lines with ``timestamp`` (milliseconds), ``input_length``,
  ``output_length`` (other keys such as ``hash_ids`` are ignored).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.input_files import DocumentProblem, loads_json, open_input
from powerplanner.sim.traces.limits import MAX_LINE_CHARS, MAX_TOKENS_PER_REQUEST, MAX_TRACE_BYTES
from powerplanner.sim.types import Trace

MAX_REPORTED_PROBLEMS = 5
"""A broken file can have thousands of bad lines; the first few tell the user what to fix."""

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")


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



def _azure_header(reader: Iterator[list[str]], p: Path) -> list[str]:
    """The header's column names; a missing, malformed or incomplete header is one TraceError."""
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
    return columns


def _azure_request(row: list[str], n_columns: int, at: tuple[int, int, int],
                   day_cache: dict[str, float]) -> tuple[float, int, int] | str:
    """One row's (arrival, input tokens, output tokens), or what is wrong with it and how to fix it."""
    i_ts, i_in, i_out = at
    if len(row) < max(at) + 1:
        return f"expected {n_columns} fields, got {len(row)}; every row needs {','.join(AZURE_COLUMNS)}"
    t = _parse_azure_timestamp(row[i_ts], day_cache)
    n_in = _positive_int(row[i_in].strip())
    n_out = _positive_int(row[i_out].strip())
    if t is None:
        return f"bad TIMESTAMP {row[i_ts]!r:.40}; use 'YYYY-MM-DD HH:MM:SS.fffffff'"
    if n_in is None or not 0 < n_in <= MAX_TOKENS_PER_REQUEST:
        return (f"ContextTokens must be a positive integer of at most {MAX_TOKENS_PER_REQUEST:,} "
                f"(got {row[i_in]!r:.20}); fix or drop the row")
    if n_out is None or not 0 < n_out <= MAX_TOKENS_PER_REQUEST:
        return (f"GeneratedTokens must be a positive integer of at most "
                f"{MAX_TOKENS_PER_REQUEST:,} (got {row[i_out]!r:.20}); fix or drop the row")
    return t, n_in, n_out


def read_azure_csv(path: str | Path, name: str | None = None) -> Trace:
    """Read an Azure LLM inference trace CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    Columns may come in any order; extra columns are ignored. Arrivals are relative to the first request.
    """
    p = Path(path)
    problems = _Problems(str(p))
    reader = csv.reader(_open_text(p))
    columns = _azure_header(reader, p)
    at = (columns.index(AZURE_COLUMNS[0]), columns.index(AZURE_COLUMNS[1]), columns.index(AZURE_COLUMNS[2]))
    times: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    day_cache: dict[str, float] = {}
    previous = -math.inf
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            request = _azure_request(row, len(columns), at, day_cache)
            if isinstance(request, str):
                problems.add(reader.line_num, request)
                continue
            t, n_in, n_out = request
            if t < previous:
                problems.add(reader.line_num, f"TIMESTAMP {row[at[0]].strip()} is earlier than the previous row's; "
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

