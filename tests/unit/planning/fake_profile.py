"""A small analytic power profile for planner tests (fake, but with the physics the planner relies on).

Prefill is compute-bound: throughput scales with a clock factor that falls as the cap drops below the
role's natural draw. Decode is memory-bound: its iteration time is nearly flat in the cap. Draw is idle
plus utilisation times (min(cap, natural draw) - idle). Parameters are fields so property tests can draw
random profiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from powerplanner.errors import ProfileError
from powerplanner.model.gpu import GpuSpec, gpu_by_name
from powerplanner.model.roles import Role


@dataclass
class FakeProfile:  # not frozen: PowerProfile declares name/gpu as plain attributes
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

    def cap_levels(self, role: Role, count: int) -> tuple[float, ...]:
        lo, hi = self.gpu.min_limit_watts, self.gpu.max_limit_watts
        return tuple(lo + (hi - lo) * i / (count - 1) for i in range(count))

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

    def ttft_s(self, isl_tokens: float, requests_per_s: float, cap_watts: float) -> float:
        s = self.prefill_time_s(isl_tokens, cap_watts)
        rho = requests_per_s * s
        if rho >= 1:
            return math.inf
        return s + rho * s / (2 * (1 - rho))

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

    def max_batch(self, context_tokens: float) -> int:
        return max(1, int(self.kv_tokens / max(1.0, context_tokens)))

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

    def idle_watts(self) -> float:
        return self.gpu.idle_watts
