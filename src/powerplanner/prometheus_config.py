"""The ``prometheus:`` section of the config: where load and latency come from, and how to reach a managed
Prometheus (bearer token, basic auth, TLS, tenant headers; docs/operations.md, "Managed Prometheus").

Its own module because config.py holds every other section; :mod:`powerplanner.config` re-exports it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from powerplanner.input_schema import InputModel


class PrometheusConfig(InputModel):
    """Where load and latency come from."""

    url: str = "http://prometheus-operated.monitoring:9090"
    timeout_s: Annotated[float, Field(ge=0.1, le=300, allow_inf_nan=False)] = Field(
        2.0, description="Timeout of one query. 0.1 s to 5 min: a healthy Prometheus answers in milliseconds, "
        "less than 0.1 s fails every query, more than 5 min stalls the cap tick that long.")
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_s: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = Field(
        0.2, description="Pause before retrying a failed query; at most 60 s (a longer pause stalls the cap tick).")
    window_s: Annotated[float, Field(ge=1, le=86400, allow_inf_nan=False)] | None = Field(
        None, description="Averaging window (default: adjustment interval). 1 s to 1 day: rate() needs two scrapes "
        "in the window, so less than a second is a unit typo (the window should span at least two scrape intervals).")
    frontend: Literal["dynamo", "vllm"] = "dynamo"
    model: str | None = Field(None, description="Value of the `model` label to filter on.")
    dynamo_namespace: str | None = Field(None, description="Value of the `dynamo_namespace` label.")
    power_source: Literal["agent", "dcgm", "none"] = "agent"
    # Access to a managed Prometheus (Thanos, Mimir, OpenShift): docs/operations.md, "Managed Prometheus".
    bearer_token: str | None = Field(
        None, description="Bearer token sent as `Authorization: Bearer ...`; prefer bearer_token_file.")
    bearer_token_file: str | None = Field(
        None, description="File holding the bearer token (e.g. a service-account token); re-read when it changes.")
    basic_auth_username: str | None = Field(None, description="HTTP basic auth user; needs basic_auth_password_file.")
    basic_auth_password_file: str | None = Field(
        None, description="File holding the basic auth password; re-read when it changes.")
    tls_ca_file: str | None = Field(
        None, description="PEM CA bundle that signed Prometheus' certificate (https:// URLs; default: the system's).")
    tls_cert_file: str | None = Field(None, description="PEM client certificate for mutual TLS; needs tls_key_file.")
    tls_key_file: str | None = Field(None, description="PEM private key (unencrypted) of tls_cert_file.")
    tls_insecure_skip_verify: bool = Field(
        False, description="Do not verify Prometheus' certificate (tests only: anyone on the path can answer).")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers on every query, e.g. `X-Scope-OrgID: tenant-a` "
        "for a Mimir or Cortex tenant. Authorization is set through the bearer_token or basic_auth fields.")

    @field_validator("bearer_token", "bearer_token_file", "basic_auth_username", "basic_auth_password_file",
                     "tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty or only whitespace; set a value or leave the field out")
        return value.strip() if value is not None else None

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        token = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        for name, text in value.items():
            if not name or not set(name) <= token or name.lower() == "authorization" or not text.isprintable():
                raise ValueError(f"{name!r}: need an HTTP header name (letters, digits, -) other than Authorization "
                                 "(use the bearer_token or basic_auth fields) and a one-line value")
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> PrometheusConfig:
        """One clear line per bad combination (docs/operations.md, "Managed Prometheus")."""
        if self.bearer_token and self.bearer_token_file:
            raise ValueError("bearer_token and bearer_token_file: set one (the file is "
                             "preferred: it keeps the token out of the config and can rotate)")
        if (self.basic_auth_username is None) != (self.basic_auth_password_file is None):
            raise ValueError("basic_auth_username and basic_auth_password_file go together: "
                             "set both or neither")
        if self.basic_auth_username and (self.bearer_token or self.bearer_token_file):
            raise ValueError("basic auth and a bearer token both set; Prometheus takes one "
                             "Authorization header, keep the one your server expects")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both (mutual "
                             "TLS) or neither")
        if self.tls_insecure_skip_verify and self.tls_ca_file:
            raise ValueError("tls_insecure_skip_verify with tls_ca_file: the CA would be "
                             "ignored; keep tls_ca_file and drop tls_insecure_skip_verify")
        tls_set = self.tls_ca_file or self.tls_cert_file or self.tls_insecure_skip_verify
        if tls_set and not self.url.lower().startswith("https://"):
            raise ValueError(f"TLS settings given but url {self.url!r} is not https://; "
                             "use an https:// URL or drop the tls_* fields")
        return self
