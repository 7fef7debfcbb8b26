"""The concrete power-performance profile: uncapped latency models times the cap model's slowdown.

:class:`CappedProfile` implements :class:`~powerplanner.model.profile.PowerProfile` for any pair of latency
models (fitted curves or Dynamo's interpolated tables), so every source of profile data gets the same power
physics, queueing and throughput searches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from powerplanner.errors import ProfileError
from powerplanner.model.capmodel import CapModel
from powerplanner.model.gpu import GpuSpec
from powerplanner.model.latency import DecodeTimeModel, PrefillTimeModel
from powerplanner.model.roles import Role


@dataclass(eq=False)
class CappedProfile:
    """One model on one GPU type, prefill and decode at fixed TP, under per-GPU power caps.

    Treat it as immutable. It is not a frozen dataclass only because :class:`PowerProfile` declares ``name``
    and ``gpu`` as plain attributes, which a frozen (read-only) field does not satisfy for type checkers;
    ``eq=False`` keeps identity hashing, so a profile can still key a cache.

    TTFT uses an M/D/1 queue per replica (Poisson arrivals, one prompt prefilled at a time, deterministic
    service time): simple, monotone in load, and infinite at saturation, which is what SLA sizing needs.

    The cap models are stated at their ``draw_reference_tp``; the profile uses them at its own TP
    (:meth:`CapModel.at_tp`), and at each batch's load (prefill: prompt tokens per GPU; decode: sequences) when
    a cap model's draw depends on load. ``context_window_tokens``: the model's window (prompt + output), None
    when unknown (docs/profile-format.md).
    """

    name: str
    gpu: GpuSpec
    prefill_tp: int
    decode_tp: int
    prefill_caps: CapModel
    decode_caps: CapModel
    prefill: PrefillTimeModel
    decode: DecodeTimeModel
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    context_window_tokens: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.prefill_tp < 1 or self.decode_tp < 1:
            problems.append(f"profile {self.name}: tensor-parallel sizes must be >= 1; fix prefill_tp/decode_tp")
        if self.prefill_caps.role is not Role.PREFILL or self.decode_caps.role is not Role.DECODE:
            problems.append(f"profile {self.name}: cap models are attached to the wrong roles")
        if self.context_window_tokens is not None and self.context_window_tokens < 1:
            problems.append(f"profile {self.name}: context_window_tokens must be >= 1; give the model's window")
        if problems:
            raise ProfileError(*problems)
        # The cap models at this profile's TP sizes (the stated ones are at their draw_reference_tp).
        self._prefill_at_tp = self.prefill_caps.at_tp(self.prefill_tp)
        self._decode_at_tp = self.decode_caps.at_tp(self.decode_tp)

    # structure
    def cap_model(self, role: Role) -> CapModel:
        """The role's cap model at this profile's TP size."""
        return self._prefill_at_tp if role is Role.PREFILL else self._decode_at_tp

    def draw_varies_with_load(self, role: Role) -> bool:
        """True when ``role``'s busy draw depends on its batch (see :meth:`busy_draw_at_load_watts`)."""
        return self.cap_model(role).draws_by_load

    def busy_draw_at_load_watts(self, role: Role, cap_watts: float, load: float) -> float:
        """Per-GPU draw of a busy replica of ``role`` at ``cap_watts`` running a batch of ``load``: prompt tokens
        of the whole batch (prefill) or sequences (decode); never above the cap."""
        caps = self.cap_model(role)
        return caps.draw_watts(cap_watts, 1.0, caps.activity(self._per_gpu_load(role, load)))

    def _per_gpu_load(self, role: Role, load: float) -> float:
        return load / self.prefill_tp if role is Role.PREFILL else load

    def gpus_per_replica(self, role: Role) -> int:
        return self.prefill_tp if role is Role.PREFILL else self.decode_tp

    def cap_levels(self, role: Role, count: int) -> tuple[float, ...]:
        return self.cap_model(role).cap_levels(count)

    def natural_draw_watts(self, role: Role) -> float:
        return self.cap_model(role).natural_draw_watts

    def slowdown(self, role: Role, cap_watts: float) -> float:
        """Latency multiplier of ``role`` at ``cap_watts`` relative to an uncapped GPU (at saturating load)."""
        return self.cap_model(role).slowdown(cap_watts)

    # prefill
    def prefill_time_s(self, tokens: float, cap_watts: float) -> float:
        _check_finite("tokens", tokens)
        caps = self._prefill_at_tp
        return self.prefill.time_s(tokens) * caps.slowdown(cap_watts, caps.activity(tokens / self.prefill_tp))

    def ttft_s(self, isl_tokens: float, requests_per_s: float, cap_watts: float) -> float:
        _check_finite("requests_per_s", requests_per_s)
        service_s = self.prefill_time_s(isl_tokens, cap_watts)
        rho = max(0.0, requests_per_s) * service_s
        if rho >= 1.0:
            return math.inf
        return service_s + rho * service_s / (2.0 * (1.0 - rho))

    def prefill_throughput_tokens_per_s_per_gpu(
        self, isl_tokens: float, cap_watts: float, ttft_target_s: float | None = None
    ) -> float:
        service_s = self.prefill_time_s(isl_tokens, cap_watts)
        tokens = max(1.0, isl_tokens)
        if ttft_target_s is None:
            rho = 1.0
        else:
            if service_s > ttft_target_s:
                return 0.0
            ratio = ttft_target_s / service_s  # M/D/1: W + S <= T  <=>  rho <= (2r - 2) / (2r - 1)
            rho = (2.0 * ratio - 2.0) / (2.0 * ratio - 1.0)
        return rho * tokens / service_s / self.prefill_tp

    # decode
    def decode_itl_s(self, batch: float, context_tokens: float, cap_watts: float) -> float:
        _check_finite("batch", batch)
        _check_finite("context_tokens", context_tokens)
        b = max(1.0, batch)
        caps = self._decode_at_tp
        return self.decode.itl_s(b, context_tokens) * caps.slowdown(cap_watts, caps.activity(b))

    def max_batch(self, context_tokens: float) -> int:
        _check_finite("context_tokens", context_tokens)
        return self.decode.max_batch(context_tokens)

    def best_decode_batch(self, context_tokens: float, cap_watts: float, itl_target_s: float | None = None) -> int:
        """The batch (<= max_batch) with the highest throughput whose ITL meets the target; 0 if none does."""
        caps = self._decode_at_tp
        batches = np.arange(1, self.max_batch(context_tokens) + 1, dtype=np.float64)
        slow: float | np.ndarray = caps.slowdown(cap_watts)
        if caps.draws_by_load:  # a smaller batch draws less, so the cap slows it less
            slow = np.array([caps.slowdown(cap_watts, caps.activity(b)) for b in batches.tolist()])
        itl = self.decode.itl_s_batches(batches, context_tokens) * slow
        throughput = batches / itl
        if itl_target_s is not None:
            throughput = np.where(itl <= itl_target_s, throughput, -1.0)
        best = int(np.argmax(throughput))
        return 0 if throughput[best] < 0 else int(batches[best])

    def decode_throughput_tokens_per_s_per_gpu(
        self, context_tokens: float, cap_watts: float, itl_target_s: float | None = None
    ) -> float:
        batch = self.best_decode_batch(context_tokens, cap_watts, itl_target_s)
        if batch == 0:
            return 0.0
        return batch / self.decode_itl_s(batch, context_tokens, cap_watts) / self.decode_tp

    # power
    def draw_watts(self, role: Role, cap_watts: float, utilization: float) -> float:
        """At saturating load: the upper envelope of :meth:`busy_draw_at_load_watts` (what a caller that does
        not know the batch, like the planner's sizing, should budget for)."""
        return self.cap_model(role).draw_watts(cap_watts, utilization)

    def idle_watts(self) -> float:
        return self.gpu.idle_watts

    def energy_per_token_j(
        self, role: Role, cap_watts: float, isl_tokens: float = 2048.0, context_tokens: float = 2048.0
    ) -> float:
        """Joules per token of a fully busy GPU in ``role`` (prefill: prompt tokens at ``isl_tokens``; decode:
        output tokens at the best batch for ``context_tokens``); ``inf`` when it makes no progress."""
        if role is Role.PREFILL:
            rate = self.prefill_throughput_tokens_per_s_per_gpu(isl_tokens, cap_watts)
        else:
            rate = self.decode_throughput_tokens_per_s_per_gpu(context_tokens, cap_watts)
        if rate <= 0:
            return math.inf
        return self.draw_watts(role, cap_watts, 1.0) / rate


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ProfileError(f"{name} = {value!r} is not a finite number; pass a finite value")
