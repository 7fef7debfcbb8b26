"""The kinds of event in the simulator's heap: ``(time_s, seq, kind, payload, version)``.

The cluster pushes the request and replica events, the closed loop the cap changes and planner ticks; the
engine pops them in time order and dispatches on the kind (docs/internals.md, "sim/ engine"). A payload
carries the ``version`` it was scheduled for, so an event overtaken by a later change is dropped.
"""

from __future__ import annotations

EV_PREFILL_DONE = 0
EV_KV_DONE = 1
EV_DECODE_DONE = 2
EV_REPLICA_READY = 3
EV_CAP_APPLY = 4
EV_TICK = 5
