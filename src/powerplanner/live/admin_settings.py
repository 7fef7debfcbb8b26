"""The admin endpoint's settings, checked at start-up: the bearer token, the bind address and the TLS files.

Building :class:`AdminSettings` from ``budget.admin`` is the start-up check: an empty token, an unreadable
token file, a bind that is not ``host:port`` or TLS files that cannot be used each stop the planner with one
:class:`~powerplanner.errors.UserError` line naming the config field and the fix, before anything listens
(docs/operations.md, "The admin endpoint").
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from powerplanner.config import AdminConfig
from powerplanner.errors import UserError
from powerplanner.hostport import HostPortError, split_host_port

MAX_TOKEN_FILE_BYTES = 4096


def read_token(cfg: AdminConfig) -> str:
    """The bearer token, from ``token_file`` (preferred) or ``token``; empty or whitespace-only is refused."""
    if cfg.token_file:
        try:
            with open(cfg.token_file, "rb") as fh:
                raw = fh.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as exc:
            raise UserError(f"budget.admin.token_file: cannot read {cfg.token_file!r} ({exc.strerror or exc}); "
                            "point it at a readable file holding the token") from None
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise UserError(f"budget.admin.token_file: {cfg.token_file!r} is over {MAX_TOKEN_FILE_BYTES} bytes; "
                            "it must hold only the bearer token")
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"budget.admin.token_file: {cfg.token_file!r} is not UTF-8 text; put the bearer "
                            "token in it") from None
        if not token:
            raise UserError(f"budget.admin.token_file: {cfg.token_file!r} is empty or only whitespace; put the "
                            "bearer token in it")
        return token
    token = (cfg.token or "").strip()
    if not token:
        raise UserError("budget.admin.token: empty or only whitespace; set a bearer token (or token_file)")
    return token


def parse_bind(bind: str, field_name: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), with a clear error naming the config field. IPv6: ``[::1]:8081``
    (the grammar is :mod:`powerplanner.hostport`'s); an empty host is every IPv4 interface."""
    try:
        host, port = split_host_port(bind)
    except HostPortError as exc:
        raise UserError(f"{field_name}: {exc}") from None
    return host or "0.0.0.0", port


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) from PEM files; one clear line when they cannot be used."""
    for field, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        if not Path(path).is_file():
            raise UserError(f"budget.admin.{field}: {path!r} is not a readable file; point it at a PEM file "
                            "(e.g. the tls.crt / tls.key of a kubernetes.io/tls Secret)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise UserError(f"budget.admin.tls_cert_file/tls_key_file: cannot use {cert_file!r} with {key_file!r} "
                        f"({reason}); give a PEM certificate and its matching unencrypted PEM key") from None
    except OSError as exc:
        raise UserError(f"budget.admin.tls_cert_file/tls_key_file: cannot read {cert_file!r} or {key_file!r} "
                        f"({exc.strerror or exc}); make both files readable by the planner") from None
    return context


@dataclass(frozen=True)
class AdminSettings:
    """Everything the server needs, validated: building it is the start-up check of the admin config."""

    bind: str
    token: str
    tls: ssl.SSLContext | None = None
    timeout_s: float = 10.0
    max_connections: int = 16

    def __post_init__(self) -> None:
        if not self.token.strip():
            raise UserError("budget.admin: a bearer token (not empty or whitespace) is required when the admin "
                            "endpoint is enabled")
        if not (self.timeout_s > 0 and self.max_connections >= 1):
            raise UserError("budget.admin: timeout_s must be > 0 and max_connections >= 1")
        parse_bind(self.bind, "budget.admin.bind")

    @classmethod
    def from_config(cls, cfg: AdminConfig, bind: str | None = None) -> AdminSettings:
        """Token read, TLS files loaded; ``bind`` overrides ``cfg.bind`` (``powerplanner run --admin-bind``)."""
        tls = tls_context(cfg.tls_cert_file, cfg.tls_key_file) if cfg.tls_cert_file and cfg.tls_key_file else None
        return cls(bind=bind or cfg.bind, token=read_token(cfg), tls=tls, timeout_s=cfg.timeout_s,
                   max_connections=cfg.max_connections)
