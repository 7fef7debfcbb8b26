"""How the planner reaches a secured Prometheus: credentials, TLS and extra headers, built from ``prometheus.*``.

Building :class:`PrometheusAccess` is the start-up check of those fields: an unreadable or empty secret file, or
TLS files that cannot be used, stop the planner with one :class:`~powerplanner.errors.UserError` line naming the
field and the fix (the bad combinations are refused earlier, by the config model). Secret files are read again
when they change (size, mtime or inode), so a rotated service-account token or password needs no restart; a
file that vanishes mid-rotation keeps the last value until it is back (docs/operations.md, "Managed
Prometheus").
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field

import httpx

from powerplanner.config import PrometheusConfig
from powerplanner.errors import UserError

MAX_SECRET_FILE_BYTES = 16384


class SecretFile:
    """A one-line secret in a file (token, password), read again whenever the file changes."""

    def __init__(self, path: str, field_name: str) -> None:
        self.path = path
        self.field_name = field_name
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""
        self._load(strict=True)

    def value(self) -> str:
        self._load(strict=False)
        return self._value

    def _load(self, strict: bool) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return
            text = self._read()
        except UserError:
            if strict:
                raise
            return  # mid-rotation (a half-written or vanished file): keep the last good value
        except OSError as exc:
            if strict:
                raise UserError(f"prometheus.{self.field_name}: cannot read {self.path!r} ({exc.strerror or exc}); "
                                "point it at a readable file (e.g. a mounted Secret key)") from None
            return
        self._stamp, self._value = stamp, text

    def _read(self) -> str:
        with open(self.path, "rb") as fh:
            raw = fh.read(MAX_SECRET_FILE_BYTES + 1)
        where = f"prometheus.{self.field_name}: {self.path!r}"
        if len(raw) > MAX_SECRET_FILE_BYTES:
            raise UserError(f"{where} is over {MAX_SECRET_FILE_BYTES} bytes; it must hold only the secret")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"{where} is not UTF-8 text; put the secret in it as text") from None
        if not text or not text.isprintable():
            raise UserError(f"{where} is empty or holds more than one line; put the secret alone on one line")
        return text


class _HeaderAuth(httpx.Auth):
    """Sets ``Authorization`` on every request from a value computed then (a secret file may have rotated)."""

    def __init__(self, scheme: str, credential: SecretFile | str, username: str | None = None) -> None:
        self._scheme = scheme
        self._credential = credential
        self._username = username

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        secret = self._credential if isinstance(self._credential, str) else self._credential.value()
        if self._username is not None:
            secret = base64.b64encode(f"{self._username}:{secret}".encode()).decode("ascii")
        request.headers["Authorization"] = f"{self._scheme} {secret}"
        yield request


def _tls_context(cfg: PrometheusConfig) -> ssl.SSLContext:
    """Client TLS: the system's CAs or ``tls_ca_file``, a client certificate when given, no verification only
    when asked for."""
    if cfg.tls_ca_file and not os.path.isfile(cfg.tls_ca_file):
        raise UserError(f"prometheus.tls_ca_file: {cfg.tls_ca_file!r} is not a readable file; point it at the PEM "
                        "CA bundle that signed Prometheus' certificate")
    try:
        context = ssl.create_default_context(cafile=cfg.tls_ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise UserError(f"prometheus.tls_ca_file: cannot use {cfg.tls_ca_file!r} ({exc}); give a PEM CA "
                        "bundle") from None
    if cfg.tls_insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cfg.tls_cert_file and cfg.tls_key_file:
        try:
            context.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise UserError(f"prometheus.tls_cert_file/tls_key_file: cannot use {cfg.tls_cert_file!r} with "
                            f"{cfg.tls_key_file!r} ({reason}); give a readable PEM certificate and its matching "
                            "unencrypted PEM key") from None
    return context


@dataclass(frozen=True)
class PrometheusAccess:
    """What :class:`~powerplanner.live.prometheus.PrometheusClient` adds to every query. ``credentials`` names
    the fields that supply them, for the line printed when Prometheus refuses them."""

    auth: httpx.Auth | None = None
    verify: ssl.SSLContext | bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    credentials: str | None = None

    @classmethod
    def from_config(cls, cfg: PrometheusConfig) -> PrometheusAccess:
        """Secret files read and TLS files loaded now: a problem is one :class:`UserError` line."""
        auth: httpx.Auth | None = None
        credentials = None
        if cfg.bearer_token_file:
            auth, credentials = _HeaderAuth("Bearer", SecretFile(cfg.bearer_token_file, "bearer_token_file")), \
                "prometheus.bearer_token_file"
        elif cfg.bearer_token:
            auth, credentials = _HeaderAuth("Bearer", cfg.bearer_token), "prometheus.bearer_token"
        elif cfg.basic_auth_username and cfg.basic_auth_password_file:
            password = SecretFile(cfg.basic_auth_password_file, "basic_auth_password_file")
            auth = _HeaderAuth("Basic", password, username=cfg.basic_auth_username)
            credentials = "prometheus.basic_auth_username/basic_auth_password_file"
        https = cfg.url.lower().startswith("https://")
        verify: ssl.SSLContext | bool = _tls_context(cfg) if https else True
        return cls(auth=auth, verify=verify, headers=dict(cfg.headers), credentials=credentials)

    def refused_fix(self) -> str:
        """What to change when Prometheus answers 401/403."""
        if self.credentials is None:
            return ("Prometheus wants credentials: set prometheus.bearer_token_file or prometheus.basic_auth_username "
                    "and basic_auth_password_file (and prometheus.headers for a tenant)")
        return f"check {self.credentials} (and prometheus.headers for a tenant)"
