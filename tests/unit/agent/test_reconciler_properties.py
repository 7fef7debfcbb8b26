"""Property tests of the whole reconciler over random histories of pods, annotations and NVML faults."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.agent.gpu import GpuLost, InvalidArgument, NoPermission, NotSupported
from powerplanner.agent.policy import AgentPolicy
from tests.unit.agent.conftest import make_world

ANNOTATIONS = st.one_of(
    st.none(),
    st.integers(1, 1200).map(str),
    st.sampled_from(["abc", "-5", "0", "1e9", "250.5", "", "２５０", "9" * 10_000]),
)
OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["llm", "other"]),
              st.sets(st.integers(0, 3), max_size=3), ANNOTATIONS),
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


@pytest.mark.xfail(
    strict=False, reason="known bug (issue 6 note): an NVML fault during SIGTERM restore can leave a GPU capped"
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
                _, name, namespace, held, raw = op
                world.put_pod(name, sorted(held), raw, namespace)
            elif op[0] == "delete":
                world.delete_pod(op[1], op[2])
            elif op[0] == "fault":
                world.backend.fail(world.uuid(op[1]), "set", op[2])
            else:
                world = world.restart(policy)  # killed without restoring, started again
            start = len(world.backend.set_calls)
            result = world.reconciler.reconcile()
            managed = {h.gpu_uuid for h in world.mapper.table
                       if (h.namespace, h.pod) in world.pods and policy.allows(h.namespace)}
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
        for _ in range(5):  # injected faults still queued are consumed one per attempt
            if not world.reconciler.restore_all():
                break
        assert world.limits() == [700.0] * 4
        assert world.state.originals() == {}
