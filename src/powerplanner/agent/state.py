"""The agent's state file: each GPU's original power limit, recorded before the agent first changes it.

Why a file: the agent can be killed at any moment (OOM, node drain, SIGKILL mid-apply). The original
limit is written *before* the first set, so a restarted agent still knows what to restore, and a GPU
whose pods are gone gets its limit back at start-up. Writes are atomic (temp file + fsync + rename +
directory fsync): a crash leaves either the old or the new file, never half of one.

Format (JSON): ``{"version": 1, "originals": {"<gpu uuid>": <watts>, ...}}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path

_LOG = logging.getLogger("powerplanner.agent.state")


class StateFileError(Exception):
    """The state file cannot be written (the agent then refuses to change limits it could not restore)."""


class StateStore:
    """Original limits by GPU UUID, persisted on every change."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._originals: dict[str, float] = self._load()

    @property
    def path(self) -> Path:
        return self._path

    def _load(self) -> dict[str, float]:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            _LOG.error("cannot read state file %s (%s); starting without recorded original limits", self._path, exc)
            return {}
        try:
            data = json.loads(text)
            originals = data["originals"]
            return {str(uuid): float(watts) for uuid, watts in originals.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self._path.with_name(self._path.name + ".corrupt")
            _LOG.error(
                "state file %s is not valid (%s); moved it to %s and starting without recorded original limits",
                self._path,
                exc,
                aside,
            )
            with contextlib.suppress(OSError):
                os.replace(self._path, aside)
            return {}

    def _save_locked(self) -> None:
        data = json.dumps({"version": 1, "originals": self._originals}, indent=1, sort_keys=True)
        directory = self._path.parent
        tmp = directory / f".{self._path.name}.{os.getpid()}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StateFileError(f"cannot write state file {self._path}: {exc}") from None

    def originals(self) -> dict[str, float]:
        with self._lock:
            return dict(self._originals)

    def original(self, uuid: str) -> float | None:
        with self._lock:
            return self._originals.get(uuid)

    def record_original(self, uuid: str, watts: float) -> None:
        """Remember ``watts`` as the original limit of ``uuid`` unless one is already recorded (then no-op)."""
        with self._lock:
            if uuid in self._originals:
                return
            self._originals[uuid] = float(watts)
            try:
                self._save_locked()
            except StateFileError:
                del self._originals[uuid]
                raise

    def forget(self, uuid: str) -> None:
        """The GPU is back at its original limit: stop tracking it."""
        with self._lock:
            if uuid not in self._originals:
                return
            watts = self._originals.pop(uuid)
            try:
                self._save_locked()
            except StateFileError:
                self._originals[uuid] = watts
                raise
