"""Reading profiles from files: the only I/O in ``model/``. Everything it reads is validated into the same
pure values the built-in profiles use."""

from __future__ import annotations

from powerplanner.errors import ProfileError
from powerplanner.model.profile import PowerProfile


def load_profile_path(path: str, gpu: str | None = None) -> PowerProfile:
    """A profile from our YAML/npz format or from Dynamo's profiler output at ``path``."""
    raise ProfileError(f"cannot load {path!r}: profile files are not supported in this version yet; use a built-in")
