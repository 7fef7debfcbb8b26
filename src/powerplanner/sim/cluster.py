"""The simulated disaggregated cluster: requests through prefill and decode replicas, replicas started and
removed, caps applied, and the power all of it draws.

Built by entity, as Vidur builds its simulator: a replica (:mod:`powerplanner.sim.replica`), the request path
through the queues and batches (:mod:`powerplanner.sim.request_flow`), the state and power bookkeeping every
change goes through (:mod:`powerplanner.sim.cluster_state`), and here the cluster as the closed loop actuates
it: replicas added, started, drained and released, and per-role caps applied. Time advances by events
(:mod:`powerplanner.sim.events`), never by tokens; the model is documented in docs/internals.md
("sim/ engine").
"""

from __future__ import annotations

from powerplanner.sim.events import (
    EV_CAP_APPLY,
    EV_DECODE_DONE,
    EV_KV_DONE,
    EV_PREFILL_DONE,
    EV_REPLICA_READY,
    EV_TICK,
)
from powerplanner.sim.replica import (
    BATCH_OF,
    DECODE,
    DRAINING,
    PREFILL,
    READY,
    RELEASED,
    ROLE_OF_INDEX,
    STARTING,
    Instance,
)
from powerplanner.sim.request_flow import RequestFlow

__all__ = [
    "DECODE",
    "DRAINING",
    "EV_CAP_APPLY",
    "EV_DECODE_DONE",
    "EV_KV_DONE",
    "EV_PREFILL_DONE",
    "EV_REPLICA_READY",
    "EV_TICK",
    "PREFILL",
    "READY",
    "RELEASED",
    "ROLE_OF_INDEX",
    "STARTING",
    "Cluster",
    "Instance",
]
"""The engine and the closed loop import the codes from here, with the cluster they describe."""


class Cluster(RequestFlow):
    """Requests, replicas and power of one simulated deployment. The event heap is shared with the engine."""

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
        inst = Instance(self._next_id, role, self._replica_slowness(role))
        self.instances[role].append(inst)
        self.counts[role][STARTING] += 1
        self.gpus_held += self.gpus[role]
        self.peak_gpus = max(self.peak_gpus, self.gpus_held)
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
            ready.sort(key=BATCH_OF)
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


