"""Request traces: readers for published formats, seeded synthetic generators, operations on traces.

- :mod:`~powerplanner.sim.traces.readers`: the Azure LLM inference CSV and the Mooncake JSONL; every problem
  in a file is one :class:`~powerplanner.errors.TraceError` line naming the file, the line and the fix;
- :mod:`~powerplanner.sim.traces.synthetic`: the seeded Poisson generator, with the rate shapes of
  :mod:`~powerplanner.sim.traces.shapes` and the token-length distributions of
  :mod:`~powerplanner.sim.traces.lengths`;
- :mod:`~powerplanner.sim.traces.operations`: building a trace from sequences, rate scaling, gap compression,
  truncation, the extent check;
- :mod:`~powerplanner.sim.traces.builtin`: the built-in traces, generated from published statistics;
- :mod:`~powerplanner.sim.traces.limits`: the bounds all of them check.

Every name is re-exported here, so callers import from ``powerplanner.sim.traces`` and need not know which
module holds it (docs/simulator.md, "Traces").
"""

from powerplanner.sim.traces.builtin import (
    AZURE_CODE_STATS,
    AZURE_CONV_STATS,
    BUILTIN_TRACE_NAMES,
    TraceStats,
    builtin_trace,
)
from powerplanner.sim.traces.lengths import EmpiricalLengths, FixedLengths, LengthDistribution, LognormalLengths
from powerplanner.sim.traces.limits import (
    MAX_GAP_S,
    MAX_LINE_CHARS,
    MAX_REQUESTS,
    MAX_SPAN_S,
    MAX_TOKENS_PER_REQUEST,
    MAX_TRACE_BYTES,
)
from powerplanner.sim.traces.operations import check_extent, compress_gaps, make_trace, scale_rate, truncate
from powerplanner.sim.traces.readers import (
    AZURE_COLUMNS,
    MAX_REPORTED_PROBLEMS,
    MOONCAKE_KEYS,
    read_azure_csv,
    read_mooncake_jsonl,
    read_trace,
)
from powerplanner.sim.traces.shapes import BurstShape, ConstantShape, DiurnalShape, ProductShape, RateShape, StepShape
from powerplanner.sim.traces.synthetic import poisson_arrivals, synthetic_trace

__all__ = [
    "AZURE_CODE_STATS",
    "AZURE_COLUMNS",
    "AZURE_CONV_STATS",
    "BUILTIN_TRACE_NAMES",
    "MAX_GAP_S",
    "MAX_LINE_CHARS",
    "MAX_REPORTED_PROBLEMS",
    "MAX_REQUESTS",
    "MAX_SPAN_S",
    "MAX_TOKENS_PER_REQUEST",
    "MAX_TRACE_BYTES",
    "MOONCAKE_KEYS",
    "BurstShape",
    "ConstantShape",
    "DiurnalShape",
    "EmpiricalLengths",
    "FixedLengths",
    "LengthDistribution",
    "LognormalLengths",
    "ProductShape",
    "RateShape",
    "StepShape",
    "TraceStats",
    "builtin_trace",
    "check_extent",
    "compress_gaps",
    "make_trace",
    "poisson_arrivals",
    "read_azure_csv",
    "read_mooncake_jsonl",
    "read_trace",
    "scale_rate",
    "synthetic_trace",
    "truncate",
]
