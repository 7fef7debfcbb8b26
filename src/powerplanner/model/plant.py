"""The plant: the hardware the simulator runs, apart from the profile the planner believes (docs/simulator.md,
"Plants: simulated hardware apart from the planner's profile").

Why: when the simulated GPUs follow the planner's own profile, an error in the cap model can never show. A plant is
the planner's profile with some cap-model or latency constants replaced per role, written as a spec string::

    prefill-compute-bound                                  a named preset (PLANT_PRESETS)
    prefill.compute_share=1.0,decode.natural_draw_watts=300  overrides
    prefill-compute-bound,decode.compute_share=0.4           a preset, then overrides (later items win)

The empty spec is the planner's profile itself. Parsing is pure and total (one line per bad item, naming the valid
keys); building replaces fields of the profile's frozen cap and latency models, whose own checks then apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from powerplanner.errors import ConfigError, ProfileError
from powerplanner.model.capped import CappedProfile
from powerplanner.model.gpu import gpu_by_name
from powerplanner.model.latency import DecodeLatency, PrefillLatency
from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import Role

CAP_KEYS: tuple[str, ...] = ("natural_draw_watts", "uncore_watts", "compute_share", "floor_clock", "min_clock",
                             "draw_reference_tp", "draw_tp_exponent")
"""Cap-model constants a plant may replace in either role (the limits and idle draw belong to the GPU)."""

LOAD_KEYS: dict[Role, tuple[str, ...]] = {
    Role.PREFILL: ("draw_half_tokens_per_gpu",),
    Role.DECODE: ("draw_half_batch",),
}
"""The load dimension of each role's draw (model/capmodel.py): prefill by batch tokens per GPU, decode by batch."""

FRACTION_KEY = "natural_draw_fraction"
"""Natural draw as a fraction of the GPU's span from idle to TDP: ``natural_draw_watts = idle + f x (TDP - idle)``,
so one figure scales to any GPU (the presets measured on A100 use it)."""

LATENCY_KEYS: dict[Role, tuple[str, ...]] = {
    Role.PREFILL: ("a_s", "b_s_per_token", "c_s_per_token2"),
    Role.DECODE: ("base_s", "per_seq_s", "per_kv_token_s", "per_seq_sq_s"),
}
"""Latency constants of the fitted curves (PrefillLatency, DecodeLatency); a profile whose latency is a table
(Dynamo's) has none of them, and building a plant that names one says so."""

GPU_KEYS: tuple[str, ...] = ("variation", "seed")
"""Per-GPU spread: each simulated GPU's time multiplier is drawn from [1 - variation, 1 + variation] (seeded), and
a tensor-parallel replica runs at its slowest GPU's pace (SimSettings.gpu_time_variation)."""

PROFILE_PLANT = "profile"
"""The spec naming the planner's own profile as the plant (the default; the empty spec means the same)."""


@dataclass(frozen=True)
class PlantPreset:
    """A named plant: its overrides and where the figures come from."""

    name: str
    spec: str
    source: str


def plant_presets() -> dict[str, PlantPreset]:
    """The named plants (a function, not module state), each with the source of its figures."""
    presets = [
        PlantPreset(
            "prefill-compute-bound", "prefill.compute_share=1.0",
            "upper bound of the DVFS model: prefill time proportional to 1 / clock (GEMM-bound). The built-in "
            "share 0.7342 is fitted on Splitwise's h100-80gb-pcap rows, which are the uncapped rows with prompt "
            "time x1.300: a modelling assumption of that simulator, not a measurement",
        ),
    ]
    presets.append(PlantPreset(
        "decode-draw-by-tp", f"decode.{FRACTION_KEY}=0.4665,decode.draw_reference_tp=4,decode.draw_tp_exponent=0.525",
        "Splitwise's A100-80GB Llama-2-70B runs (splitwise_perf_model.csv, average_power of decode-dominated rows, "
        "batch 1): per GPU 272-293 W at TP2, 223-237 W at TP4, 164-174 W at TP8. Fitted as the draw above idle "
        "(63 W) ~ TP^-0.525 through the range midpoints (289/220/172 W vs 282.5/230/169 W, within 4.3%); at TP4 "
        "0.4665 of the idle-to-TDP span, scaled to the GPU (H100 TP2/4/8: 495/367/278 W against the built-in "
        "380 W). Measured on 70B at TP 2-8 only: other TPs and models extrapolate",
    ))
    presets.append(PlantPreset(
        "prefill-draw-by-batch", "prefill.draw_half_tokens_per_gpu=19",
        "Splitwise's A100-80GB Llama-2-70B runs (peak_power, 33 prompt x batch x TP configurations): prefill "
        "peaks at 46% of TDP for 128-token prompts at TP8 and 64-81% for 32-64 tokens per GPU, ~TDP from ~256 "
        "tokens per GPU. Fitted as the draw above idle x tokens_per_gpu / (tokens_per_gpu + 19) (rms 6.3% of "
        "TDP; per-replica tokens fit worse, 10.3%). A100's figure, unscaled on other GPUs (nothing measured)",
    ))
    presets.append(PlantPreset(
        "gpu-variation", "variation=0.05",
        "+-5% per GPU (the figure issue 13 names), below the 8% average (max 22%) performance variation among "
        "GPUs of one SKU that Sinha et al. measured on V100 and MI60 clusters (SC 2022, 'Not All GPUs Are Created "
        "Equal', arXiv 2208.11035); uniform, seeded (add seed=N), a TP replica at its slowest GPU's pace",
    ))
    return {p.name: p for p in presets}


@dataclass(frozen=True)
class PlantOverride:
    role: Role
    key: str
    value: float


@dataclass(frozen=True)
class PlantSpec:
    """A parsed plant: presets (in order) then overrides. ``text`` is the canonical spec (``format_plant``)."""

    presets: tuple[str, ...] = ()
    overrides: tuple[PlantOverride, ...] = ()
    variation: float | None = None  # per-GPU time spread (fraction); None: a preset's, else none
    seed: int | None = None  # of the per-GPU draws; None: 0

    @property
    def is_profile(self) -> bool:
        """True when the plant is the planner's profile unchanged (the default)."""
        return not self.presets and not self.overrides and self.variation is None and self.seed is None

    def gpu_variation(self) -> tuple[float, int]:
        """The per-GPU time spread and its seed: explicit items win over presets, the last preset over earlier."""
        table = plant_presets()
        variation = self.variation
        if variation is None:
            found = [v for v in (parse_plant(table[n].spec).variation for n in self.presets) if v is not None]
            variation = found[-1] if found else 0.0
        return variation, self.seed or 0

    @property
    def text(self) -> str:
        """The canonical spec; ``profile`` for the planner's profile."""
        return format_plant(self) or PROFILE_PLANT

    def to_json(self, profile: str) -> dict[str, Any]:
        """What results.json says of the plant: its canonical spec, whether it differs from the planner's
        ``profile``, and every constant it replaces (``role.key`` -> value)."""
        return {
            "spec": self.text,
            "differs_from_profile": not self.is_profile,
            "profile": profile,
            "overrides": {f"{o.role.value}.{o.key}": o.value for o in self.resolved()},
            "gpu_variation": self.gpu_variation()[0],
            "gpu_variation_seed": self.gpu_variation()[1],
        }

    def resolved(self) -> tuple[PlantOverride, ...]:
        """Every override, presets expanded first; explicit overrides win over presets, a later item over an
        earlier one when they name the same key."""
        table = plant_presets()
        out: list[PlantOverride] = []
        for name in self.presets:
            out += parse_plant(table[name].spec).overrides
        out += self.overrides
        last = {(o.role, o.key): o for o in out}
        return tuple(last.values())


def role_keys(role: Role) -> tuple[str, ...]:
    """Every key a plant may set for ``role`` (without the ``role.`` prefix)."""
    return (*CAP_KEYS, *LOAD_KEYS[role], FRACTION_KEY, *LATENCY_KEYS[role])


def valid_keys_text() -> str:
    keys = [f"{role.value}.{k}" for role in (Role.PREFILL, Role.DECODE) for k in role_keys(role)]
    return ", ".join([*keys, *GPU_KEYS])


def format_plant(spec: PlantSpec) -> str:
    """The canonical spec string (``repr`` of each value, so it parses back to the same floats)."""
    items = [*spec.presets, *(f"{o.role.value}.{o.key}={o.value!r}" for o in spec.overrides)]
    if spec.variation is not None:
        items.append(f"variation={spec.variation!r}")
    if spec.seed is not None:
        items.append(f"seed={spec.seed}")
    return ",".join(items)


def parse_plant(text: str) -> PlantSpec:
    """Parse a plant spec; raise :class:`ConfigError` with one line per bad item, naming the valid keys."""
    presets: list[str] = []
    overrides: list[PlantOverride] = []
    gpu: dict[str, float | int] = {}
    problems: list[str] = []
    table = plant_presets()
    for raw in text.split(","):
        item = raw.strip()
        if not item or item == PROFILE_PLANT:
            continue
        if "=" not in item:
            if item in table:
                presets.append(item)
            else:
                problems.append(f"plant: {item!r} is neither a preset ({', '.join(table)}) nor KEY=VALUE; "
                                f"valid keys: {valid_keys_text()}")
            continue
        if item.partition("=")[0].strip() in GPU_KEYS:
            problem = _parse_gpu_item(item, gpu)
        else:
            override, problem = _parse_override(item)
            if override is not None:
                overrides.append(override)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(*problems)
    variation = gpu.get("variation")
    seed = gpu.get("seed")
    return PlantSpec(tuple(presets), tuple(overrides), None if variation is None else float(variation),
                     None if seed is None else int(seed))


def _parse_gpu_item(item: str, into: dict[str, float | int]) -> str:
    key, _, value_text = (part.strip() for part in item.partition("="))
    if key == "seed":
        if not value_text.isdigit() or not value_text.isascii():
            return f"plant: seed = {value_text!r} must be an integer >= 0; e.g. seed=1"
        into["seed"] = int(value_text)
        return ""
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value < 1):
        return f"plant: variation = {value_text!r} must be a fraction in [0, 1); e.g. variation=0.05 for +-5%"
    into["variation"] = value
    return ""


def _parse_override(item: str) -> tuple[PlantOverride | None, str]:
    key_text, _, value_text = item.partition("=")
    role_text, dot, key = key_text.strip().partition(".")
    role = next((r for r in Role if r.value == role_text), None)
    if role is None or not dot or key not in role_keys(role):
        return None, f"plant: unknown key {key_text.strip()!r}; valid keys: {valid_keys_text()}"
    try:
        value = float(value_text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return None, f"plant: {key_text.strip()} = {value_text.strip()!r} is not a finite number; give a number"
    return PlantOverride(role, key, value), ""


def build_plant(profile: PowerProfile, spec: PlantSpec) -> PowerProfile:
    """The planner's ``profile`` with the spec's constants replaced (the profile itself when none is replaced; a
    per-GPU spread is the engine's, see :meth:`PlantSpec.gpu_variation`).

    The plant keeps the profile's GPU and TP sizes: the planner's steps name replicas and caps of that hardware.
    Raises :class:`ConfigError` naming each constant the result's own checks reject.
    """
    overrides = spec.resolved()
    if not overrides:  # the planner's profile, or only a per-GPU spread (which the engine applies)
        return profile
    if not isinstance(profile, CappedProfile):
        raise ConfigError(f"plant {spec.text}: profile {profile.name} has no cap or latency constants to replace; "
                          "use the planner's profile as the plant (--plant profile)")
    parts: dict[Role, dict[str, dict[str, Any]]] = {r: {"caps": {}, "latency": {}} for r in Role}
    tdp_watts = gpu_by_name(profile.gpu.name).max_limit_watts  # the catalog's TDP, not a site's narrowed limit
    for o in overrides:  # in order, so a later natural_draw_watts or fraction wins over an earlier one
        if o.key == FRACTION_KEY:
            idle = profile.gpu.idle_watts
            parts[o.role]["caps"]["natural_draw_watts"] = idle + o.value * (tdp_watts - idle)
        else:
            parts[o.role]["latency" if o.key in LATENCY_KEYS[o.role] else "caps"][o.key] = o.value
    builders: dict[str, Callable[[], Any]] = {
        "prefill_caps": lambda: replace(profile.prefill_caps, **parts[Role.PREFILL]["caps"]),
        "decode_caps": lambda: replace(profile.decode_caps, **parts[Role.DECODE]["caps"]),
        "prefill": lambda: _latency(profile.prefill, Role.PREFILL, parts[Role.PREFILL]["latency"], profile.name),
        "decode": lambda: _latency(profile.decode, Role.DECODE, parts[Role.DECODE]["latency"], profile.name),
    }
    changed: dict[str, Any] = {}
    problems: list[str] = []
    for name, build in builders.items():  # every part, so one run names every bad constant
        try:
            changed[name] = build()
        except ProfileError as exc:
            problems += [f"plant {spec.text}: {line}" for line in exc.lines]
    if problems:
        raise ConfigError(*problems)
    return replace(profile, name=f"{profile.name} [plant {spec.text}]", **changed)


def _latency(model: Any, role: Role, values: dict[str, Any], profile_name: str) -> Any:
    if not values:
        return model
    if role is Role.PREFILL and isinstance(model, PrefillLatency):
        return replace(model, **values)
    if role is Role.DECODE and isinstance(model, DecodeLatency):
        return replace(model, **values)
    raise ProfileError(f"profile {profile_name}'s {role.value} latency is a table, not a fitted curve; "
                       f"override only its cap model ({', '.join(f'{role.value}.{k}' for k in CAP_KEYS)})")
