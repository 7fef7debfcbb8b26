"""Built-in profiles and each GPU's default cap model: the project's own numbers, every one with its source.

Sources (see ../shared/data/calibration/SOURCES.md for the published figures):
- [SW] Patel et al., "Splitwise", ISCA 2024: constant power model per H100 idle 75 W, prefill 700 W,
  decode 380 W (A100: 63 / 400 / 250 W); a 50% cap (350 W) on H100 leaves decode almost unchanged and
  makes prefill about 1.30x slower.
- [SWCSV] splitwise_perf_model.csv (Splitwise's measured llama2-70b timings on H100). The latency
  coefficients below were fitted ONCE by ``tools/fit_splitwise.py`` (robust soft-L1 fit of the log ratio,
  coefficients >= 0) and rounded to 4 significant digits; the CSV itself is not part of this repository.
- [MA] Ma et al., arXiv 2605.11999 (2026): decode on H200 draws about 137-300 W on a 700 W GPU.
- [DYN] Dynamo planner profile, Llama-3.1-8B-Instruct-FP8 on H200 TP1: ~40k tokens/s/GPU prefill at 80 ms
  TTFT (ISL 3000), ~10k tokens/s/GPU decode at 10 ms ITL.
- [LIM] NVIDIA limits and each GPU's DVFS constants: the GPU table in gpu.py, with their sources.
- [ARCH] Model architecture (Meta model cards / config.json): Llama-2-70B 69.0B parameters, 80 layers,
  8 KV heads x 128 dims (GQA); Llama-3.1-8B 8.03B parameters, 32 layers, 8 KV heads x 128 dims.
  KV bytes per token = layers x KV heads x head dim x 2 (K and V) x 2 bytes (FP16 cache).
  Context windows (config.json ``max_position_embeddings``): Llama-2-70B 4,096 tokens (Touvron et al. 2023,
  "Llama 2", Table 1: context length 4k); Llama-3.1-8B 131,072 tokens (Meta's Llama 3.1 model card:
  128K context).
- [HBM] NVIDIA H200 datasheet: 141 GB HBM3e at 4.8 TB/s.
- [ASSUME] Our assumptions where no published figure exists, stated as such: the voltage floor at 60% of
  the boost clock and the lowest clock at 35% (typical Hopper V/f tables flatten around 1.1-1.2 GHz of
  1.98 GHz), the uncore (HBM/fabric) share of the busy draw, the decode compute share, and a 90% usable
  memory fraction for weights + KV (vLLM's default gpu_memory_utilization).
"""

from __future__ import annotations

from powerplanner.errors import ProfileError
from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.gpu import GpuSpec, gpu_by_name, gpu_record, known_gpus_text
from powerplanner.model.latency import DecodeLatency, KvCapacity, PrefillLatency
from powerplanner.model.roles import Role

# Bytes per KV token [ARCH]: 80 x 8 x 128 x 2 x 2 and 32 x 8 x 128 x 2 x 2.
LLAMA2_70B_KV_BYTES_PER_TOKEN = 327_680.0
LLAMA31_8B_KV_BYTES_PER_TOKEN = 131_072.0
# Context windows, prompt + output [ARCH].
LLAMA2_70B_CONTEXT_WINDOW_TOKENS = 4_096
LLAMA31_8B_CONTEXT_WINDOW_TOKENS = 131_072


def default_cap_model(gpu: GpuSpec | str, role: Role) -> CapModel:
    """The cap model of ``role`` on ``gpu`` used when a profile (e.g. Dynamo's) brings no power data.

    The role's constants come from the GPU's record (``model/gpu.py``); the limits from ``gpu`` itself, which a
    profile may narrow to a site policy.
    """
    spec = gpu_by_name(gpu) if isinstance(gpu, str) else gpu
    try:
        record = gpu_record(spec.name)
    except ProfileError:
        raise ProfileError(f"no cap model is known for GPU {spec.name!r}; use one of: {known_gpus_text()}") from None
    power = record.power(role)
    return CapModel(
        role=role,
        min_limit_watts=spec.min_limit_watts,
        max_limit_watts=spec.max_limit_watts,
        idle_watts=spec.idle_watts,
        natural_draw_watts=power.natural_draw_watts,
        uncore_watts=power.uncore_watts,
        compute_share=power.compute_share,
        floor_clock=record.floor_clock,
        min_clock=record.min_clock,
        source=power.source,
    )


# Coefficients fitted by tools/fit_splitwise.py on the llama2-70b h100-80gb rows of [SWCSV], per TP:
# (a_s, b_s_per_token, c_s_per_token2) for prefill, (base_s, per_seq_s, per_kv_token_s, per_seq_sq_s) for decode.
# TP2's decode terms beyond per_seq fit to zero: its batch-32/64 rows are outliers (batch 64 faster than 32).
# The decode batch sweep of [SWCSV] ends at batch 64, so the quadratic term holds only up to there; beyond it the
# iteration time continues linearly along its tangent at batch 64 (DecodeLatency.quadratic_max_batch): memory-bound
# decode reads the weights once per iteration plus each sequence's KV, so it is ~linear in the batch and its
# throughput saturates. Extrapolated, the quadratic alone gave ITL ~458 ms at batch 352 (TP4) and throughput that
# fell beyond batch ~100. Tangent at 64 (TP4, context 1024): 52.6 ms + 0.55 ms per extra sequence -> 212 ms at 352.
_SPLITWISE_MAX_DECODE_BATCH = 64.0
_LLAMA2_70B_H100_FIT: dict[int, tuple[tuple[float, float, float], tuple[float, float, float, float]]] = {
    2: ((1.447e-2, 1.404e-4, 0.0), (3.743e-2, 1.366e-4, 0.0, 0.0)),
    4: ((1.599e-2, 8.957e-5, 8.147e-10), (2.927e-2, 1.462e-4, 3.014e-8, 2.935e-6)),
    8: ((2.898e-2, 4.950e-5, 2.702e-9), (2.993e-2, 1.702e-4, 1.559e-7, 8.243e-7)),
}


def _llama2_70b_h100(tp: int) -> CappedProfile:
    gpu = gpu_by_name("H100-SXM")
    (a, b, c), (base, per_seq, per_kv, per_sq) = _LLAMA2_70B_H100_FIT[tp]
    fit_source = f"fitted by tools/fit_splitwise.py on splitwise_perf_model.csv llama2-70b h100-80gb TP{tp} [SWCSV]"
    kv = KvCapacity(gpus=tp, memory_gb_per_gpu=gpu.memory_gb, weights_gb=138.0,
                    kv_bytes_per_token=LLAMA2_70B_KV_BYTES_PER_TOKEN, memory_utilization=0.9,
                    source="69.0B params x 2 bytes FP16, KV 327680 B/token [ARCH]; 90% usable memory [ASSUME]")
    return CappedProfile(
        name=f"llama2-70b-h100-tp{tp}",
        gpu=gpu,
        prefill_tp=tp,
        decode_tp=tp,
        prefill_caps=default_cap_model(gpu, Role.PREFILL),
        decode_caps=default_cap_model(gpu, Role.DECODE),
        prefill=PrefillLatency(a, b, c, source=fit_source),
        decode=DecodeLatency(base, per_seq, per_kv, per_sq, max_kv_tokens=kv.max_kv_tokens,
                             source=f"{fit_source} (quadratic term up to batch 64, the CSV's largest; linear "
                             f"beyond); KV capacity: {kv.source}",
                             quadratic_max_batch=_SPLITWISE_MAX_DECODE_BATCH),
        source=f"Llama-2-70B FP16 on H100 SXM, TP{tp} per role: latency {fit_source}; power Splitwise [SW]; "
        "context window 4,096 tokens [ARCH]",
        context_window_tokens=LLAMA2_70B_CONTEXT_WINDOW_TOKENS,
    )


def _llama31_8b_h200() -> CappedProfile:
    gpu = gpu_by_name("H200-SXM")
    # Prefill [DYN]: 40k tokens/s/GPU at ISL 3000 means 75 ms for a 3000-token prompt (TTFT 75 ms < 80 ms).
    # Split: 5 ms fixed launch cost [ASSUME], attention 5% of the time at 3000 tokens [ASSUME]
    # (c = 0.075 * 0.05 / 3000^2), the rest linear (b = (0.075 - 0.005 - 0.00375) / 3000).
    prefill = PrefillLatency(a_s=5.0e-3, b_s_per_token=2.2083e-5, c_s_per_token2=4.1667e-10,
                             source="75 ms at ISL 3000 = 40k tok/s/GPU [DYN]; 5 ms launch, 5% attention [ASSUME]")
    kv = KvCapacity(gpus=1, memory_gb_per_gpu=gpu.memory_gb, weights_gb=8.03,
                    kv_bytes_per_token=LLAMA31_8B_KV_BYTES_PER_TOKEN, memory_utilization=0.9,
                    source="8.03B params x 1 byte FP8, KV 131072 B/token [ARCH]; 141 GB [HBM]; 90% usable [ASSUME]")
    # Decode [DYN]: 10k tokens/s/GPU at 10 ms ITL = batch 100 at ITL 10 ms; we place it at context 1024.
    # KV read per token of context: 131072 B / 4.8 TB/s = 2.731e-8 s [ARCH][HBM]; batch-1 base 5 ms [ASSUME];
    # per_seq closes the gap: (10 ms - 5 ms - 100 * 1024 * 2.731e-8 s) / 100 = 2.204e-5 s.
    decode = DecodeLatency(base_s=5.0e-3, per_seq_s=2.204e-5, per_kv_token_s=2.731e-8, per_seq_sq_s=0.0,
                           max_kv_tokens=kv.max_kv_tokens,
                           source="batch 100 at 10 ms ITL, context 1024 [DYN]; KV read at 4.8 TB/s [HBM]; "
                           f"KV capacity: {kv.source}")
    return CappedProfile(
        name="llama3.1-8b-h200-tp1",
        gpu=gpu,
        prefill_tp=1,
        decode_tp=1,
        prefill_caps=default_cap_model(gpu, Role.PREFILL),
        decode_caps=default_cap_model(gpu, Role.DECODE),
        prefill=prefill,
        decode=decode,
        source="Llama-3.1-8B-Instruct-FP8 on H200 SXM, TP1: Dynamo planner figures [DYN]; power [SW][MA]; "
        "context window 131,072 tokens [ARCH]",
        context_window_tokens=LLAMA31_8B_CONTEXT_WINDOW_TOKENS,
    )


def builtin_profiles() -> dict[str, CappedProfile]:
    """Every built-in profile by name, built fresh (a function, not module state)."""
    profiles = [_llama2_70b_h100(2), _llama2_70b_h100(4), _llama2_70b_h100(8), _llama31_8b_h200()]
    return {p.name: p for p in profiles}
