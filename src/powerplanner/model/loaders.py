"""Reading profiles from files: the only I/O in ``model/``.

Two kinds of input (docs/profile-format.md describes both):

- our own format, a YAML (or JSON) document ``format: powerplanner-profile/v1`` with the power dimension:
  per role the TP size, the cap model's constants and either fitted latency coefficients or measured tables;
- Dynamo's profiler output, which has no power axis: ``selected_prefill_interpolation/raw_data.npz``
  (``prefill_isl``, ``prefill_ttft`` ms, ``prefill_thpt_per_gpu``) and
  ``selected_decode_interpolation/raw_data.npz`` (``x_kv_usage``, ``y_context_length``, ``z_itl`` ms,
  ``z_thpt_per_gpu``, ``max_kv_tokens``), or their JSON twins ``prefill_raw_data.json`` /
  ``decode_raw_data.json``. It is combined with the named GPU's default cap model.

Every problem becomes one :class:`~powerplanner.errors.ProfileError` line naming the file, the field and the
fix; pydantic validates the YAML document here, at the edge, and the rest of ``model/`` gets plain values.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from powerplanner.errors import ProfileError, validation_lines
from powerplanner.input_files import read_json, read_yaml
from powerplanner.input_schema import InputModel
from powerplanner.model.builtin import default_cap_model
from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.gpu import GpuSpec, gpu_by_name, gpu_catalog, known_gpus_text
from powerplanner.model.latency import DecodeLatency, DecodeTimeModel, KvCapacity, PrefillLatency, PrefillTimeModel
from powerplanner.model.roles import Role
from powerplanner.model.tables import (
    DecodeTable,
    PrefillTable,
    decode_table_problems,
    decode_tp_from_dynamo,
    prefill_table_problems,
    prefill_tp_from_dynamo,
)

FORMAT_V1 = "powerplanner-profile/v1"
PREFILL_KEYS = ("prefill_isl", "prefill_ttft", "prefill_thpt_per_gpu")
DECODE_KEYS = ("x_kv_usage", "y_context_length", "z_itl", "z_thpt_per_gpu", "max_kv_tokens")
PREFILL_NPZ = Path("selected_prefill_interpolation") / "raw_data.npz"
DECODE_NPZ = Path("selected_decode_interpolation") / "raw_data.npz"
PREFILL_JSON = "prefill_raw_data.json"
DECODE_JSON = "decode_raw_data.json"

# ----------------------------------------------------------------------------------------------------------
# our format: the document schema (pydantic, at the edge)

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Clock = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]


class _Doc(InputModel):
    """Strict, like every input model (powerplanner.input_schema): ``true`` is not a number."""


class GpuDoc(_Doc):
    name: str
    min_limit_watts: Positive | None = None
    max_limit_watts: Positive | None = None


class PowerDoc(_Doc):
    """Cap model constants; any left out come from the GPU's default cap model."""

    natural_draw_watts: Positive | None = None
    uncore_watts: NonNegative | None = None
    compute_share: Share | None = None
    floor_clock: Clock | None = None
    min_clock: Clock | None = None
    source: str | None = None


class PrefillFitDoc(_Doc):
    a_s: NonNegative
    b_s_per_token: NonNegative
    c_s_per_token2: NonNegative = 0.0


class PrefillTableDoc(_Doc):
    isl_tokens: list[float]
    time_ms: list[float]


class DecodeFitDoc(_Doc):
    """``quadratic_max_batch``: the largest batch the fit was measured at; beyond it the ``per_seq_sq_s`` term
    continues along its tangent (see :class:`DecodeLatency`). Optional so that files written before it existed
    load as they did (no limit); ``.inf`` says the same explicitly."""

    base_s: Positive
    per_seq_s: NonNegative
    per_kv_token_s: NonNegative
    per_seq_sq_s: NonNegative = 0.0
    quadratic_max_batch: float | None = None

    @field_validator("quadratic_max_batch", mode="before")
    @classmethod
    def _batch_limit(cls, value: object) -> object:
        # One message for every bad input (a string, a bool, NaN, < 1), naming the fix; pydantic's own would
        # say only "greater than or equal to 1" or "valid number".
        number: float | None = None
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                number = float(value)
            except ValueError:
                number = None
        if value is not None and (number is None or math.isnan(number) or number < 1):
            raise ValueError("must be a number >= 1, the largest decode batch the fit was measured at "
                             "(beyond it ITL grows linearly); leave it out for no limit")
        return value if value is None else number


class DecodeTableDoc(_Doc):
    kv_usage: list[float]
    context_tokens: list[float]
    itl_ms: list[float]


class KvDoc(_Doc):
    """Either ``max_kv_tokens`` directly or the memory arithmetic that gives it."""

    max_kv_tokens: PositiveInt | None = None
    weights_gb: NonNegative | None = None
    kv_bytes_per_token: Positive | None = None
    memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9

    @model_validator(mode="after")
    def _one_way(self) -> KvDoc:
        if self.max_kv_tokens is None and (self.weights_gb is None or self.kv_bytes_per_token is None):
            raise ValueError("give max_kv_tokens, or weights_gb and kv_bytes_per_token")
        return self


class PrefillDoc(_Doc):
    tp: PositiveInt
    power: PowerDoc = PowerDoc()
    fit: PrefillFitDoc | None = None
    table: PrefillTableDoc | None = None
    source: str = ""

    @model_validator(mode="after")
    def _one_latency(self) -> PrefillDoc:
        if (self.fit is None) == (self.table is None):
            raise ValueError("give exactly one of prefill.fit (coefficients) or prefill.table (measurements)")
        return self


class DecodeDoc(_Doc):
    tp: PositiveInt
    power: PowerDoc = PowerDoc()
    fit: DecodeFitDoc | None = None
    table: DecodeTableDoc | None = None
    kv: KvDoc
    source: str = ""

    @model_validator(mode="after")
    def _one_latency(self) -> DecodeDoc:
        if (self.fit is None) == (self.table is None):
            raise ValueError("give exactly one of decode.fit (coefficients) or decode.table (measurements)")
        return self


class ProfileDoc(_Doc):
    format: Literal["powerplanner-profile/v1"]
    name: str = Field(min_length=1)
    source: str = ""
    gpu: GpuDoc
    prefill: PrefillDoc
    decode: DecodeDoc

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_name_or_mapping(cls, value: object) -> object:
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, Mapping):
            raise ValueError("must be a GPU name (e.g. H100-SXM) or a mapping {name, min_limit_watts, "
                             "max_limit_watts}")
        return value


def _validation_lines(error: ValidationError, where: str) -> list[str]:
    return validation_lines(
        error, where, docs="docs/profile-format.md", missing_hint=" (see docs/profile-format.md)",
        messages={("literal_error", ("format",)): f"must be {FORMAT_V1!r}"},
    )


# ----------------------------------------------------------------------------------------------------------
# pure builders (no I/O): documents and Dynamo arrays to profiles


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


def profile_from_document(data: object, where: str) -> CappedProfile:
    """Validate a parsed document of our format and build its profile."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: the file must hold a mapping at the top level (see docs/profile-format.md)")
    try:
        doc = ProfileDoc.model_validate(dict(data))
    except ValidationError as exc:
        raise ProfileError(*_validation_lines(exc, where)) from None
    gpu = _gpu_from_doc(doc.gpu, where)
    problems: list[str] = []
    prefill_model: PrefillTimeModel | None = None
    decode_model: DecodeTimeModel | None = None
    caps: dict[Role, CapModel] = {}
    for role, power in ((Role.PREFILL, doc.prefill.power), (Role.DECODE, doc.decode.power)):
        try:
            caps[role] = _cap_model(gpu, role, power, where)
        except ProfileError as exc:
            problems.extend(exc.lines)

    kv = doc.decode.kv
    if kv.max_kv_tokens is not None:
        max_kv = kv.max_kv_tokens
    else:
        assert kv.weights_gb is not None and kv.kv_bytes_per_token is not None
        max_kv = KvCapacity(gpus=doc.decode.tp, memory_gb_per_gpu=gpu.memory_gb, weights_gb=kv.weights_gb,
                            kv_bytes_per_token=kv.kv_bytes_per_token,
                            memory_utilization=kv.memory_utilization).max_kv_tokens
        if max_kv < 1:
            problems.append(f"{where}: decode.kv: the weights ({kv.weights_gb:g} GB) leave no memory for the KV cache "
                            f"on {doc.decode.tp} x {gpu.name}; raise decode.tp or lower weights_gb")

    try:
        if doc.prefill.fit is not None:
            f = doc.prefill.fit
            prefill_model = PrefillLatency(f.a_s, f.b_s_per_token, f.c_s_per_token2, source=doc.prefill.source)
        else:
            assert doc.prefill.table is not None
            t = doc.prefill.table
            table_problems = prefill_table_problems(t.isl_tokens, t.time_ms, None, f"{where}: prefill.table")
            problems.extend(p.replace("prefill_isl", "isl_tokens").replace("prefill_ttft", "time_ms")
                            for p in table_problems)
            if not table_problems:
                prefill_model = PrefillTable(np.asarray(t.isl_tokens, dtype=np.float64),
                                             np.asarray(t.time_ms, dtype=np.float64) / 1000.0, doc.prefill.source)
    except ProfileError as exc:
        problems.extend(f"{where}: {line}" for line in exc.lines)

    try:
        if doc.decode.fit is not None:
            d = doc.decode.fit
            if max_kv >= 1:
                limit = math.inf if d.quadratic_max_batch is None else d.quadratic_max_batch
                decode_model = DecodeLatency(d.base_s, d.per_seq_s, d.per_kv_token_s, d.per_seq_sq_s,
                                             max_kv_tokens=max_kv, source=doc.decode.source,
                                             quadratic_max_batch=limit)
        else:
            assert doc.decode.table is not None
            t2 = doc.decode.table
            table_problems = decode_table_problems(t2.kv_usage, t2.context_tokens, t2.itl_ms, None, max_kv,
                                                   f"{where}: decode.table")
            problems.extend(p.replace("x_kv_usage", "kv_usage").replace("y_context_length", "context_tokens")
                            .replace("z_itl", "itl_ms") for p in table_problems)
            if not table_problems and max_kv >= 1:
                decode_model = DecodeTable.from_points(
                    np.asarray(t2.kv_usage, dtype=np.float64), np.asarray(t2.context_tokens, dtype=np.float64),
                    np.asarray(t2.itl_ms, dtype=np.float64) / 1000.0, max_kv, doc.decode.source)
    except ProfileError as exc:
        problems.extend(f"{where}: {line}" for line in exc.lines)

    if problems or prefill_model is None or decode_model is None:
        raise ProfileError(*(problems or [f"{where}: the profile is incomplete; see docs/profile-format.md"]))
    return CappedProfile(
        name=doc.name, gpu=gpu, prefill_tp=doc.prefill.tp, decode_tp=doc.decode.tp,
        prefill_caps=caps[Role.PREFILL], decode_caps=caps[Role.DECODE],
        prefill=prefill_model, decode=decode_model, source=doc.source or f"profile file {where}",
    )


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
    missing_p = [k for k in PREFILL_KEYS if k not in prefill]
    missing_d = [k for k in DECODE_KEYS if k not in decode]
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


# ----------------------------------------------------------------------------------------------------------
# file I/O


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: np.asarray(archive[key]) for key in archive.files}
    except FileNotFoundError:
        raise ProfileError(f"{path}: file not found; check the path") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProfileError(
            f"{path}: not a readable .npz archive (truncated or corrupt: {reason}); regenerate it with the profiler"
        ) from None


def _read_json(path: Path) -> Any:
    return read_json(path, ProfileError, not_found="file not found; check the path", what="profile")


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, ProfileError, not_found="file not found; check the path", what="profile",
                     empty_is_mapping=False)


def _read_arrays(path: Path) -> dict[str, Any]:
    data = _read_npz(path) if path.suffix == ".npz" else _read_json(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of arrays at the top level; regenerate it with the profiler")
    return data


def _dynamo_pair(path: Path) -> tuple[Path, Path]:
    """The prefill and decode raw-data files of a Dynamo profiler output, given its directory or one file."""
    if path.is_dir():
        candidates = [(path / PREFILL_NPZ, path / DECODE_NPZ), (path / PREFILL_JSON, path / DECODE_JSON)]
        for pre, dec in candidates:
            if pre.exists() or dec.exists():
                return pre, dec
        raise ProfileError(
            f"{path}: no Dynamo profiler output here (looked for {PREFILL_NPZ} and {DECODE_NPZ}, or "
            f"{PREFILL_JSON} and {DECODE_JSON}); point at the profiler's output directory"
        )
    if path.name == "raw_data.npz":
        root = path.parent.parent
        return root / PREFILL_NPZ, root / DECODE_NPZ
    if path.name in (PREFILL_JSON, DECODE_JSON):
        return path.parent / PREFILL_JSON, path.parent / DECODE_JSON
    return path, path  # one file holding both halves


def load_profile_path(path: str, gpu: str | None = None) -> CappedProfile:
    """A profile from our YAML/JSON format or from Dynamo's profiler output (directory, npz or JSON)."""
    p = Path(path)
    if not p.exists():
        raise ProfileError(f"{p}: no such file or directory; give a profile file (.yaml, .npz, .json) or a Dynamo "
                           "profiler output directory")
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        return profile_from_document(_read_yaml(p), str(p))
    if p.is_file() and p.suffix == ".json":
        data = _read_json(p)
        if isinstance(data, dict) and "format" in data:
            return profile_from_document(data, str(p))
    if p.is_file() and p.suffix not in (".npz", ".json"):
        raise ProfileError(f"{p}: unknown profile file type {p.suffix!r}; use .yaml/.yml (our format), .npz or .json "
                           "(Dynamo's profiler output)")
    pre_path, dec_path = _dynamo_pair(p)
    pre = _read_arrays(pre_path) if pre_path.exists() else None
    dec = pre if dec_path == pre_path else (_read_arrays(dec_path) if dec_path.exists() else None)
    if pre is None or dec is None:
        absent = pre_path if pre is None else dec_path
        raise ProfileError(f"{absent}: file not found; a Dynamo profile needs both the prefill and the decode raw data")
    name = f"dynamo:{(p if p.is_dir() else pre_path.parent.parent if p.name == 'raw_data.npz' else p.parent).name}"
    return profile_from_dynamo(pre, dec, gpu, name, str(pre_path), str(dec_path))


def document_from_profile(profile: CappedProfile) -> dict[str, Any]:
    """Our format's document for ``profile`` (round-trips through :func:`profile_from_document`)."""

    def power(cap: CapModel) -> dict[str, Any]:
        return {"natural_draw_watts": cap.natural_draw_watts, "uncore_watts": cap.uncore_watts,
                "compute_share": cap.compute_share, "floor_clock": cap.floor_clock, "min_clock": cap.min_clock,
                "source": cap.source}

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
    return {"format": FORMAT_V1, "name": profile.name, "source": profile.source, "gpu": gpu,
            "prefill": prefill, "decode": decode}
