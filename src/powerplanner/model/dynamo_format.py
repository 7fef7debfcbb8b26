"""Dynamo's profiler output as a profile: its raw-data arrays, which have no power axis, combined with the
named GPU's default cap model. Pure: the caller reads the files (:mod:`powerplanner.model.loaders`).

The arrays (docs/profile-format.md, "Dynamo profiler output"): prefill ``prefill_isl``, ``prefill_ttft`` (ms),
``prefill_thpt_per_gpu``; decode ``x_kv_usage``, ``y_context_length``, ``z_itl`` (ms), ``z_thpt_per_gpu``,
``max_kv_tokens``. The per-GPU throughputs give each role's TP size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from powerplanner.errors import ProfileError
from powerplanner.model.builtin import default_cap_model
from powerplanner.model.capped import CappedProfile
from powerplanner.model.gpu import gpu_by_name, known_gpus_text
from powerplanner.model.roles import Role
from powerplanner.model.tables import (
    DecodeTable,
    PrefillTable,
    decode_table_problems,
    decode_tp_from_dynamo,
    prefill_table_problems,
    prefill_tp_from_dynamo,
)

PREFILL_KEYS = ("prefill_isl", "prefill_ttft", "prefill_thpt_per_gpu")
DECODE_KEYS = ("x_kv_usage", "y_context_length", "z_itl", "z_thpt_per_gpu", "max_kv_tokens")


def _vector(data: Mapping[str, Any], key: str) -> np.ndarray:
    return np.asarray(data[key], dtype=np.float64).reshape(-1)


def profile_from_dynamo(prefill: Mapping[str, Any], decode: Mapping[str, Any], gpu: str | None, name: str,
                        prefill_where: str, decode_where: str) -> CappedProfile:
    """Build a profile from Dynamo's two raw-data mappings and the cap model of ``gpu``."""
    problems: list[str] = []
    if gpu is None:
        known = known_gpus_text()
        problems.append(f"{prefill_where}: a Dynamo profile has no power data; name its GPU with --gpu or "
                        f"profile.gpu (one of: {known})")
        spec = None
    else:
        try:
            spec = gpu_by_name(gpu)
        except ProfileError as exc:
            problems.extend(exc.lines)
            spec = None
    # A JSON null is missing too: the throughputs may be absent from our format's tables, never from Dynamo's
    # (they give the TP size), so null must not reach the TP inference as NaN.
    missing_p = [k for k in PREFILL_KEYS if prefill.get(k) is None]
    missing_d = [k for k in DECODE_KEYS if decode.get(k) is None]
    if missing_p:
        problems.append(f"{prefill_where}: missing {', '.join(missing_p)}; is this Dynamo's prefill raw_data?")
    else:
        problems.extend(prefill_table_problems(prefill["prefill_isl"], prefill["prefill_ttft"],
                                               prefill["prefill_thpt_per_gpu"], prefill_where))
    if missing_d:
        problems.append(f"{decode_where}: missing {', '.join(missing_d)}; is this Dynamo's decode raw_data?")
    else:
        problems.extend(decode_table_problems(decode["x_kv_usage"], decode["y_context_length"], decode["z_itl"],
                                              decode["z_thpt_per_gpu"], decode["max_kv_tokens"], decode_where))
    if problems or spec is None:
        raise ProfileError(*problems)

    isl, ttft_ms, p_thpt = (_vector(prefill, k) for k in PREFILL_KEYS)
    x, y, z_ms, d_thpt = (_vector(decode, k) for k in DECODE_KEYS[:4])
    max_kv = int(_vector(decode, "max_kv_tokens")[0])
    prefill_tp = prefill_tp_from_dynamo(isl, ttft_ms, p_thpt)
    decode_tp = decode_tp_from_dynamo(x, y, z_ms, d_thpt, max_kv)
    return CappedProfile(
        name=name,
        gpu=spec,
        prefill_tp=prefill_tp,
        decode_tp=decode_tp,
        prefill_caps=default_cap_model(spec, Role.PREFILL),
        decode_caps=default_cap_model(spec, Role.DECODE),
        prefill=PrefillTable(isl, ttft_ms / 1000.0, source=prefill_where),
        decode=DecodeTable.from_points(x, y, z_ms / 1000.0, max_kv, source=decode_where),
        source=f"Dynamo profiler output ({prefill_where}, {decode_where}) with {spec.name}'s default cap model",
        notes=(f"TP inferred from the profiler's per-GPU throughput: prefill {prefill_tp}, decode {decode_tp}",),
    )

