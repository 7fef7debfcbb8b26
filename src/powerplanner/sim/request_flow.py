"""The path of a request through the simulated cluster: the prefill queue and batches, the KV transfer, decode
admission and the decode batches, with each request's TTFT and ITL and the cumulative counters.

Time advances by events, never by tokens. A decode replica runs at a constant iteration time while its batch
(and cap) is unchanged, so it keeps a *virtual iteration clock* ``v`` (iterations done since it started,
fractional) and each request stores the iteration at which it finishes. The next completion is the smallest
finishing iteration, reached at ``t_last + (v_fin - v) * itl``: one heap entry per batch change instead of one
per token.

Routing is work-conserving: one FCFS prefill queue served by whichever ready prefill replica is idle, and one
FCFS decode admission queue served by the least-loaded ready decode replica with KV room; this is what
"route to the least-loaded instance" converges to without per-instance queues (and it never strands work on
a replica that is being drained).

Modelling choices (documented in docs/internals.md, "sim/ engine"):
- A request whose prompt + output exceed the profile's context window is refused at arrival, as an engine
  does; it counts as an SLO miss (docs/simulator.md, "Context window").
- TTFT = decode admission time - arrival: queueing for prefill, the prefill batch, the KV transfer and any
  wait for decode KV room (the first token reaches the client from the decode worker).
- A request needs ``osl - 1`` decode iterations after its first token; its ITL is (decode end - admission)
  / (osl - 1), the mean of the iterations it took part in. A one-token request has ITL 0.
- The iteration time is ``profile.decode_itl_s(batch, mean context, cap)`` where the mean context is the
  batch's exact mean context now plus half the iterations until the next scheduled completion (the mean
  over the stretch for which it is used).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from powerplanner.model.profile import PowerProfile, ProfileDimensions
from powerplanner.sim.cluster_state import ClusterState
from powerplanner.sim.events import EV_DECODE_DONE, EV_KV_DONE, EV_PREFILL_DONE
from powerplanner.sim.replica import BATCH_OF, DECODE, DRAINING, PREFILL, RELEASED, Instance
from powerplanner.sim.settings import SimSettings

_CTX_BUCKET_SHIFT = 5  # max_batch is looked up per 32-token bucket of mean context
_CTX_GRID_TOKENS = 32.0  # decode iteration times are interpolated linearly between 32-token context points
_V_EPS = 1e-7  # iterations: tolerance when popping finished requests off a decode replica


class RequestFlow(ClusterState):
    """The requests of one simulated deployment and the rules that move them through its replicas."""

    def __init__(
        self,
        profile: PowerProfile,
        settings: SimSettings,
        arrival_s: list[float],
        isl_tokens: list[int],
        osl_tokens: list[int],
        initial_caps_watts: tuple[float, float],
        gpu_pool: int | None,
    ) -> None:
        super().__init__(profile, settings, initial_caps_watts, gpu_pool)
        self.arrival_s = arrival_s
        self.isl = isl_tokens
        self.osl = osl_tokens
        n = len(arrival_s)
        self.n = n
        self.ttft_s = [math.nan] * n
        self.itl_s = [math.nan] * n
        self.join_t = [0.0] * n
        self.join_v = [0.0] * n
        self.prefill_queue: deque[int] = deque()
        self.decode_queue: deque[int] = deque()

        self.max_batch_limit = settings.decode_max_batch
        self._max_batch_cache: dict[int, int] = {}
        self._itl_cache: dict[float, dict[tuple[int, int], float]] = {}
        self._prefill_cache: dict[tuple[int, float], float] = {}
        self._prefill_time: Callable[[float, float], float] = profile.prefill_time_s
        self._decode_itl: Callable[[float, float, float], float] = profile.decode_itl_s
        self.kv_base_s = settings.kv_transfer_base_s
        self.kv_per_token_s = settings.kv_transfer_s_per_token
        self.prefill_max_tokens = settings.prefill_max_batch_tokens
        window = profile.context_window_tokens if isinstance(profile, ProfileDimensions) else None
        self.context_window = math.inf if window is None else window  # prompt + output; longer is refused
        self.refused = 0  # requests refused at arrival: they never enter a queue

        # Cumulative request counters (the observation's windows are differences of these).
        self.arrived = 0
        self.isl_sum = 0.0
        self.first_tokens = 0
        self.ttft_sum_s = 0.0
        self.completed = 0
        self.osl_sum = 0.0
        self.decode_time_sum_s = 0.0
        self.decode_tokens = 0
        self.output_tokens = 0
        self.decode_queue_max = 0  # most requests ever waiting for decode KV room at once (the report's figure)

    def unfinished_by_stage(self) -> dict[str, int]:
        """Where the requests that have not completed are (all zero after a complete run)."""
        prefilling = sum(len(i.reqs) for i in self.instances[PREFILL])
        not_arrived = self.n - self.arrived - self.refused
        waiting = self.arrived - self.first_tokens
        queued = len(self.prefill_queue)
        decode_queue = len(self.decode_queue)
        return {
            "not_arrived": not_arrived,
            "prefill_queue": queued,
            "prefilling": prefilling,
            "kv_transfer": waiting - queued - prefilling - decode_queue,
            "decode_queue": decode_queue,
            "decoding": self.first_tokens - self.completed,
        }


    # ------------------------------------------------------------------ requests: prefill

    def arrive(self, r: int, t: float) -> None:
        if self.isl[r] + self.osl[r] > self.context_window:
            self.refused += 1  # as an engine does (vLLM: prompt + max_tokens over max_model_len is rejected)
            return
        self.arrived += 1
        self.isl_sum += self.isl[r]
        self.prefill_queue.append(r)
        if self.idle_prefill:
            self.accumulate(t)
            self._dispatch_prefill(t)

    def _dispatch_prefill(self, t: float) -> None:
        queue = self.prefill_queue
        idle = self.idle_prefill
        isl = self.isl
        max_tokens = self.prefill_max_tokens
        while queue and idle:
            inst = idle.pop()
            reqs: list[int] = []
            tokens = 0
            while queue:
                n_tok = isl[queue[0]]
                if reqs and tokens + n_tok > max_tokens:
                    break
                reqs.append(queue.popleft())
                tokens += n_tok
            inst.reqs = reqs
            inst.batch_tokens = tokens
            cap = self.cap_watts[PREFILL]
            duration = self._prefill_cache.get((tokens, cap))
            if duration is None:
                duration = self._prefill_cache[(tokens, cap)] = float(self._prefill_time(tokens, cap))
            inst.t_end = t + duration * inst.slow
            inst.version += 1
            self._set_draw(inst, self._busy_draw(inst))
            self.push(inst.t_end, EV_PREFILL_DONE, inst, inst.version)

    def prefill_done(self, inst: Instance, version: int, t: float) -> None:
        if version != inst.version or inst.state == RELEASED:
            return
        self.accumulate(t)
        reqs = inst.reqs
        inst.reqs = []
        inst.batch_tokens = 0
        base = self.kv_base_s
        per_token = self.kv_per_token_s
        isl = self.isl
        direct = base == 0.0 and per_token == 0.0
        for r in reqs:
            if direct:
                self.decode_queue.append(r)
                self.decode_queue_max = max(self.decode_queue_max, len(self.decode_queue))
            else:
                self.push(t + base + per_token * isl[r], EV_KV_DONE, r)
        self._set_draw(inst, self._idle_draw(inst))
        if inst.state == DRAINING:
            self._release(inst)
        else:
            self.idle_prefill.append(inst)
            self._dispatch_prefill(t)
        if direct:
            self._admit_decode(t)

    def kv_done(self, r: int, t: float) -> None:
        self.decode_queue.append(r)
        if len(self.decode_queue) > self.decode_queue_max:
            self.decode_queue_max = len(self.decode_queue)
        self.accumulate(t)
        self._admit_decode(t)

    # ------------------------------------------------------------------ requests: decode

    def _max_batch(self, ctx: float) -> int:
        key = int(ctx) >> _CTX_BUCKET_SHIFT
        value = self._max_batch_cache.get(key)
        if value is None:
            value = max(1, int(self.profile.max_batch(float((key << _CTX_BUCKET_SHIFT) + 16))))
            if self.max_batch_limit is not None:
                value = min(value, self.max_batch_limit)
            self._max_batch_cache[key] = value
        return value

    @staticmethod
    def _advance(inst: Instance, t: float) -> None:
        if inst.batch > 0:
            inst.v += (t - inst.t_last) / inst.itl_s
        inst.t_last = t

    def _admit_decode(self, t: float) -> None:
        """Admit queued requests FCFS to the least-loaded ready decode replica while it has KV room."""
        queue = self.decode_queue
        ready = self.ready_decode
        if not queue or not ready:
            return
        isl = self.isl
        osl = self.osl
        touched: list[Instance] = []  # a list, not a set: retime order must not depend on object ids
        while queue:
            inst = min(ready, key=BATCH_OF) if len(ready) > 1 else ready[0]
            r = queue[0]
            batch = inst.batch
            if batch > 0:
                inst.v += (t - inst.t_last) / inst.itl_s  # no-op when already advanced to t
            inst.t_last = t
            ctx = (inst.s_ctx + batch * inst.v + isl[r]) / (batch + 1)
            if batch + 1 > self._max_batch(ctx):
                break
            queue.popleft()
            self.first_tokens += 1
            ttft = t - self.arrival_s[r]
            self.ttft_s[r] = ttft
            self.ttft_sum_s += ttft
            iters = osl[r] - 1
            if iters <= 0:
                self._complete(r, t, 0.0)
                continue
            if batch == 0:
                self._set_draw(inst, self._busy_draw(inst))
            inst.batch = batch + 1
            inst.s_ctx += isl[r] - inst.v
            self.join_t[r] = t
            self.join_v[r] = inst.v
            heapq.heappush(inst.fin, (inst.v + iters, r))
            if inst not in touched:
                touched.append(inst)
        for inst in touched:
            self._retime(inst, t)

    def _retime(self, inst: Instance, t: float) -> None:
        """Recompute the iteration time after a batch or cap change and schedule the next completion."""
        inst.version += 1
        inst.t_last = t
        if inst.batch == 0:
            inst.itl_s = math.inf
            return
        if self.draw_by_load[DECODE]:  # the draw follows the batch (docs/profile-format.md)
            self._set_draw(inst, self._busy_draw(inst))
        v = inst.v
        ahead = inst.fin[0][0] - v
        if ahead < 0.0:
            ahead = 0.0
        batch = inst.batch
        ctx = (inst.s_ctx + batch * v) / batch + 0.5 * ahead
        itl = self._iteration_s(batch, ctx) * inst.slow
        inst.itl_s = itl
        self.seq += 1
        heapq.heappush(self.heap, (t + ahead * itl, self.seq, EV_DECODE_DONE, inst, inst.version))

    def _iteration_s(self, batch: int, ctx: float) -> float:
        """``profile.decode_itl_s`` at the applied cap, interpolated linearly in context between points 32 tokens
        apart (exact for the built-in models, which are linear in context; the profile is called once per point
        instead of once per batch change)."""
        cap = self.cap_watts[DECODE]
        table = self._itl_cache.get(cap)
        if table is None:
            table = self._itl_cache[cap] = {}
        if ctx < 0.0:
            ctx = 0.0
        pos = ctx / _CTX_GRID_TOKENS
        k = int(pos)
        lo = table.get((batch, k))
        if lo is None:
            lo = table[(batch, k)] = float(self._decode_itl(batch, k * _CTX_GRID_TOKENS, cap))
        hi = table.get((batch, k + 1))
        if hi is None:
            hi = table[(batch, k + 1)] = float(self._decode_itl(batch, (k + 1) * _CTX_GRID_TOKENS, cap))
        return lo + (hi - lo) * (pos - k)

    def decode_done(self, inst: Instance, version: int, t: float) -> None:
        if version != inst.version or inst.state == RELEASED:
            return
        self.accumulate(t)
        self._advance(inst, t)
        fin = inst.fin
        if fin and inst.v < fin[0][0]:
            inst.v = fin[0][0]  # the event was scheduled for exactly this iteration; absorb float rounding
        limit = inst.v + _V_EPS
        isl = self.isl
        join_v = self.join_v
        while fin and fin[0][0] <= limit:
            _, r = heapq.heappop(fin)
            inst.batch -= 1
            inst.s_ctx -= isl[r] - join_v[r]
            self._complete(r, t, t - self.join_t[r])
        if inst.batch == 0:
            inst.s_ctx = 0.0
            self._set_draw(inst, self._idle_draw(inst))
            if inst.state == DRAINING:
                self._release(inst)
                self._admit_decode(t)
                return
        self._retime(inst, t)
        if self.decode_queue:
            self._admit_decode(t)

    def _complete(self, r: int, t: float, decode_s: float) -> None:
        n_out = self.osl[r]
        iters = n_out - 1
        self.itl_s[r] = decode_s / iters if iters > 0 else 0.0
        self.completed += 1
        self.osl_sum += n_out
        self.output_tokens += n_out
        if iters > 0:
            self.decode_time_sum_s += decode_s
            self.decode_tokens += iters

