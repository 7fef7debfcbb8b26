"""The agent's state file: each GPU's original power limit, recorded before the agent first changes it.

Why a file: the agent hands over to its successor. On a restart, a DaemonSet rollout or a kill it leaves the
limits in force (they are the budget-safe ones) and this file on the host; the next agent on the node reads it
to know what "original" means for each GPU, so that it can release a GPU whose pod is gone, and restore every
GPU when the agent is uninstalled (docs/operations.md, "Restarts, rollouts and uninstall"). The original is
written *before* the first set, so a kill mid-apply loses nothing. Writes are atomic (temp file + fsync +
rename + directory fsync): a crash leaves either the old or the new file, never half of one; a failed write
(ENOSPC, EIO, read-only) removes its temporary file.

A file is never trusted blindly, and never lost: one that cannot be read, is not UTF-8 JSON, is empty or
truncated, has an unknown version, or was written on another node is set aside under a timestamped name
(``agent-state.json.20260101T120000Z.bad``; never deleted, never overwritten) and every GPU of this node then
takes NVML's default limit as its original. Each entry is validated on its own: a value that is not a finite
number within its GPU's ``[min, max]`` range is replaced by that GPU's default limit, the other entries are
kept (the file as found is set aside first). The agent starts in every case: a bad state file must not
become a crash loop that leaves GPUs unmanaged.

When a write fails, entries the reconciler asks to keep stay in memory (the true original, for this process)
and every later write carries them, so they reach the disk once it accepts writes again.

Format (JSON), version 2: ``{"version": 2, "node": "<node name>", "originals": {"<gpu uuid>": <watts>}}``.
Version 1 (no ``node``) is read as this node's file and rewritten as version 2 at the next write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from powerplanner.agent.gpu import GpuInfo

_LOG = logging.getLogger("powerplanner.agent.state")
VERSION = 2
MAX_STATE_BYTES = 1 << 20  # a node's file is a few hundred bytes; anything this big is not ours
_EPSILON_WATTS = 0.0005  # NVML works in milliwatts


class StateFileError(Exception):
    """The state file cannot be written."""


class _Untrusted(Exception):
    """The whole file is unusable (the message says why)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _Untrusted("it repeats a key")
    return dict(pairs)


def _number(value: object) -> float | None:
    """A finite, positive number of watts, or None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    watts = float(value)
    return watts if math.isfinite(watts) and watts > 0 else None


def valid_watts(value: object, gpu: GpuInfo | None) -> float | None:
    """``value`` as watts when it is a finite positive number within ``gpu``'s range (when known), else None."""
    watts = _number(value)
    if watts is None or gpu is None:
        return watts
    if gpu.min_limit_watts - _EPSILON_WATTS <= watts <= gpu.max_limit_watts + _EPSILON_WATTS:
        return watts
    return None


class StateStore:
    """Original limits by GPU UUID, persisted on every change. Thread-safe."""

    def __init__(
        self,
        path: str | Path,
        node_name: str,
        gpus: Sequence[GpuInfo],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = Path(path)
        self._node = node_name
        self._gpus = {gpu.uuid: gpu for gpu in gpus}
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._dirty = False  # memory holds entries the file lacks (or the file must be rewritten)
        self._aside_pending = False  # an untrusted file is still at the path: set it aside before any write
        self._pending_raw: bytes | None = None  # its bytes, when they could be read
        self._originals: dict[str, float] = self._load()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def dirty(self) -> bool:
        with self._lock:
            return self._dirty

    # -- loading -----------------------------------------------------------------------------------
    def _load(self) -> dict[str, float]:
        try:
            with open(self._path, "rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):  # no file (a parent that is not a directory: none either)
            return {}
        except OSError as exc:
            return self._untrusted(f"cannot be read ({exc.strerror or exc})", None)
        if len(raw) > MAX_STATE_BYTES:
            return self._untrusted(f"is larger than {MAX_STATE_BYTES} bytes", None)
        try:
            entries = self._decode(raw)
        except _Untrusted as exc:
            return self._untrusted(str(exc), raw)
        originals: dict[str, float] = {}
        problems: list[str] = []
        for uuid, value in entries.items():
            gpu = self._gpus.get(uuid)
            watts = valid_watts(value, gpu)
            if watts is not None:
                originals[uuid] = watts
            elif gpu is not None:
                originals[uuid] = gpu.default_limit_watts
                problems.append(f"GPU {uuid}: {_short(value)} is not a limit within [{gpu.min_limit_watts:g}, "
                                f"{gpu.max_limit_watts:g}] W, using its default {gpu.default_limit_watts:g} W")
            else:
                problems.append(f"GPU {uuid} (not on this node): {_short(value)} is not a limit, dropped")
        if problems:
            aside = self._set_aside(raw)
            kept = f"the file as found is kept as {aside}" if aside else "the file could not be set aside"
            for problem in problems:
                _LOG.error("state file %s: %s (%s)", self._path, problem, kept)
            self._dirty = True
        return originals

    def _decode(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise _Untrusted("is empty")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Untrusted("is not UTF-8 text") from None
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            raise _Untrusted(f"is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(data, dict):
            raise _Untrusted("does not hold a JSON object")
        version = data.get("version")
        if isinstance(version, bool) or version not in (1, 2):
            raise _Untrusted(f"has version {_short(version)}, not 1 or 2")
        if version == 2:
            node = data.get("node")
            if not isinstance(node, str):
                raise _Untrusted("has no node name")
            if node != self._node:
                raise _Untrusted(f"was written on node {_short(node)}, not {self._node!r}")
        originals = data.get("originals")
        if not isinstance(originals, dict):
            raise _Untrusted("has no \"originals\" object")
        return originals

    def _untrusted(self, problem: str, raw: bytes | None) -> dict[str, float]:
        """The whole file is unusable: keep it aside; every GPU of the node takes its default as original."""
        aside = self._set_aside(raw)
        kept = f"it is kept as {aside}" if aside else "it could not be set aside, so nothing is written there"
        _LOG.error(
            "state file %s %s; %s; starting with NVML's default limit as the original of every GPU",
            self._path, problem, kept,
        )
        self._dirty = True
        return {uuid: gpu.default_limit_watts for uuid, gpu in self._gpus.items()}

    def _set_aside(self, raw: bytes | None) -> Path | None:
        """Keep the file under a new timestamped name: a copy when its bytes are at hand (the path keeps a file
        until the corrected one replaces it atomically), else a rename. Never overwrites; None on failure."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._wall_clock()))
        for attempt in range(100):
            suffix = f".{stamp}.bad" if attempt == 0 else f".{stamp}-{attempt}.bad"
            aside = self._path.with_name(self._path.name + suffix)
            try:
                if raw is not None:
                    self._write_new(aside, raw)  # O_EXCL: never overwrites
                elif aside.exists() or aside.is_symlink():
                    continue
                else:
                    os.rename(self._path, aside)
            except FileExistsError:
                continue
            except OSError as exc:
                _LOG.error("cannot set the state file %s aside as %s (%s)", self._path, aside, exc.strerror or exc)
                self._aside_pending = True
                self._pending_raw = raw
                return None
            self._aside_pending = False
            return aside
        self._aside_pending = True
        self._pending_raw = raw
        return None

    @staticmethod
    def _write_new(path: Path, raw: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, raw)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)

    # -- writing -----------------------------------------------------------------------------------
    def _save_locked(self) -> None:
        if self._aside_pending and self._set_aside(self._pending_raw) is None:
            raise StateFileError(f"cannot write state file {self._path}: the untrusted file there could not be "
                                 "set aside (it is never overwritten)")
        data = json.dumps({"version": VERSION, "node": self._node, "originals": self._originals},
                          indent=1, sort_keys=True, allow_nan=False)
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
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # no stray temporary file (ENOSPC, EIO, ...)
            raise StateFileError(f"cannot write state file {self._path}: {exc.strerror or exc}") from None
        self._dirty = False

    def flush(self) -> None:
        """Write what memory holds and the file lacks (after a failed write); a no-op when nothing is pending."""
        with self._lock:
            if self._dirty:
                self._save_locked()

    # -- reading and changing ----------------------------------------------------------------------
    def originals(self) -> dict[str, float]:
        with self._lock:
            return dict(self._originals)

    def original(self, uuid: str) -> float | None:
        with self._lock:
            return self._originals.get(uuid)

    def record_original(self, uuid: str, watts: float, keep_if_unsaved: bool = False) -> None:
        """Remember ``watts`` as the original limit of ``uuid`` unless one is already recorded (then no-op).

        A value that is not a valid limit of the GPU is recorded as the GPU's default limit. When the write
        fails, :class:`StateFileError` is raised; the entry stays in memory (and is written by the next write
        that succeeds) only with ``keep_if_unsaved``, else it is dropped.
        """
        with self._lock:
            if uuid in self._originals:
                return
            gpu = self._gpus.get(uuid)
            value = valid_watts(watts, gpu)
            if value is None:
                if gpu is None:
                    raise StateFileError(f"not recording {watts!r} W for GPU {uuid}: not a power limit")
                _LOG.error("GPU %s reports a limit of %r W, outside [%g, %g] W; recording its default %g W as the "
                           "original", uuid, watts, gpu.min_limit_watts, gpu.max_limit_watts, gpu.default_limit_watts)
                value = gpu.default_limit_watts
            self._originals[uuid] = value
            try:
                self._save_locked()
            except StateFileError:
                if keep_if_unsaved:
                    self._dirty = True
                else:
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


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
