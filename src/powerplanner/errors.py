"""Errors a user can cause, and how they are shown.

Every problem with user input (config, profile, trace, observation, annotation, an unreachable
endpoint) is raised as a :class:`UserError`. The CLI prints its lines, one per problem, and exits
non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. ``lines`` holds one message per problem, each naming the fix."""

    exit_code: int = 2

    def __init__(self, *lines: str) -> None:
        if not lines:
            raise ValueError("UserError needs at least one message")
        self.lines: tuple[str, ...] = tuple(lines)
        super().__init__("\n".join(lines))


class ConfigError(UserError):
    """The configuration file is missing, unreadable or invalid."""


class ProfileError(UserError):
    """A power-performance profile is missing or invalid."""


class TraceError(UserError):
    """A request trace is missing or invalid."""


class ObservationError(UserError):
    """An observation given to ``powerplanner plan`` is invalid."""


class EndpointError(UserError):
    """A peer (Prometheus, the Kubernetes API, the kubelet) cannot be reached at start-up."""

    exit_code = 3
