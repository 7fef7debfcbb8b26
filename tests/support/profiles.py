"""Fake power profiles on an H100, and the hypothesis strategies that draw them.

Both obey the :class:`~powerplanner.model.profile.PowerProfile` contract (draw never above the cap, an
M/D/1 queue for TTFT) and differ in what a test needs from them:

- :class:`FakeProfile` (planner tests): the physics the planner relies on. Prefill is compute-bound: its
  throughput scales with a clock factor that falls as the cap drops below the role's natural draw. Decode is
  memory-bound: its iteration time is nearly flat in the cap. Parameters are fields so property tests can
  draw random profiles (:data:`fake_profiles`).
- :class:`ClosedFormProfile` (simulator tests): closed forms a test can compute by hand, so the engine's
  tests pin the engine alone: prefill ``a + b*N`` seconds at TDP, decode ``c + d*B + e*B*L``, both slowed in
  proportion to the clock lost to the cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

from hypothesis import strategies as st

from powerplanner.errors import ProfileError
from powerplanner.model.gpu import GpuSpec, gpu_by_name
from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import Role


class _FakeH100:
    """What both fakes compute alike: evenly spaced cap levels over the GPU's range, a KV-bounded batch, the
    GPU's idle draw and TTFT as an M/D/1 queue over :meth:`prefill_time_s`."""

    gpu: GpuSpec
    kv_tokens: float

    def prefill_time_s(self, tokens: float, cap_watts: float) -> float:
        raise NotImplementedError

    def cap_levels(self, role: Role, count: int) -> tuple[float, ...]:
        lo, hi = self.gpu.min_limit_watts, self.gpu.max_limit_watts
        return tuple(lo + (hi - lo) * i / (count - 1) for i in range(count))

    def ttft_s(self, isl_tokens: float, requests_per_s: float, cap_watts: float) -> float:
        service = self.prefill_time_s(isl_tokens, cap_watts)
        rho = requests_per_s * service
        return math.inf if rho >= 1 else service + rho * service / (2 * (1 - rho))

    def max_batch(self, context_tokens: float) -> int:
        return max(1, int(self.kv_tokens / max(1.0, context_tokens)))

    def idle_watts(self) -> float:
        return self.gpu.idle_watts


@dataclass
class FakeProfile(_FakeH100):  # not frozen: PowerProfile declares name/gpu as plain attributes
    """The planner tests' profile: analytic clock factors, TP ``tp_prefill``/``tp_decode`` replicas."""

    name: str = "fake-h100"
    gpu: GpuSpec = field(default_factory=lambda: gpu_by_name("H100-SXM"))
    tp_prefill: int = 4
    tp_decode: int = 4
    prefill_tokens_per_s_per_gpu_at_tdp: float = 6000.0
    prefill_natural_watts: float = 650.0
    prefill_exponent: float = 0.45  # clock ~ (cap - static)^exponent below the natural draw
    decode_natural_watts: float = 380.0
    decode_exponent: float = 0.15  # memory-bound: nearly flat
    static_watts: float = 150.0  # below this the clock would stop; keeps energy per token U-shaped
    decode_base_s: float = 0.012  # fixed part of one iteration
    decode_per_seq_s: float = 0.0002  # per sequence in the batch
    decode_per_seq_ktoken_s: float = 0.00004  # per sequence per 1k context tokens
    kv_tokens: float = 400_000.0

    def _check(self, cap_watts: float) -> None:
        if not (self.gpu.min_limit_watts - 1e-9 <= cap_watts <= self.gpu.max_limit_watts + 1e-9):
            raise ProfileError(f"cap {cap_watts} outside GPU range")

    def gpus_per_replica(self, role: Role) -> int:
        return self.tp_prefill if role is Role.PREFILL else self.tp_decode

    def natural_draw_watts(self, role: Role) -> float:
        return self.prefill_natural_watts if role is Role.PREFILL else self.decode_natural_watts

    def _speed(self, role: Role, cap_watts: float) -> float:
        self._check(cap_watts)
        natural = self.natural_draw_watts(role)
        exponent = self.prefill_exponent if role is Role.PREFILL else self.decode_exponent
        if cap_watts >= natural:
            return 1.0
        frac = (cap_watts - self.static_watts) / max(1e-9, natural - self.static_watts)
        return float(max(0.05, frac) ** exponent)

    # prefill
    def _prefill_tps_per_gpu(self, cap_watts: float) -> float:
        return self.prefill_tokens_per_s_per_gpu_at_tdp * self._speed(Role.PREFILL, cap_watts)

    def prefill_time_s(self, tokens: float, cap_watts: float) -> float:
        return tokens / (self.tp_prefill * self._prefill_tps_per_gpu(cap_watts))

    def prefill_throughput_tokens_per_s_per_gpu(
        self, isl_tokens: float, cap_watts: float, ttft_target_s: float | None = None
    ) -> float:
        raw = self._prefill_tps_per_gpu(cap_watts)
        if ttft_target_s is None:
            return raw
        s = self.prefill_time_s(isl_tokens, cap_watts)
        if s >= ttft_target_s:
            return 0.0
        x = (ttft_target_s - s) / s
        rho = 2 * x / (1 + 2 * x)
        return raw * rho

    # decode
    def decode_itl_s(self, batch: float, context_tokens: float, cap_watts: float) -> float:
        t = self.decode_base_s + batch * (self.decode_per_seq_s + self.decode_per_seq_ktoken_s * context_tokens / 1000)
        return t / self._speed(Role.DECODE, cap_watts)

    def decode_throughput_tokens_per_s_per_gpu(
        self, context_tokens: float, cap_watts: float, itl_target_s: float | None = None
    ) -> float:
        cap_batch = self.max_batch(context_tokens)
        if itl_target_s is None:
            batch = cap_batch
        else:
            speed = self._speed(Role.DECODE, cap_watts)
            per_seq = self.decode_per_seq_s + self.decode_per_seq_ktoken_s * context_tokens / 1000
            batch = min(cap_batch, math.floor((itl_target_s * speed - self.decode_base_s) / per_seq))
            if batch < 1:
                return 0.0
        return batch / self.decode_itl_s(batch, context_tokens, cap_watts) / self.tp_decode

    # power
    def draw_watts(self, role: Role, cap_watts: float, utilization: float) -> float:
        self._check(cap_watts)
        idle = self.gpu.idle_watts
        busy = min(cap_watts, self.natural_draw_watts(role))
        return idle + max(0.0, min(1.0, utilization)) * (busy - idle)


@dataclass
class ClosedFormProfile(_FakeH100):
    """The simulator tests' profile: TP-``gpus`` replicas, prefill ``a + b*N`` seconds at TDP, decode
    ``c + d*B + e*B*L``, both slowed by ``1 + 0.6 * (natural - cap) / natural`` below the natural draw."""

    name: str = "fake-h100-closed-form"
    gpu: GpuSpec = field(default_factory=lambda: gpu_by_name("H100-SXM"))
    gpus: int = 4
    prefill_a_s: float = 0.02
    prefill_b_s: float = 5e-5
    decode_c_s: float = 0.02
    decode_d_s: float = 1e-4
    decode_e_s: float = 1e-8
    kv_tokens: float = 400_000.0
    natural_watts: tuple[float, float] = (700.0, 380.0)

    def gpus_per_replica(self, role: Role) -> int:
        return self.gpus

    def natural_draw_watts(self, role: Role) -> float:
        return self.natural_watts[0 if role is Role.PREFILL else 1]

    def slowdown(self, role: Role, cap_watts: float) -> float:
        natural = self.natural_draw_watts(role)
        if cap_watts >= natural:
            return 1.0
        return 1.0 + 0.6 * (natural - cap_watts) / natural  # 50% cap on prefill: +30%

    def prefill_time_s(self, tokens: float, cap_watts: float) -> float:
        self.gpu.check_cap(cap_watts)
        return (self.prefill_a_s + self.prefill_b_s * tokens) * self.slowdown(Role.PREFILL, cap_watts)

    def prefill_throughput_tokens_per_s_per_gpu(
        self, isl_tokens: float, cap_watts: float, ttft_target_s: float | None = None
    ) -> float:
        return isl_tokens / self.prefill_time_s(isl_tokens, cap_watts) / self.gpus

    def decode_itl_s(self, batch: float, context_tokens: float, cap_watts: float) -> float:
        self.gpu.check_cap(cap_watts)
        base = self.decode_c_s + self.decode_d_s * batch + self.decode_e_s * batch * context_tokens
        return base * self.slowdown(Role.DECODE, cap_watts)

    def decode_throughput_tokens_per_s_per_gpu(
        self, context_tokens: float, cap_watts: float, itl_target_s: float | None = None
    ) -> float:
        best = 0.0
        for batch in range(1, self.max_batch(context_tokens) + 1):
            itl = self.decode_itl_s(batch, context_tokens, cap_watts)
            if itl_target_s is None or itl <= itl_target_s:
                best = max(best, batch / itl / self.gpus)
        return best

    def draw_watts(self, role: Role, cap_watts: float, utilization: float) -> float:
        idle = self.idle_watts()
        return idle + utilization * (min(self.natural_draw_watts(role), cap_watts) - idle)


fake_profiles = st.builds(
    FakeProfile,
    tp_prefill=st.sampled_from([1, 2, 4, 8]),
    tp_decode=st.sampled_from([1, 2, 4, 8]),
    prefill_tokens_per_s_per_gpu_at_tdp=st.floats(1500, 12000),
    prefill_natural_watts=st.floats(450, 700),
    prefill_exponent=st.floats(0.2, 0.9),
    decode_natural_watts=st.floats(250, 500),
    decode_exponent=st.floats(0.05, 0.4),
    decode_base_s=st.floats(0.005, 0.03),
    kv_tokens=st.floats(50_000, 800_000),
)


@cache
def builtin_profile(name: str) -> PowerProfile:
    """A built-in profile, loaded once per test session (loading fits the latency curves)."""
    from powerplanner.model.profiles import load_profile

    return load_profile(name)


def _builtin_names() -> list[str]:
    from powerplanner.model.profiles import builtin_profile_names

    return builtin_profile_names()


# A random fake or any built-in profile: the planner's properties must hold for the shipped profiles too.
profiles = st.one_of(fake_profiles, st.sampled_from(_builtin_names()).map(builtin_profile))
