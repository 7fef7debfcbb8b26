"""Power-safe transition plans: from the current state to a target, as ordered actuation steps.

The provisioned power of a role is holding replicas (ready + starting + draining) x GPUs per replica x
the role's applied cap. Removing a replica does not release its power at once: it drains first and keeps
its GPUs until it is gone. So the order is

1. lower caps (releases power immediately),
2. remove replicas (they start draining; worst case their power is still held),
3. raise caps, only as far as the budget allows with draining replicas still counted,
4. add replicas that fit now (draining counted),
5. add replicas that only fit once draining replicas have released: ``wait_for_drain=True``; these come
   last so that a skipped waiting step never invalidates the accounting of a later step.

Every step carries ``provisioned_after_watts``, the worst case once it is done (draining counted; for a
waiting step, after the drain it waits for). If the current state is within the budget, no step exceeds
it. If it is not (a budget cut), no step raises provisioned power and caps go down first. What does not
fit now is left to the next tick, which re-plans from the observed state.

An unknown applied cap (``None``) is counted at the GPU's maximum limit, the worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import RoleState, RoleTarget, Step, StepKind


@dataclass
class _RoleNow:
    desired: int  # ready + starting: what the replica count is set to
    draining: int
    cap_watts: float
    gpus_per_replica: int


def _provisioned(state: dict[Role, _RoleNow], drained: bool = False) -> float:
    return sum(
        (s.desired + (0 if drained else s.draining)) * s.gpus_per_replica * s.cap_watts for s in state.values()
    )


def _gpus(state: dict[Role, _RoleNow], drained: bool = False) -> int:
    return sum((s.desired + (0 if drained else s.draining)) * s.gpus_per_replica for s in state.values())


def current_provisioned_watts(
    current: dict[Role, RoleState], gpus_per_replica: dict[Role, int], unknown_cap_watts: float
) -> float:
    """Provisioned power of the observed state (unknown caps counted at ``unknown_cap_watts``)."""
    total = 0.0
    for role in ROLES:
        rs = current[role]
        cap = rs.applied_cap_watts if rs.applied_cap_watts is not None else unknown_cap_watts
        total += max(0, rs.holding_replicas) * gpus_per_replica[role] * cap
    return total


def plan_transition(
    current: dict[Role, RoleState],
    target: dict[Role, RoleTarget],
    gpus_per_replica: dict[Role, int],
    budget_watts: float | None,
    gpu_pool: int | None,
    unknown_cap_watts: float,
) -> tuple[Step, ...]:
    """Ordered steps from ``current`` to ``target``. ``budget_watts=None`` plans without a power limit
    (the power-unaware baselines), keeping the same order."""
    # One function on purpose (about 75 lines): the phases below (lower caps, remove replicas, raise caps, add
    # replicas) share the running worst-case state, and their order is the budget guarantee; read top to bottom
    # it is the order docs/planner.md ("Power-safe transitions") describes.
    state: dict[Role, _RoleNow] = {}
    for role in ROLES:
        applied = current[role].applied_cap_watts
        state[role] = _RoleNow(
            desired=max(0, current[role].desired_replicas),
            draining=max(0, current[role].draining_replicas),
            cap_watts=applied if applied is not None else unknown_cap_watts,
            gpus_per_replica=gpus_per_replica[role],
        )
    unknown = {role: current[role].applied_cap_watts is None for role in ROLES}
    limit = math.inf if budget_watts is None else budget_watts
    pool = math.inf if gpu_pool is None or budget_watts is None else gpu_pool
    steps: list[Step] = []

    def emit(kind: StepKind, role: Role, value: float, wait: bool = False) -> None:
        steps.append(Step(kind, role, value, _provisioned(state, drained=wait), wait_for_drain=wait))

    # 1. lower caps (an unknown cap is always written, so it becomes known)
    for role in sorted(ROLES, key=lambda r: -(state[r].cap_watts - target[r].cap_watts) * _holding(state[r])):
        if target[role].cap_watts < state[role].cap_watts or (
            unknown[role] and target[role].cap_watts <= state[role].cap_watts
        ):
            state[role].cap_watts = target[role].cap_watts
            emit(StepKind.SET_CAP, role, target[role].cap_watts)
    # 2. remove replicas: they drain, still holding power in the worst case
    for role in ROLES:
        if target[role].replicas < state[role].desired:
            state[role].draining += state[role].desired - target[role].replicas
            state[role].desired = target[role].replicas
            emit(StepKind.SCALE, role, target[role].replicas)
    # 3. raise caps as far as the budget allows now
    for role in ROLES:
        s = state[role]
        if target[role].cap_watts > s.cap_watts:
            gpus = _holding(s) * s.gpus_per_replica
            if gpus == 0 or budget_watts is None:
                new_cap = target[role].cap_watts
            else:
                others = _provisioned(state) - gpus * s.cap_watts
                new_cap = min(target[role].cap_watts, math.floor((limit - others) / gpus))
            if new_cap > s.cap_watts:
                s.cap_watts = float(new_cap)
                emit(StepKind.SET_CAP, role, s.cap_watts)
    # 4. add replicas that fit now, draining counted
    for role in ROLES:
        s = state[role]
        add = target[role].replicas - s.desired
        if add <= 0:
            continue
        per_replica = s.gpus_per_replica * s.cap_watts
        k = _fits(add, per_replica, s.gpus_per_replica, limit - _provisioned(state), pool - _gpus(state))
        if k > 0:
            s.desired += k
            emit(StepKind.SCALE, role, s.desired)
    # 5. add replicas that fit once draining replicas have released their GPUs
    if any(s.draining for s in state.values()):
        for role in ROLES:
            s = state[role]
            add = target[role].replicas - s.desired
            if add <= 0:
                continue
            per_replica = s.gpus_per_replica * s.cap_watts
            room = limit - _provisioned(state, drained=True)
            k = _fits(add, per_replica, s.gpus_per_replica, room, pool - _gpus(state, drained=True))
            if k > 0:
                s.desired += k
                emit(StepKind.SCALE, role, s.desired, wait=True)
    return tuple(steps)


def _holding(s: _RoleNow) -> int:
    return s.desired + s.draining


def _fits(add: int, watts_each: float, gpus_each: int, room_watts: float, room_gpus: float) -> int:
    """How many of ``add`` replicas fit in the remaining power and GPUs."""
    k = add
    if watts_each > 0 and math.isfinite(room_watts):
        k = min(k, math.floor((room_watts + 1e-6) / watts_each))
    if gpus_each > 0 and math.isfinite(room_gpus):
        k = min(k, math.floor(room_gpus / gpus_each))
    return max(0, k)
