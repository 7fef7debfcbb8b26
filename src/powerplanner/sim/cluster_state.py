"""What a simulated deployment holds besides its requests, and the bookkeeping every state change goes through.

:class:`ClusterState` is the base of :class:`~powerplanner.sim.cluster.Cluster`: the event heap (shared with the
engine), the replicas per role and their counts, the applied caps, and the power and time integrals. Power,
provisioned power, held GPUs and time over budget are accumulated lazily: every state change first integrates
the current (piecewise constant) values up to now (:meth:`ClusterState.accumulate`), then applies the change.

Power model (docs/internals.md, "sim/ engine"): a prefill replica is busy (1) while a batch runs, else idle
(0); a decode replica is busy (1) while its batch is non-empty (Splitwise's constant per-phase power model:
decode draws its phase power whatever the batch), unless the profile's draw depends on the batch
(docs/profile-format.md, "Draw by TP and load"): then a busy replica draws at its batch's prompt tokens
(prefill) or sequences (decode). Starting replicas draw idle power; draw never exceeds the applied cap.
Provisioned power is holding replicas x GPUs x applied cap.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from powerplanner.model.profile import PowerProfile, ProfileDimensions
from powerplanner.model.roles import Role
from powerplanner.sim.replica import DECODE, PREFILL, RELEASED, ROLE_OF_INDEX, Instance
from powerplanner.sim.settings import SimSettings


class ClusterState:
    """Replicas, caps, the event heap and the power integrals of one simulated deployment.

    One flat object on purpose, and so are the layers built on it (the request flow of
    :mod:`powerplanner.sim.request_flow`, the actuation of :mod:`powerplanner.sim.cluster`): the event loop
    reads and writes these attributes thousands of times per simulated second, and one attribute lookup each
    is what keeps ~200k requests to seconds.
    """

    def __init__(self, profile: PowerProfile, settings: SimSettings, initial_caps_watts: tuple[float, float],
                 gpu_pool: int | None) -> None:
        self.profile = profile
        self.settings = settings
        self.heap: list[tuple[float, int, int, Any, int]] = []
        self.seq = 0

        self.gpus = (profile.gpus_per_replica(Role.PREFILL), profile.gpus_per_replica(Role.DECODE))
        self.idle_watts = float(profile.idle_watts())
        self.gpu_pool = gpu_pool
        self.cap_watts = [float(initial_caps_watts[0]), float(initial_caps_watts[1])]
        self.busy_watts = [0.0, 0.0]  # per-GPU draw of a busy replica at the applied cap
        dims = profile if isinstance(profile, ProfileDimensions) else None
        self.draw_by_load = [dims is not None and dims.draw_varies_with_load(ROLE_OF_INDEX[r]) for r in (0, 1)]
        self._load_draw = dims.busy_draw_at_load_watts if dims is not None else None
        self._load_draw_cache: dict[tuple[int, int], float] = {}  # (role, load) -> per-GPU draw at the applied cap
        self._refresh_busy_watts()

        self.instances: list[list[Instance]] = [[], []]  # holding replicas per role
        self.idle_prefill: list[Instance] = []  # ready prefill replicas without a batch
        self.ready_decode: list[Instance] = []
        self.counts = [[0, 0, 0], [0, 0, 0]]  # per role: starting, ready, draining
        self._next_id = 0
        self._variation = settings.gpu_time_variation
        seed = settings.gpu_variation_seed
        self._variation_rngs = [np.random.default_rng([seed, role]) for role in (PREFILL, DECODE)]

        # Power and time integrals (piecewise constant between state changes).
        self.t_acc = 0.0
        self.draw_total = 0.0
        self.draw_role = [0.0, 0.0]
        self.energy_j = 0.0
        self.energy_role_j = [0.0, 0.0]
        self.gpus_held = 0
        self.peak_gpus = 0  # most GPUs held at once (starting, ready, draining)
        self.gpu_seconds = 0.0
        self.provisioned_watts = 0.0
        self.peak_provisioned_watts = 0.0
        self.peak_drawn_watts = 0.0
        self.budget_watts = math.inf
        self.over_budget_s = 0.0
        self.over_budget_after_cut_s = 0.0
        self.grace_until_s = -math.inf

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

    def _replica_slowness(self, role: int) -> float:
        """Time multiplier of a new replica: its slowest GPU's, each drawn from [1 - v, 1 + v] by the role's own
        seeded stream (so the n-th replica of a role gets the same GPUs whatever the other role did)."""
        if self._variation <= 0:
            return 1.0
        draws = self._variation_rngs[role].uniform(1.0 - self._variation, 1.0 + self._variation, self.gpus[role])
        return float(draws.max())

    def _refresh_busy_watts(self) -> None:
        self._load_draw_cache.clear()
        for r in (PREFILL, DECODE):
            self.busy_watts[r] = float(self.profile.draw_watts(ROLE_OF_INDEX[r], self.cap_watts[r], 1.0))

    def _busy_draw(self, inst: Instance) -> float:
        role = inst.role
        if self.draw_by_load[role] and self._load_draw is not None:
            load = inst.batch_tokens if role == PREFILL else inst.batch
            watts = self._load_draw_cache.get((role, load))
            if watts is None:
                watts = float(self._load_draw(ROLE_OF_INDEX[role], self.cap_watts[role], float(load)))
                self._load_draw_cache[(role, load)] = watts
            return watts * self.gpus[role]
        return self.busy_watts[role] * self.gpus[role]

    def _idle_draw(self, inst: Instance) -> float:
        return self.idle_watts * self.gpus[inst.role]

    def holding(self, role: int) -> int:
        c = self.counts[role]
        return c[0] + c[1] + c[2]

    def free_gpus(self) -> int | None:
        return None if self.gpu_pool is None else self.gpu_pool - self.gpus_held

    def _release(self, inst: Instance) -> None:
        role = inst.role
        self.counts[role][inst.state] -= 1
        inst.state = RELEASED
        inst.version += 1
        self.instances[role].remove(inst)
        self.gpus_held -= self.gpus[role]
        self._set_draw(inst, 0.0)
        self._refresh_provisioned()
