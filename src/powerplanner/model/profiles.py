"""Finding a profile by name or by file: the one entry point the rest of the code uses (the config's
``profile:`` section goes through ``powerplanner.core_settings.profile_from_config``)."""

from __future__ import annotations

from powerplanner.errors import ProfileError
from powerplanner.model.builtin import builtin_profiles
from powerplanner.model.gpu import gpu_by_name
from powerplanner.model.profile import PowerProfile

DEFAULT_PROFILE_NAME = "llama2-70b-h100-tp4"


def builtin_profile_names() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(builtin_profiles())


def profiles_fitting(request_tokens: int) -> list[str]:
    """Built-in profiles whose context window holds a request of ``request_tokens`` (prompt + output), sorted."""
    return sorted(name for name, p in builtin_profiles().items()
                  if p.context_window_tokens is not None and p.context_window_tokens >= request_tokens)


def load_profile(name: str | None = None, path: str | None = None, gpu: str | None = None) -> PowerProfile:
    """A built-in profile by ``name``, or a profile file/Dynamo profiler output at ``path`` (which wins when
    both are given, since the config always carries a default name). ``gpu`` names the GPU whose cap model
    completes a Dynamo profile; for a built-in profile it must match the profile's own GPU."""
    if path:
        from powerplanner.model.loaders import load_profile_path  # the only I/O of model/

        return load_profile_path(path, gpu=gpu)
    chosen = name or DEFAULT_PROFILE_NAME
    profiles = builtin_profiles()
    if chosen not in profiles:
        known = ", ".join(sorted(profiles))
        raise ProfileError(f"unknown profile {chosen!r}; use one of: {known}, or give a profile file path")
    profile = profiles[chosen]
    if gpu is not None and gpu_by_name(gpu).name != profile.gpu.name:
        raise ProfileError(
            f"profile {chosen!r} is for {profile.gpu.name}, not {gpu_by_name(gpu).name}; drop --gpu/profile.gpu "
            "or pick a profile for that GPU"
        )
    return profile
