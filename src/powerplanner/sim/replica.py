"""A simulated replica (prefill or decode) and the small integer codes the event loop uses for roles and states.

Plain integers and a ``__slots__`` object rather than enums and dataclasses: the cluster changes replica state
thousands of times per simulated second (docs/internals.md, "sim/ engine").
"""

from __future__ import annotations

import math
from operator import attrgetter

from powerplanner.model.roles import Role

PREFILL = 0
DECODE = 1
ROLE_OF_INDEX: tuple[Role, Role] = (Role.PREFILL, Role.DECODE)

# Instance states.
STARTING = 0
READY = 1
DRAINING = 2
RELEASED = 3


class Instance:
    """One replica (prefill or decode). Plain slots object: thousands of state changes per simulated second."""

    __slots__ = ("batch", "batch_tokens", "draw_watts", "fin", "id", "itl_s", "reqs", "role", "s_ctx", "slow",
                 "state", "t_end", "t_last", "v", "version")

    def __init__(self, ident: int, role: int, slow: float = 1.0) -> None:
        self.id = ident
        self.role = role
        self.slow = slow  # time multiplier of this replica's GPUs (1.0 unless the plant varies GPUs)
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



BATCH_OF = attrgetter("batch")
"""A decode replica's running batch size: the least-loaded replica is the one with the smallest."""
