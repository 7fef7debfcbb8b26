"""Our profile format, both ways: a validated document to a :class:`CappedProfile`, and a profile back to its
document (``powerplanner profile export``). Pure: the caller reads the file (:mod:`powerplanner.model.loaders`).

A document holds, per role, the TP size, the cap model's constants (any left out come from the GPU's default
cap model) and either fitted latency coefficients or measured tables (docs/profile-format.md). Every problem
is collected and raised as one :class:`~powerplanner.errors.ProfileError` with a line each, so a user fixes a
file in one pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from powerplanner.errors import ProfileError
from powerplanner.model.builtin import default_cap_model
from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.gpu import GpuSpec, gpu_by_name, gpu_catalog
from powerplanner.model.latency import DecodeLatency, DecodeTimeModel, KvCapacity, PrefillLatency, PrefillTimeModel
from powerplanner.model.profile_schema import FORMAT_V1, GpuDoc, PowerDoc, ProfileDoc, profile_validation_lines
from powerplanner.model.roles import Role
from powerplanner.model.tables import DecodeTable, PrefillTable, decode_table_problems, prefill_table_problems

# ----------------------------------------------------------------------------------------------------------
# document -> profile


def _gpu_from_doc(gpu: GpuDoc, where: str) -> GpuSpec:
    try:
        spec = gpu_by_name(gpu.name)
    except ProfileError as exc:
        raise ProfileError(f"{where}: gpu: {exc.lines[0]}") from None
    if gpu.min_limit_watts is None and gpu.max_limit_watts is None:
        return spec
    problems = []
    low = spec.min_limit_watts if gpu.min_limit_watts is None else gpu.min_limit_watts
    high = spec.max_limit_watts if gpu.max_limit_watts is None else gpu.max_limit_watts
    for label, value in (("min_limit_watts", low), ("max_limit_watts", high)):
        if not (spec.min_limit_watts <= value <= spec.max_limit_watts):
            problems.append(
                f"{where}: gpu.{label}: cap {value:g} W is outside {spec.name}'s settable range "
                f"[{spec.min_limit_watts:g}, {spec.max_limit_watts:g}] W; choose a cap in that range"
            )
    if not problems and low > high:
        problems.append(f"{where}: gpu: min_limit_watts {low:g} W is above max_limit_watts {high:g} W; swap them")
    if problems:
        raise ProfileError(*problems)
    return dataclasses.replace(spec, min_limit_watts=low, max_limit_watts=high,
                               default_limit_watts=min(high, max(low, spec.default_limit_watts)))


def _cap_model(gpu: GpuSpec, role: Role, power: PowerDoc, where: str) -> CapModel:
    base = default_cap_model(gpu, role)
    overrides = {k: v for k, v in power.model_dump().items() if v is not None}
    try:
        return dataclasses.replace(base, **overrides)
    except ProfileError as exc:
        raise ProfileError(*(f"{where}: {role.value}.power: {line}" for line in exc.lines)) from None


def _cap_models(gpu: GpuSpec, doc: ProfileDoc, where: str, problems: list[str]) -> dict[Role, CapModel]:
    caps: dict[Role, CapModel] = {}
    for role, power in ((Role.PREFILL, doc.prefill.power), (Role.DECODE, doc.decode.power)):
        try:
            caps[role] = _cap_model(gpu, role, power, where)
        except ProfileError as exc:
            problems.extend(exc.lines)
    return caps


def _max_kv_tokens(doc: ProfileDoc, gpu: GpuSpec, where: str, problems: list[str]) -> int:
    """``decode.kv.max_kv_tokens``, or what the memory arithmetic gives (below 1 when the weights leave no room)."""
    kv = doc.decode.kv
    if kv.max_kv_tokens is not None:
        return kv.max_kv_tokens
    assert kv.weights_gb is not None and kv.kv_bytes_per_token is not None
    max_kv = KvCapacity(gpus=doc.decode.tp, memory_gb_per_gpu=gpu.memory_gb, weights_gb=kv.weights_gb,
                        kv_bytes_per_token=kv.kv_bytes_per_token,
                        memory_utilization=kv.memory_utilization).max_kv_tokens
    if max_kv < 1:
        problems.append(f"{where}: decode.kv: the weights ({kv.weights_gb:g} GB) leave no memory for the KV cache "
                        f"on {doc.decode.tp} x {gpu.name}; raise decode.tp or lower weights_gb")
    return max_kv


def _prefill_model(doc: ProfileDoc, where: str, problems: list[str]) -> PrefillTimeModel | None:
    try:
        if doc.prefill.fit is not None:
            f = doc.prefill.fit
            return PrefillLatency(f.a_s, f.b_s_per_token, f.c_s_per_token2, source=doc.prefill.source)
        assert doc.prefill.table is not None
        t = doc.prefill.table
        table_problems = prefill_table_problems(t.isl_tokens, t.time_ms, None, f"{where}: prefill.table")
        problems.extend(p.replace("prefill_isl", "isl_tokens").replace("prefill_ttft", "time_ms")
                        for p in table_problems)
        if not table_problems:
            return PrefillTable(np.asarray(t.isl_tokens, dtype=np.float64),
                                np.asarray(t.time_ms, dtype=np.float64) / 1000.0, doc.prefill.source)
    except ProfileError as exc:
        problems.extend(f"{where}: {line}" for line in exc.lines)
    return None


def _decode_model(doc: ProfileDoc, max_kv: int, where: str, problems: list[str]) -> DecodeTimeModel | None:
    try:
        if doc.decode.fit is not None:
            d = doc.decode.fit
            if max_kv >= 1:
                limit = math.inf if d.quadratic_max_batch is None else d.quadratic_max_batch
                return DecodeLatency(d.base_s, d.per_seq_s, d.per_kv_token_s, d.per_seq_sq_s, max_kv_tokens=max_kv,
                                     source=doc.decode.source, quadratic_max_batch=limit)
            return None
        assert doc.decode.table is not None
        t = doc.decode.table
        table_problems = decode_table_problems(t.kv_usage, t.context_tokens, t.itl_ms, None, max_kv,
                                               f"{where}: decode.table")
        problems.extend(p.replace("x_kv_usage", "kv_usage").replace("y_context_length", "context_tokens")
                        .replace("z_itl", "itl_ms") for p in table_problems)
        if not table_problems and max_kv >= 1:
            return DecodeTable.from_points(
                np.asarray(t.kv_usage, dtype=np.float64), np.asarray(t.context_tokens, dtype=np.float64),
                np.asarray(t.itl_ms, dtype=np.float64) / 1000.0, max_kv, doc.decode.source)
    except ProfileError as exc:
        problems.extend(f"{where}: {line}" for line in exc.lines)
    return None


def profile_from_document(data: object, where: str) -> CappedProfile:
    """Validate a parsed document of our format and build its profile."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: the file must hold a mapping at the top level (see docs/profile-format.md)")
    try:
        doc = ProfileDoc.model_validate(dict(data))
    except ValidationError as exc:
        raise ProfileError(*profile_validation_lines(exc, where)) from None
    gpu = _gpu_from_doc(doc.gpu, where)
    problems: list[str] = []
    caps = _cap_models(gpu, doc, where, problems)
    max_kv = _max_kv_tokens(doc, gpu, where, problems)
    prefill_model = _prefill_model(doc, where, problems)
    decode_model = _decode_model(doc, max_kv, where, problems)
    if problems or prefill_model is None or decode_model is None:
        raise ProfileError(*(problems or [f"{where}: the profile is incomplete; see docs/profile-format.md"]))
    return CappedProfile(
        name=doc.name, gpu=gpu, prefill_tp=doc.prefill.tp, decode_tp=doc.decode.tp,
        prefill_caps=caps[Role.PREFILL], decode_caps=caps[Role.DECODE],
        prefill=prefill_model, decode=decode_model, source=doc.source or f"profile file {where}",
        context_window_tokens=doc.context_window_tokens,
    )


# ----------------------------------------------------------------------------------------------------------
# profile -> document


def document_from_profile(profile: CappedProfile) -> dict[str, Any]:
    """Our format's document for ``profile`` (round-trips through :func:`profile_from_document`)."""

    def power(cap: CapModel) -> dict[str, Any]:
        out = {"natural_draw_watts": cap.natural_draw_watts, "uncore_watts": cap.uncore_watts,
               "compute_share": cap.compute_share, "floor_clock": cap.floor_clock, "min_clock": cap.min_clock,
               "source": cap.source}
        for name in _DRAW_DIMENSIONS:  # written only when stated: a flat draw reads as before
            if getattr(cap, name) != _FLAT_DRAW[name]:
                out[name] = getattr(cap, name)
        return out

    catalog = gpu_catalog()[profile.gpu.name]
    gpu: Any = profile.gpu.name
    if (profile.gpu.min_limit_watts, profile.gpu.max_limit_watts) != (catalog.min_limit_watts,
                                                                       catalog.max_limit_watts):
        gpu = {"name": profile.gpu.name, "min_limit_watts": profile.gpu.min_limit_watts,
               "max_limit_watts": profile.gpu.max_limit_watts}
    prefill: dict[str, Any] = {"tp": profile.prefill_tp, "power": power(profile.prefill_caps)}
    if isinstance(profile.prefill, PrefillLatency):
        prefill["fit"] = {"a_s": profile.prefill.a_s, "b_s_per_token": profile.prefill.b_s_per_token,
                          "c_s_per_token2": profile.prefill.c_s_per_token2}
        prefill["source"] = profile.prefill.source
    elif isinstance(profile.prefill, PrefillTable):
        prefill["table"] = {"isl_tokens": profile.prefill.isl_tokens.tolist(),
                            "time_ms": (profile.prefill.times_s * 1000.0).tolist()}
        prefill["source"] = profile.prefill.source
    else:
        raise ProfileError(f"profile {profile.name}: its prefill model cannot be written in our format")
    decode: dict[str, Any] = {"tp": profile.decode_tp, "power": power(profile.decode_caps)}
    if isinstance(profile.decode, DecodeLatency):
        decode["fit"] = {"base_s": profile.decode.base_s, "per_seq_s": profile.decode.per_seq_s,
                         "per_kv_token_s": profile.decode.per_kv_token_s,
                         "per_seq_sq_s": profile.decode.per_seq_sq_s}
        if math.isfinite(profile.decode.quadratic_max_batch):  # absent means no limit; YAML's .inf is not JSON
            decode["fit"]["quadratic_max_batch"] = profile.decode.quadratic_max_batch
        decode["kv"] = {"max_kv_tokens": profile.decode.max_kv_tokens}
        decode["source"] = profile.decode.source
    elif isinstance(profile.decode, DecodeTable):
        usage: list[float] = []
        contexts: list[float] = []
        itl_ms: list[float] = []
        for ctx, (x, y) in zip(profile.decode.contexts.tolist(), profile.decode.curves, strict=True):
            usage.extend(x.tolist())
            contexts.extend([ctx] * len(x))
            itl_ms.extend((y * 1000.0).tolist())
        decode["table"] = {"kv_usage": usage, "context_tokens": contexts, "itl_ms": itl_ms}
        decode["kv"] = {"max_kv_tokens": profile.decode.max_kv_tokens}
        decode["source"] = profile.decode.source
    else:
        raise ProfileError(f"profile {profile.name}: its decode model cannot be written in our format")
    head: dict[str, Any] = {"format": FORMAT_V1, "name": profile.name, "source": profile.source}
    if profile.context_window_tokens is not None:
        head["context_window_tokens"] = profile.context_window_tokens
    return {**head, "gpu": gpu, "prefill": prefill, "decode": decode}


_DRAW_DIMENSIONS = ("draw_reference_tp", "draw_tp_exponent", "draw_half_batch", "draw_half_tokens_per_gpu")
_FLAT_DRAW = {f.name: f.default for f in dataclasses.fields(CapModel) if f.name in _DRAW_DIMENSIONS}
