"""The two roles of a disaggregated deployment."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Prefill workers turn prompts into KV caches; decode workers generate tokens from them."""

    PREFILL = "prefill"
    DECODE = "decode"


ROLES: tuple[Role, Role] = (Role.PREFILL, Role.DECODE)
