"""The node agent's section of the configuration file (``agent:``): which pods' caps it honours, parking, what it
restores on exit, its timings and paths.

A model of its own so that the agent's policy is read in one place; :mod:`powerplanner.config` holds it as
``Config.agent`` and re-exports it (``from powerplanner.config import AgentConfig``), and the agent builds its
plain policy from it at the edge. docs/configuration.md (generated) lists every field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from powerplanner.input_schema import InputModel, NonNegativeFloat, PositiveFloat


class AgentConfig(InputModel):
    """The node power agent's policy."""

    node_name: str | None = Field(None, description="Node to manage (default: env NODE_NAME).")
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces whose Dynamo workers (pods with the DGD label) may request caps; set it to the "
        "DGD's namespaces. Empty allows none: no pod's cap is honoured (the agent says so at start-up).",
    )
    floor_watts: PositiveFloat | None = Field(None, description="Node-wide lowest limit the agent will set.")
    ceiling_watts: PositiveFloat | None = Field(None, description="Node-wide highest limit the agent will set.")
    park: bool = Field(
        True,
        description="Keep GPUs no managed pod holds, and GPUs of workers whose cap has not arrived, at park_watts "
        "(fail closed: a new replica starts low and rises when its cap arrives). false: such GPUs go back to their "
        "original limit (after new_pod_grace_s for new workers), which lets a new replica briefly exceed the budget.",
    )
    park_watts: PositiveFloat | None = Field(
        None,
        description="Park limit (default: the GPU's minimum); keep it at or below the lowest cap the planner sets.",
    )
    new_pod_grace_s: NonNegativeFloat = Field(
        60.0,
        description="With park: false, how long a Dynamo worker (DGD label) younger than this that holds GPUs "
        "before the planner annotated it, or a pod the kubelet reports before the pod watch has, waits at the park "
        "limit before its GPUs go back to their original limit; 0 turns this off. With parking on they wait "
        "until the annotation arrives, however long that takes.",
    )
    restore_on_exit: Literal["uninstall", "always", "never"] = Field(
        "uninstall",
        description="What the agent does with the limits it set when it stops (SIGTERM/SIGINT). uninstall: "
        "restore the original limits only when its DaemonSet is gone or being deleted (read through the API "
        "from its own pod, env POD_NAME/POD_NAMESPACE), else leave the limits in force and the state file for "
        "the next agent, so a restart or a rollout never lifts a node over its budget; any doubt (API "
        "unreachable, env missing) leaves them too. always: restore on every stop (each restart then runs the "
        "node's GPUs at their original limits until the next agent starts). never: never restore.",
    )
    dry_run: bool = False
    resync_s: Annotated[float, Field(ge=0.5, le=3600, allow_inf_nan=False)] = Field(
        30.0, description="Full pass over the node's pods and GPUs this often, besides the watch. 0.5 s to 1 h: each "
        "pass lists pods from the API server and the kubelet (faster mostly loads them); a watch event missed "
        "goes unseen until the next pass, so not more than an hour.")
    state_file: str = "/var/lib/powerplanner/agent-state.json"
    kubelet_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    kubelet_timeout_s: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False)] = Field(
        2.0, description="Timeout of a kubelet pod-resources call. 0.1 s to 60 s: the local socket answers in "
        "milliseconds; a longer wait stalls the agent's pass.")
    proc_root: str = "/proc"
    metrics_bind: str = "0.0.0.0:9401"
    resource_name: str = "nvidia.com/gpu"

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> AgentConfig:
        if self.floor_watts is not None and self.ceiling_watts is not None and self.floor_watts > self.ceiling_watts:
            raise ValueError("agent.floor_watts must be <= agent.ceiling_watts")
        return self
