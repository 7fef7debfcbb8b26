"""The simulated disaggregated cluster: request flow through prefill and decode replicas, and power.

Time advances by events, never by tokens. Two ideas make it fast enough for ~200k requests in seconds:

- A decode replica runs at a constant iteration time while its batch (and cap) is unchanged, so it keeps a
  *virtual iteration clock* ``v`` (iterations done since it started, fractional) and each request stores the
  iteration at which it finishes. The next completion is the smallest finishing iteration, reached at
  ``t_last + (v_fin - v) * itl``: one heap entry per batch change instead of one per token.
- Power, provisioned power, held GPUs and time over budget are accumulated lazily: every state change first
  integrates the current (piecewise constant) values up to now, then applies the change.

Routing is work-conserving: one FCFS prefill queue served by whichever ready prefill replica is idle, and one
FCFS decode admission queue served by the least-loaded ready decode replica with KV room; this is what
"route to the least-loaded instance" converges to without per-instance queues (and it never strands work on
a replica that is being drained).

Modelling choices (documented in docs/architecture.md, "sim/ engine"):
- TTFT = decode admission time - arrival: queueing for prefill, the prefill batch, the KV transfer and any
  wait for decode KV room (the first token reaches the client from the decode worker).
- A request needs ``osl - 1`` decode iterations after its first token; its ITL is (decode end - admission)
  / (osl - 1), the mean of the iterations it took part in. A one-token request has ITL 0.
- The iteration time is ``profile.decode_itl_s(batch, mean context, cap)`` where the mean context is the
  batch's exact mean context now plus half the iterations until the next scheduled completion (the mean
  over the stretch for which it is used).
- Utilisation for power: a prefill replica is busy (1) while a batch runs, else idle (0); a decode replica is
  busy (1) while its batch is non-empty (Splitwise's constant per-phase power model: decode draws its
  phase power whatever the batch). Starting replicas draw idle power; draw never exceeds the applied cap.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import Role
from powerplanner.sim.settings import SimSettings

PREFILL = 0
DECODE = 1
ROLE_OF_INDEX: tuple[Role, Role] = (Role.PREFILL, Role.DECODE)

# Instance states.
STARTING = 0
READY = 1
DRAINING = 2
RELEASED = 3

# Event kinds in the heap: (time_s, seq, kind, payload, version).
EV_PREFILL_DONE = 0
EV_KV_DONE = 1
EV_DECODE_DONE = 2
EV_REPLICA_READY = 3
EV_CAP_APPLY = 4
EV_TICK = 5

_CTX_BUCKET_SHIFT = 5  # max_batch is looked up per 32-token bucket of mean context
_CTX_GRID_TOKENS = 32.0  # decode iteration times are interpolated linearly between 32-token context points
_V_EPS = 1e-7  # iterations: tolerance when popping finished requests off a decode replica


class Instance:
    """One replica (prefill or decode). Plain slots object: thousands of state changes per simulated second."""

    __slots__ = ("batch", "batch_tokens", "draw_watts", "fin", "id", "itl_s", "reqs", "role", "s_ctx", "state",
                 "t_end", "t_last", "v", "version")

    def __init__(self, ident: int, role: int) -> None:
        self.id = ident
        self.role = role
        self.state = STARTING
        self.version = 0
        self.draw_watts = 0.0
        # prefill: requests of the running batch, its token count, end time
        self.reqs: list[int] = []
        self.batch_tokens = 0
        self.t_end = 0.0
        # decode: batch size, virtual iteration clock, iteration time, finishing heap, context sum
        self.batch = 0
        self.v = 0.0
        self.t_last = 0.0
        self.itl_s = math.inf
        self.fin: list[tuple[float, int]] = []
        self.s_ctx = 0.0  # sum over the batch of (isl_i - v_join_i): context now = s_ctx + batch * v

    @property
    def busy(self) -> bool:
        return bool(self.reqs) if self.role == PREFILL else self.batch > 0


class Cluster:
    """Requests, replicas and power of one simulated deployment. The event heap is shared with the engine."""

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
        self.profile = profile
        self.settings = settings
        self.arrival_s = arrival_s
        self.isl = isl_tokens
        self.osl = osl_tokens
        n = len(arrival_s)
        self.n = n
        self.ttft_s = [math.nan] * n
        self.itl_s = [math.nan] * n
        self.join_t = [0.0] * n
        self.join_v = [0.0] * n
        self.heap: list[tuple[float, int, int, Any, int]] = []
        self.seq = 0

        self.gpus = (profile.gpus_per_replica(Role.PREFILL), profile.gpus_per_replica(Role.DECODE))
        self.idle_watts = float(profile.idle_watts())
        self.gpu_pool = gpu_pool
        self.cap_watts = [float(initial_caps_watts[0]), float(initial_caps_watts[1])]
        self.busy_watts = [0.0, 0.0]  # per-GPU draw of a busy replica at the applied cap
        self._refresh_busy_watts()

        self.prefill_queue: deque[int] = deque()
        self.decode_queue: deque[int] = deque()
        self.instances: list[list[Instance]] = [[], []]  # holding replicas per role
        self.idle_prefill: list[Instance] = []  # ready prefill replicas without a batch
        self.ready_decode: list[Instance] = []
        self.counts = [[0, 0, 0], [0, 0, 0]]  # per role: starting, ready, draining
        self._next_id = 0

        self.max_batch_limit = settings.decode_max_batch
        self._max_batch_cache: dict[int, int] = {}
        self._itl_cache: dict[float, dict[tuple[int, int], float]] = {}
        self._prefill_cache: dict[tuple[int, float], float] = {}
        self._prefill_time: Callable[[float, float], float] = profile.prefill_time_s
        self._decode_itl: Callable[[float, float, float], float] = profile.decode_itl_s
        self.kv_base_s = settings.kv_transfer_base_s
        self.kv_per_token_s = settings.kv_transfer_s_per_token
        self.prefill_max_tokens = settings.prefill_max_batch_tokens

        # Power and time integrals (piecewise constant between state changes).
        self.t_acc = 0.0
        self.draw_total = 0.0
        self.draw_role = [0.0, 0.0]
        self.energy_j = 0.0
        self.energy_role_j = [0.0, 0.0]
        self.gpus_held = 0
        self.gpu_seconds = 0.0
        self.provisioned_watts = 0.0
        self.peak_provisioned_watts = 0.0
        self.peak_drawn_watts = 0.0
        self.budget_watts = math.inf
        self.over_budget_s = 0.0
        self.over_budget_after_cut_s = 0.0
        self.grace_until_s = -math.inf

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

    # ------------------------------------------------------------------ bookkeeping

    def push(self, time_s: float, kind: int, payload: Any = None, version: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time_s, self.seq, kind, payload, version))

    def accumulate(self, t: float) -> None:
        """Integrate draw, held GPUs and over-budget time up to ``t``. Call before any state change."""
        dt = t - self.t_acc
        if dt <= 0.0:
            return
        self.energy_j += self.draw_total * dt
        self.energy_role_j[0] += self.draw_role[0] * dt
        self.energy_role_j[1] += self.draw_role[1] * dt
        self.gpu_seconds += self.gpus_held * dt
        if self.provisioned_watts > self.budget_watts + 1e-6:
            self.over_budget_s += dt
            if self.t_acc < self.grace_until_s:
                self.over_budget_after_cut_s += min(t, self.grace_until_s) - self.t_acc
        self.t_acc = t

    def set_budget(self, t: float, budget_watts: float, grace_s: float) -> None:
        self.accumulate(t)
        if budget_watts < self.budget_watts:
            self.grace_until_s = t + grace_s
        self.budget_watts = budget_watts

    def _set_draw(self, inst: Instance, watts: float) -> None:
        delta = watts - inst.draw_watts
        if delta != 0.0:
            inst.draw_watts = watts
            self.draw_total += delta
            self.draw_role[inst.role] += delta
            if self.draw_total > self.peak_drawn_watts:
                self.peak_drawn_watts = self.draw_total

    def _refresh_provisioned(self) -> None:
        total = 0.0
        for r in (PREFILL, DECODE):
            c = self.counts[r]
            total += (c[0] + c[1] + c[2]) * self.gpus[r] * self.cap_watts[r]
        self.provisioned_watts = total
        if total > self.peak_provisioned_watts:
            self.peak_provisioned_watts = total

    def _refresh_busy_watts(self) -> None:
        for r in (PREFILL, DECODE):
            self.busy_watts[r] = float(self.profile.draw_watts(ROLE_OF_INDEX[r], self.cap_watts[r], 1.0))

    def _busy_draw(self, inst: Instance) -> float:
        return self.busy_watts[inst.role] * self.gpus[inst.role]

    def _idle_draw(self, inst: Instance) -> float:
        return self.idle_watts * self.gpus[inst.role]

    def unfinished_by_stage(self) -> dict[str, int]:
        """Where the requests that have not completed are (all zero after a complete run)."""
        prefilling = sum(len(i.reqs) for i in self.instances[PREFILL])
        not_arrived = self.n - self.arrived
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

    def in_flight(self) -> int:
        return self.arrived - self.completed

    def holding(self, role: int) -> int:
        c = self.counts[role]
        return c[0] + c[1] + c[2]

    # ------------------------------------------------------------------ requests: prefill

    def arrive(self, r: int, t: float) -> None:
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
            inst.t_end = t + duration
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
            inst = min(ready, key=_BATCH_OF) if len(ready) > 1 else ready[0]
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
        v = inst.v
        ahead = inst.fin[0][0] - v
        if ahead < 0.0:
            ahead = 0.0
        batch = inst.batch
        ctx = (inst.s_ctx + batch * v) / batch + 0.5 * ahead
        itl = self._iteration_s(batch, ctx)
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

    # ------------------------------------------------------------------ actuation

    def free_gpus(self) -> int | None:
        return None if self.gpu_pool is None else self.gpu_pool - self.gpus_held

    def add_ready(self, role: int, t: float) -> None:
        """A replica that is already serving (the deployment as it stands at the start)."""
        inst = self._hold(role, t)
        self._make_ready(inst, t)

    def start_replica(self, role: int, t: float) -> None:
        """Schedule a new replica: it holds its GPUs (at the role's cap) now and serves after the start time."""
        inst = self._hold(role, t)
        self.push(t + self.settings.replica_start_s, EV_REPLICA_READY, inst, inst.version)

    def _hold(self, role: int, t: float) -> Instance:
        self.accumulate(t)
        self._next_id += 1
        inst = Instance(self._next_id, role)
        self.instances[role].append(inst)
        self.counts[role][STARTING] += 1
        self.gpus_held += self.gpus[role]
        self._set_draw(inst, self._idle_draw(inst))
        self._refresh_provisioned()
        return inst

    def replica_ready(self, inst: Instance, version: int, t: float) -> None:
        if inst.state != STARTING or version != inst.version:
            return
        self.accumulate(t)
        self._make_ready(inst, t)

    def _make_ready(self, inst: Instance, t: float) -> None:
        self.counts[inst.role][STARTING] -= 1
        self.counts[inst.role][READY] += 1
        inst.state = READY
        if inst.role == PREFILL:
            self.idle_prefill.append(inst)
            self._dispatch_prefill(t)
        else:
            inst.t_last = t
            self.ready_decode.append(inst)
            self._admit_decode(t)

    def remove_replicas(self, role: int, count: int, t: float) -> None:
        """Remove ``count`` replicas: starting ones first (Kubernetes deletes unready pods first), then drain
        the least-loaded ready ones. A draining replica takes no new work and releases its GPUs when idle."""
        self.accumulate(t)
        starting = [i for i in self.instances[role] if i.state == STARTING]
        while count > 0 and starting:
            self._release(starting.pop())
            count -= 1
        if count <= 0:
            return
        ready = [i for i in self.instances[role] if i.state == READY]
        if role == PREFILL:
            ready.sort(key=lambda i: (len(i.reqs) > 0, i.t_end))
        else:
            ready.sort(key=_BATCH_OF)
        for inst in ready[:count]:
            self.counts[role][READY] -= 1
            self.counts[role][DRAINING] += 1
            inst.state = DRAINING
            if role == PREFILL:
                if inst in self.idle_prefill:
                    self.idle_prefill.remove(inst)
                if not inst.reqs:
                    self._release(inst)
            else:
                self.ready_decode.remove(inst)
                if inst.batch == 0:
                    self._release(inst)

    def _release(self, inst: Instance) -> None:
        role = inst.role
        self.counts[role][inst.state] -= 1
        inst.state = RELEASED
        inst.version += 1
        self.instances[role].remove(inst)
        self.gpus_held -= self.gpus[role]
        self._set_draw(inst, 0.0)
        self._refresh_provisioned()

    def set_cap(self, role: int, cap_watts: float, t: float) -> None:
        """The role's new per-GPU limit is in force from ``t``: re-time running work at the new speed."""
        self.accumulate(t)
        old = self.cap_watts[role]
        if cap_watts == old:
            return
        self.cap_watts[role] = cap_watts
        self._refresh_busy_watts()
        self._refresh_provisioned()
        for inst in self.instances[role]:
            if inst.state in (STARTING, RELEASED):
                continue
            if inst.busy:
                self._set_draw(inst, self._busy_draw(inst))
            if role == PREFILL:
                if inst.reqs and inst.t_end > t:
                    old_full = self._prefill_time(inst.batch_tokens, old)
                    new_full = self._prefill_time(inst.batch_tokens, cap_watts)
                    inst.t_end = t + (inst.t_end - t) * (new_full / old_full if old_full > 0 else 1.0)
                    inst.version += 1
                    self.push(inst.t_end, EV_PREFILL_DONE, inst, inst.version)
            elif inst.batch > 0:
                self._advance(inst, t)
                self._retime(inst, t)


_BATCH_OF = attrgetter("batch")
