"""Property tests of the whole reconciler over random histories of pods, annotations and NVML faults."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.agent.gpu import GpuLost, InvalidArgument, NoPermission, NotSupported
from powerplanner.agent.policy import AgentPolicy
from tests.unit.agent.conftest import agent_policy, make_world

ANNOTATIONS = st.one_of(
    st.none(),
    st.integers(1, 1200).map(str),
    st.sampled_from(["abc", "-5", "0", "1e9", "250.5", "", "２５０", "9" * 10_000]),
)
OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["llm", "other"]),
              st.sets(st.integers(0, 3), max_size=3), ANNOTATIONS, st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["llm", "other"])),
    st.tuples(st.just("fault"), st.integers(0, 3),
              st.sampled_from([NoPermission, NotSupported, InvalidArgument, GpuLost])),
    st.tuples(st.just("restart")),
)
POLICIES = st.builds(
    AgentPolicy,
    allowed_namespaces=st.sampled_from([frozenset(), frozenset({"llm"})]),
    floor_watts=st.one_of(st.none(), st.sampled_from([150.0, 250.0])),
    ceiling_watts=st.one_of(st.none(), st.sampled_from([500.0, 650.0])),
    park=st.booleans(),
    park_watts=st.one_of(st.none(), st.sampled_from([100.0, 230.0])),
)


@settings(max_examples=120, deadline=None)
@given(POLICIES, st.lists(OPS, max_size=14))
def test_limits_stay_safe_through_any_history_and_sigterm_restores_everything(
    policy: AgentPolicy, ops: list[tuple[Any, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp) / "state.json", policy)
        gpus = {g.uuid: g for g in world.backend.gpus()}
        for op in ops:
            if op[0] == "put":
                _, name, namespace, held, raw, dgd_worker = op
                world.put_pod(name, sorted(held), raw, namespace, dgd_worker=dgd_worker)
            elif op[0] == "delete":
                world.delete_pod(op[1], op[2])
            elif op[0] == "fault":
                world.backend.fail(world.uuid(op[1]), "set", op[2])
            else:
                world = world.restart(policy)  # killed without restoring, started again
            start = len(world.backend.set_calls)
            result = world.reconciler.reconcile()
            managed = {h.gpu_uuid for h in world.mapper.table
                       if (h.namespace, h.pod) in world.pods and policy.manages(world.pods[(h.namespace, h.pod)])}
            for uuid, watts in world.backend.set_calls[start:]:
                gpu = gpus[uuid]
                plan = result.plans[uuid]
                if plan.action == "release":
                    assert watts == gpu.default_limit_watts  # only ever a restore of the original (700 W)
                    continue
                assert gpu.min_limit_watts <= watts <= gpu.max_limit_watts
                lo = max(gpu.min_limit_watts, policy.floor_watts or 0)
                hi = min(gpu.max_limit_watts, policy.ceiling_watts or float("inf"))
                if lo <= hi:
                    assert lo <= watts <= hi
                if uuid not in managed:
                    assert policy.park and plan.action == "park"  # unmanaged GPUs only ever parked
        # SIGTERM: restore_all retries each GPU (3 attempts); what still fails stays in the state file and the
        # next start restores it. Faults are finite (each injected one fails one call), so a bounded number
        # of stops and starts brings every GPU back, and a GPU is never dropped from the state file early.
        starts, faults_left = 0, world.backend.pending_faults()
        while failures := world.reconciler.restore_all():
            assert set(failures) <= set(world.state.originals())  # a failed GPU is kept for the next start
            starts += 1
            assert starts <= faults_left  # each failed round used up at least one fault
            world = world.restart(policy)
        assert world.limits() == [700.0] * 4
        assert world.state.originals() == {}


def test_restore_retries_a_transient_fault_and_keeps_a_persistent_one_for_the_next_start(tmp_path: Path) -> None:
    # The history hypothesis found: a GPU capped and at its target collects NVML faults that only a restore meets.
    world = make_world(tmp_path / "state.json", agent_policy())
    world.put_pod("a", [0], "200")
    world.reconciler.reconcile()
    world.backend.fail(world.uuid(0), "set", NoPermission, times=2)
    assert world.reconciler.restore_all() == {}  # the third attempt succeeds
    assert world.limits() == [700.0] * 4 and world.state.originals() == {}

    world.reconciler.reconcile()  # the pod still asks: capped again
    world.backend.fail(world.uuid(0), "set", NoPermission, times=4)
    assert world.reconciler.restore_all() == {world.uuid(0): "no_permission"}
    assert world.limits()[0] == 200.0 and world.state.originals() == {world.uuid(0): 700.0}
    world.delete_pod("a")
    world = world.restart()
    assert world.reconciler.restore_all() == {}  # the next start restores it
    assert world.limits() == [700.0] * 4 and world.state.originals() == {}
