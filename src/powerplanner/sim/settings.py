"""Actuation and cluster parameters of the simulated deployment, each with the reason for its default.

These are facts about the cluster, not about a policy: every policy in a comparison runs with the same
settings. Defaults describe Llama-2-70B in FP16 on H100 SXM served by Dynamo (prefill and decode workers in
separate pods); a scenario may override any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from powerplanner.errors import ConfigError

# Llama-2-70B: 80 layers, 8 KV heads (GQA) of 128 dims, K and V, FP16 (2 bytes):
# 2 * 80 * 8 * 128 * 2 = 327,680 bytes of KV cache per token.
_LLAMA2_70B_KV_BYTES_PER_TOKEN = 2 * 80 * 8 * 128 * 2
# One 400 Gb/s InfiniBand/RoCE NIC (the usual 1 NIC per GPU on DGX H100, but the prefill->decode KV stream of
# one request is taken as going through one NIC pair): 50 GB/s line rate, ~80% achievable with NIXL/UCX RDMA.
_KV_LINK_BYTES_PER_S = 0.8 * 50e9
MAX_DRAIN_LIMIT_S = 8 * 86400.0
"""Longest drain after the last arrival: the simulator ticks through it, so it is bounded like a trace's span
(powerplanner.sim.traces.MAX_SPAN_S)."""


@dataclass(frozen=True)
class SimSettings:
    """How the simulated cluster behaves. All times in seconds, powers in watts per GPU.

    - ``replica_start_s`` (120 s): a new replica holds its GPUs from the moment it is scheduled and is
      counted at its role's cap (provisioned) while it loads, drawing idle power. Loading 140 GB of FP16
      weights from node-local NVMe at ~2-3 GB/s per GPU, plus engine start and CUDA-graph capture, takes
      one to a few minutes; Dynamo's planner docs size the adjustment interval above the worker start time
      for that reason. 120 s is the middle of that range.
    - ``cap_apply_s`` (1 s): the node agent sees the pod annotation through its watch (sub-second), sets the
      NVML limit (tens of ms) and the GPU's power controller settles within a few hundred ms. As in the live
      actuator, a decision's steps that raise power after a cap cut wait for the next tick's re-plan, so a
      cap cut is in force before the replica it pays for starts.
    - ``kv_transfer_base_s`` / ``kv_transfer_s_per_token``: KV cache moved prefill -> decode over RDMA;
      per token = KV bytes per token / effective link bandwidth (Llama-2-70B: 327,680 B / 40 GB/s =
      8.2 us/token, ~9.5 ms for the Azure conv mean prompt of 1,155 tokens); 2 ms fixed for connection set-up
      and the control round trip.
    - ``prefill_max_batch_tokens`` (8192): a prefill worker batches queued prompts FCFS up to this many tokens
      (vLLM's ``max_num_batched_tokens`` as Dynamo's disaggregated prefill examples set it). A longer prompt
      runs alone.
    - ``decode_max_batch`` (256): the engine's bound on running sequences per decode replica (vLLM
      ``max_num_seqs``), applied with the KV capacity (``profile.max_batch``): a replica admits a request only
      while both hold, whatever the policy. 256 is vLLM's long-standing default (``EngineArgs.max_num_seqs =
      256`` in the V0 engine, vllm/engine/arg_utils.py, e.g. v0.6-v0.7; V1's ``get_batch_defaults`` keeps 256
      for GPUs under 70 GiB and A100, while on H100/H200 it raises the default to 1024 and
      ``SchedulerConfig``'s own field default is 128), and the value Dynamo's vLLM workers inherit unless a
      deployment sets it. Without it, a backlog packs a Llama-2-70B TP4 replica to its KV limit (~350-450
      sequences). None: KV capacity is the only bound.
    - ``initial_*``: the deployment as it stands at t=0, replicas ready. Replicas None: each role sized for the
      opening window's true load by Dynamo's rule at TDP and the config's target utilisation (an operator's
      provisioning; the same start for every policy), within the replica bounds, the GPU pool and the budget
      at minimum caps. Caps None: the GPU's default (TDP) limit. Initial caps are lowered uniformly (not below
      the GPU's minimum) when needed so the cluster starts within the budget.
    - ``gpu_pool``: GPUs both roles may hold together; None: ``config.planner.gpu_pool`` (None = unlimited).
      A scale-up that does not fit starts only the replicas that fit.
    - ``drain_limit_s`` (1800 s): after the last arrival the run continues until every admitted request has
      finished, but not longer than this; requests still unfinished are reported, never dropped silently.
    - ``budget_cut_grace_s`` (None = the cap interval): time over budget that falls within this long after
      the budget was lowered is reported separately (``SimResult.seconds_over_budget_after_cut``), because
      a lowered budget can only be honoured at the next cap tick plus the cap-apply latency.
    - ``gpu_time_variation`` (0), ``gpu_variation_seed`` (0): each simulated GPU's time multiplier is drawn
      uniformly from ``[1 - v, 1 + v]`` (seeded; the n-th replica held gets the same GPUs under every policy),
      and a tensor-parallel replica runs at its slowest GPU's pace. Set by a plant's ``variation=``
      (model/plant.py, docs/simulator.md "Plants").
    """

    replica_start_s: float = 120.0
    cap_apply_s: float = 1.0
    kv_transfer_base_s: float = 0.002
    kv_transfer_s_per_token: float = _LLAMA2_70B_KV_BYTES_PER_TOKEN / _KV_LINK_BYTES_PER_S
    prefill_max_batch_tokens: int = 8192
    decode_max_batch: int | None = 256
    initial_prefill_replicas: int | None = None
    initial_decode_replicas: int | None = None
    initial_prefill_cap_watts: float | None = None
    initial_decode_cap_watts: float | None = None
    gpu_pool: int | None = None
    drain_limit_s: float = 1800.0
    budget_cut_grace_s: float | None = None
    gpu_time_variation: float = 0.0
    gpu_variation_seed: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        for item in fields(self):  # a scenario's `sim:` mapping is YAML: `true` must not become 1
            if isinstance(getattr(self, item.name), bool):
                problems.append(f"sim settings: {item.name} must be a number, not true/false; fix the value")
        if problems:
            raise ConfigError(*problems)

        def nonneg(name: str, value: float | None) -> None:
            if value is not None and not (math.isfinite(value) and value >= 0):
                problems.append(f"sim settings: {name} must be a finite number >= 0 (got {value!r}); fix the value")

        def positive_int(name: str, value: int | None, minimum: int = 1) -> None:
            if value is not None and (not isinstance(value, int) or value < minimum):
                problems.append(f"sim settings: {name} must be an integer >= {minimum} (got {value!r}); fix the value")

        for name in ("replica_start_s", "cap_apply_s", "kv_transfer_base_s", "kv_transfer_s_per_token",
                     "drain_limit_s", "budget_cut_grace_s"):
            nonneg(name, getattr(self, name))
        if math.isfinite(self.drain_limit_s) and self.drain_limit_s > MAX_DRAIN_LIMIT_S:
            problems.append(f"sim settings: drain_limit_s must be at most {MAX_DRAIN_LIMIT_S:g} s (8 days, the longest "
                            f"trace replayed; got {self.drain_limit_s:g}): the run ticks through it when requests "
                            "cannot finish")
        positive_int("prefill_max_batch_tokens", self.prefill_max_batch_tokens)
        positive_int("decode_max_batch", self.decode_max_batch)
        positive_int("initial_prefill_replicas", self.initial_prefill_replicas, 0)
        positive_int("initial_decode_replicas", self.initial_decode_replicas, 0)
        positive_int("gpu_pool", self.gpu_pool)
        positive_int("gpu_variation_seed", self.gpu_variation_seed, 0)
        if not (math.isfinite(self.gpu_time_variation) and 0 <= self.gpu_time_variation < 1):
            problems.append(f"sim settings: gpu_time_variation must lie in [0, 1) (got {self.gpu_time_variation!r}); "
                            "give a fraction such as 0.05")
        for name in ("initial_prefill_cap_watts", "initial_decode_cap_watts"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"sim settings: {name} must be a positive number of watts (got {value!r}); fix it")
        if problems:
            raise ConfigError(*problems)


@dataclass(frozen=True)
class EngineSettings:
    """What the engine and its closed loop take from the planner's configuration (built from it at the edge,
    ``powerplanner.core_settings.engine_settings``): when the planner ticks, the window its observations average
    over, the default budget and what the opening deployment is sized with. Pairs are (prefill, decode)."""

    budget_watts: float  # used when the run is given no budget of its own
    cap_interval_s: float  # the planner is ticked this often
    adjustment_interval_s: float  # replicas may change this often (sizes the opening deployment's horizon)
    window_s: float  # observations average over this window, as the live metrics source does
    gpu_pool: int | None  # unless SimSettings.gpu_pool says otherwise
    target_utilization: float
    sla_ttft_s: float
    sla_itl_s: float
    min_replicas: tuple[int, int]
    max_replicas: tuple[int, int]
