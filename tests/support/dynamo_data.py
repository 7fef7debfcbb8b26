"""Synthetic Dynamo profiler output for loader tests, generated from a built-in profile so the expected
numbers are known exactly (the profiler's own formulas: thpt_per_gpu = isl / ttft * 1000 / gpus, and
x_kv_usage = context * requests / max_kv_tokens)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from powerplanner.model.capped import CappedProfile
from powerplanner.model.latency import DecodeLatency
from powerplanner.model.profiles import load_profile

ISLS = (100.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
CONTEXTS = (500.0, 1500.0, 3075.0, 6000.0)
REQUESTS = (1, 8, 32, 64, 128, 256)


def reference() -> CappedProfile:
    profile = load_profile("llama3.1-8b-h200-tp1")
    assert isinstance(profile, CappedProfile)
    return profile


def arrays(profile: CappedProfile | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    p = profile or reference()
    assert isinstance(p.decode, DecodeLatency)
    isl = np.array(ISLS)
    ttft_ms = np.array([p.prefill_time_s(i, 700.0) * 1000.0 for i in ISLS])
    prefill = {"prefill_isl": isl, "prefill_ttft": ttft_ms,
               "prefill_thpt_per_gpu": isl / ttft_ms * 1000.0 / p.prefill_tp}
    max_kv = p.decode.max_kv_tokens
    x, y, z, t = [], [], [], []
    for ctx in CONTEXTS:
        for n in REQUESTS:
            if n * ctx > max_kv:
                continue
            itl_ms = p.decode_itl_s(n, ctx, 700.0) * 1000.0
            x.append(n * ctx / max_kv)
            y.append(ctx)
            z.append(itl_ms)
            t.append(n / itl_ms * 1000.0 * 0.95 / p.decode_tp)  # TTFT overhead: a bit under batch / ITL
    decode = {"x_kv_usage": np.array(x), "y_context_length": np.array(y), "z_itl": np.array(z),
              "z_thpt_per_gpu": np.array(t), "max_kv_tokens": np.array([max_kv])}
    return prefill, decode


def write_npz_dir(root: Path, prefill: dict[str, Any] | None = None, decode: dict[str, Any] | None = None) -> Path:
    default_p, default_d = arrays()
    (root / "selected_prefill_interpolation").mkdir(parents=True, exist_ok=True)
    (root / "selected_decode_interpolation").mkdir(parents=True, exist_ok=True)
    np.savez(root / "selected_prefill_interpolation" / "raw_data.npz", **(prefill or default_p))
    np.savez(root / "selected_decode_interpolation" / "raw_data.npz", **(decode or default_d))
    return root


def write_json_dir(root: Path) -> Path:
    prefill, decode = arrays()
    root.mkdir(parents=True, exist_ok=True)
    (root / "prefill_raw_data.json").write_text(json.dumps({k: v.tolist() for k, v in prefill.items()}))
    dec = {k: v.tolist() for k, v in decode.items()}
    dec["max_kv_tokens"] = int(decode["max_kv_tokens"][0])  # the JSON twin holds a plain integer
    (root / "decode_raw_data.json").write_text(json.dumps(dec))
    return root
