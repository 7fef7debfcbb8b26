"""The planner's ``leader_election:`` section: several planner pods for one deployment, only the holder of a
``coordination.k8s.io/v1`` Lease acting (docs/operations.md, "High availability").

A model of its own, as ``agent:`` is (agent_config.py); :mod:`powerplanner.config` holds it as
``Config.leader_election``. The timings are Kubernetes' own defaults (client-go, kube-controller-manager).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from powerplanner.input_schema import InputModel, PositiveFloat


class LeaderElectionConfig(InputModel):
    """Leader election among planner pods of one deployment (the chart turns it on with planner.replicas > 1)."""

    enabled: bool = Field(
        False, description="Act only while holding the Lease; a planner without it observes and serves /metrics, "
        "but never scales, annotates or writes the budget state. Needed whenever two planners may run at once "
        "(replicas > 1, or a rolling update).")
    lease_name: str | None = Field(None, description="Name of the Lease (default: powerplanner-<dgd_name>).")
    namespace: str | None = Field(
        None, description="Namespace of the Lease (default: kubernetes.namespace; the chart sets its release "
        "namespace).")
    identity_env: str = Field(
        "POD_NAME", description="Environment variable holding this planner's identity in the Lease (the chart "
        "sets POD_NAME from the downward API); the host name when unset.")
    lease_duration_s: PositiveFloat = Field(
        15.0, description="How long a candidate waits, from when it first reads an unchanged Lease, before taking "
        "it over. Whole seconds are written to the Lease (rounded up).")
    renew_deadline_s: PositiveFloat = Field(
        10.0, description="A leader that has not renewed for this long stops acting; it must be below "
        "lease_duration_s, and the difference bounds a write in flight.")
    retry_period_s: PositiveFloat = Field(2.0, description="Time between two attempts to acquire or renew.")

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElectionConfig:
        if self.renew_deadline_s >= self.lease_duration_s:
            raise ValueError(f"renew_deadline_s ({self.renew_deadline_s:g}) must be below lease_duration_s "
                             f"({self.lease_duration_s:g}): a leader must stop acting before a successor may "
                             "take over; keep the defaults 10 and 15")
        if self.retry_period_s * 1.2 >= self.renew_deadline_s:
            raise ValueError(f"retry_period_s ({self.retry_period_s:g}) must be under renew_deadline_s / 1.2 "
                             f"({self.renew_deadline_s / 1.2:g}): a leader needs more than one try to renew "
                             "before its deadline; keep the default 2")
        return self
