"""The power-performance profile interface (docs/profile-format.md, "The model behind every profile").

This module fixes the contract every other part codes against; the concrete model
(:class:`~powerplanner.model.capped.CappedProfile`), the built-in profiles and the loaders live
beside it. All times are seconds, powers watts per GPU, throughputs tokens per second per GPU.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from powerplanner.model.gpu import GpuSpec
from powerplanner.model.roles import Role


@runtime_checkable
class PowerProfile(Protocol):
    """Answers, for one model on one GPU type at fixed TP per role, how fast and how hungry each role
    is at a per-GPU power cap. Every ``cap_watts`` must lie in ``[gpu.min_limit_watts,
    gpu.max_limit_watts]``; methods raise :class:`~powerplanner.errors.ProfileError` otherwise."""

    @property
    def name(self) -> str:
        """The profile's name (a built-in name or the file it came from)."""
        ...

    @property
    def gpu(self) -> GpuSpec:
        """The GPU the profile describes; its limit range bounds every cap."""
        ...

    def gpus_per_replica(self, role: Role) -> int:
        """Tensor-parallel size of one replica of ``role``."""
        ...

    def cap_levels(self, role: Role, count: int) -> tuple[float, ...]:
        """``count`` candidate caps from the GPU's minimum to its maximum, ascending."""
        ...

    def natural_draw_watts(self, role: Role) -> float:
        """Per-GPU draw of a fully busy ``role`` with no cap binding (e.g. decode on H100 ~380 W)."""
        ...

    # prefill
    def prefill_time_s(self, tokens: float, cap_watts: float) -> float:
        """Time for one replica to prefill a batch holding ``tokens`` prompt tokens in total."""
        ...

    def ttft_s(self, isl_tokens: float, requests_per_s: float, cap_watts: float) -> float:
        """Expected TTFT on one replica receiving ``requests_per_s`` prompts of ``isl_tokens`` (queueing
        included); ``inf`` when the replica is saturated."""
        ...

    def prefill_throughput_tokens_per_s_per_gpu(
        self, isl_tokens: float, cap_watts: float, ttft_target_s: float | None = None
    ) -> float:
        """Prompt tokens per second per GPU at ``isl_tokens``; with a TTFT target, the highest load whose
        TTFT still meets it (0 when even an idle replica misses it)."""
        ...

    # decode
    def decode_itl_s(self, batch: float, context_tokens: float, cap_watts: float) -> float:
        """One decode iteration for ``batch`` sequences of mean context ``context_tokens``."""
        ...

    def max_batch(self, context_tokens: float) -> int:
        """Largest batch whose KV cache fits at that context length (>= 1)."""
        ...

    def decode_throughput_tokens_per_s_per_gpu(
        self, context_tokens: float, cap_watts: float, itl_target_s: float | None = None
    ) -> float:
        """Output tokens per second per GPU at the best batch (<= max_batch) whose ITL meets the target
        (any batch when no target); 0 when even batch 1 misses it."""
        ...

    # power
    def draw_watts(self, role: Role, cap_watts: float, utilization: float) -> float:
        """Per-GPU draw of ``role`` at ``cap_watts`` and ``utilization`` in [0, 1] (idle at 0), never above the cap."""
        ...

    def idle_watts(self) -> float:
        """Per-GPU draw of an idle GPU, whatever the cap."""
        ...


@runtime_checkable
class ProfileDimensions(Protocol):
    """What a profile may add to :class:`PowerProfile` (docs/profile-format.md): the model's context window and
    a busy draw that depends on the batch. A profile without them (e.g. a test's fake) is window-less and flat."""

    @property
    def context_window_tokens(self) -> int | None:
        """Prompt + output tokens the model accepts; None when unknown (nothing is refused)."""
        ...

    def draw_varies_with_load(self, role: Role) -> bool:
        """True when ``role``'s busy draw depends on its batch."""
        ...

    def busy_draw_at_load_watts(self, role: Role, cap_watts: float, load: float) -> float:
        """Per-GPU draw of a busy replica running a batch of ``load`` (prefill: prompt tokens; decode:
        sequences), never above the cap."""
        ...
