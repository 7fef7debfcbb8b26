"""Fit the built-in llama2-70b H100 latency coefficients on Splitwise's measurements (dev time only).

Reads ../shared/data/calibration/splitwise_perf_model.csv (never copied into the repo) and prints, per TP,
the coefficients that ``src/powerplanner/model/builtin.py`` carries:

- prefill: prompt_time(N) = a + b*N + c*N^2 with N = prompt_size * batch_size (tokens in the batch);
- decode: token_time(B, L) = base + per_seq*B + per_kv_token*B*L + per_seq_sq*B^2 with L = prompt_size +
  token_size/2 (mean context over the generation). The sweep's batches end at 64, so the profile keeps the
  quadratic term only up to the largest measured batch (printed as ``decode_quadratic_max_batch``) and continues
  linearly along the tangent beyond it (see ``DecodeLatency``): extrapolating the square would make decode
  throughput fall at large batches, which a memory-bound engine does not do. ``decode_throughput_saturates``
  checks ``base >= per_seq_sq * B0^2``, the condition for throughput to rise monotonically past ``B0``.

The fit minimises a robust (soft-L1) loss on the log ratio predicted/measured with every coefficient >= 0: the
log ratio is symmetric (a relative error is capped at -100% below but unbounded above, which lets one outlier
such as TP2 batch 64 drag the whole curve down), and no term can turn negative when extrapolated.

Usage: .venv/bin/python tools/fit_splitwise.py [path/to/splitwise_perf_model.csv]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DEFAULT_CSV = SHARED / "data" / "calibration" / "splitwise_perf_model.csv"


def _fit(design: NDArray[np.float64], observed: NDArray[np.float64]) -> NDArray[np.float64]:
    weighted = design / observed[:, None]
    scale = 1.0 / np.abs(weighted).max(axis=0)  # columns of comparable size for the solver
    # Start from the plain relative least-squares solution with negative terms clipped to zero: a start at
    # the constrained least-squares optimum can sit in the basin of an outlier (TP2 batch 64), which the
    # robust loss then never leaves.
    start, *_ = np.linalg.lstsq(weighted * scale, np.ones_like(observed), rcond=None)
    start = np.maximum(start, 0.0)

    def residual(coef: NDArray[np.float64]) -> NDArray[np.float64]:
        predicted = np.maximum(design @ (coef * scale), 1e-12)
        return np.asarray(np.log(predicted / observed))

    result = least_squares(residual, start, bounds=(0.0, np.inf), loss="soft_l1", f_scale=0.05)
    return np.asarray(result.x * scale)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_CSV
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["model"] == "llama2-70b" and r["hardware"] == "h100-80gb"]
    out: dict[str, dict[str, float | bool]] = {}
    for tp in (2, 4, 8):
        sel = [r for r in rows if int(r["tensor_parallel"]) == tp]
        prompt = np.array([float(r["prompt_size"]) for r in sel])
        batch = np.array([float(r["batch_size"]) for r in sel])
        out_tokens = np.array([float(r["token_size"]) for r in sel])
        prompt_s = np.array([float(r["prompt_time"]) for r in sel]) / 1000.0
        token_s = np.array([float(r["token_time"]) for r in sel]) / 1000.0
        n = prompt * batch
        a, b, c = _fit(np.c_[np.ones_like(n), n, n**2], prompt_s)
        ctx = prompt + out_tokens / 2.0
        base, per_seq, per_kv, per_sq = _fit(np.c_[np.ones_like(batch), batch, batch * ctx, batch**2], token_s)
        pre_err = np.abs((a + b * n + c * n**2) / prompt_s - 1)
        dec_err = np.abs((base + per_seq * batch + per_kv * batch * ctx + per_sq * batch**2) / token_s - 1)
        out[f"tp{tp}"] = {
            "prefill_a_s": float(a), "prefill_b_s_per_token": float(b), "prefill_c_s_per_token2": float(c),
            "decode_base_s": float(base), "decode_per_seq_s": float(per_seq),
            "decode_per_kv_token_s": float(per_kv), "decode_per_seq_sq_s": float(per_sq),
            "decode_quadratic_max_batch": float(batch.max()),
            "decode_throughput_saturates": bool(base >= per_sq * float(batch.max()) ** 2),
            "median_rel_err_prompt": float(np.median(pre_err)), "median_rel_err_token": float(np.median(dec_err)),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
