"""Which optional extra provides which import, so a command run where its extra is not installed says so.

Each image installs only its own extra (pyproject.toml; docs/install.md, "Images"): ``powerplanner run`` in the
agent's image, or ``simulate`` plots on a bare install, meet a missing package. That is a user's fix (install
the extra), so it becomes one line naming it, never a traceback.
"""

from __future__ import annotations

from powerplanner.errors import UserError

EXTRA_OF_MODULE: dict[str, str] = {
    "kubernetes": "planner",
    "matplotlib": "plots",
    "scipy": "tools",
    "grpc": "agent",
    "google": "agent",  # protobuf
    "pynvml": "agent",  # nvidia-ml-py
    "lightkube": "agent",  # the agent's Kubernetes client
    "croniter": "planner",  # cron budget schedules
}


class MissingExtra(UserError):
    """A command needs a package of an extra this installation left out."""


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The user-facing error for ``exc`` when an extra provides the module, else None (a real bug)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return MissingExtra(f"this command needs the `{extra}` extra ({top} is not installed): "
                        f"pip install 'powerplanner[{extra}]', or use the image that has it")
