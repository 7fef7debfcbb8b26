"""Prometheus credentials, TLS and headers (live/prometheus_access.py): each bad combination or unusable file is
one line naming the field; the headers reach every query; a rotated token file is read again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from powerplanner.config import PrometheusConfig, config_from_mapping
from powerplanner.errors import ConfigError, UserError
from powerplanner.live.prometheus import PrometheusClient, PrometheusError
from powerplanner.live.prometheus_error import PrometheusErrorKind

OK = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "1"]}}


def config_line(**prometheus: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"budget": {"watts": 1000}, "prometheus": prometheus})
    assert len(caught.value.lines) == 1, caught.value.lines
    return caught.value.lines[0]


@pytest.mark.parametrize(("fields", "needle"), [
    ({"bearer_token": "t", "bearer_token_file": "/f"}, "prometheus: bearer_token and bearer_token_file"),
    ({"basic_auth_username": "u"}, "basic_auth_username and basic_auth_password_file go together"),
    ({"basic_auth_password_file": "/p"}, "go together"),
    ({"basic_auth_username": "u", "basic_auth_password_file": "/p", "bearer_token_file": "/t"},
     "basic auth and a bearer token both set"),
    ({"url": "https://p", "tls_cert_file": "/c"}, "tls_cert_file and tls_key_file go together"),
    ({"url": "https://p", "tls_key_file": "/k"}, "go together"),
    ({"url": "https://p", "tls_ca_file": "/ca", "tls_insecure_skip_verify": True}, "the CA would be ignored"),
    ({"url": "http://p", "tls_ca_file": "/ca"}, "is not https://"),
    ({"headers": {"Authorization": "Bearer x"}}, "other than Authorization"),
    ({"headers": {"X Scope": "a"}}, "need an HTTP header name"),
    ({"headers": {"X-Scope-OrgID": "a\nb"}}, "a one-line value"),
    ({"bearer_token_file": "  "}, "is empty or only whitespace"),
])
def test_each_bad_combination_is_one_line(fields: dict[str, Any], needle: str) -> None:
    line = config_line(**fields)
    assert needle in line and line.startswith("config: prometheus")


def test_an_unreadable_token_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        PrometheusClient.from_config(PrometheusConfig(bearer_token_file=str(tmp_path / "absent")))
    assert caught.value.lines[0].startswith("prometheus.bearer_token_file: cannot read")


@pytest.mark.parametrize(("content", "needle"), [(b"", "is empty"), (b"a\nb\n", "more than one line"),
                                                 (b"\xff", "not UTF-8"), (b"x" * 20000, "over 16384 bytes")])
def test_a_bad_password_file_stops_the_start(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        PrometheusClient.from_config(PrometheusConfig(basic_auth_username="u", basic_auth_password_file=str(path)))
    assert needle in caught.value.lines[0] and "prometheus.basic_auth_password_file" in caught.value.lines[0]


def test_tls_files_that_cannot_be_used_stop_the_start(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(UserError, match=r"prometheus\.tls_ca_file: .* is not a readable file"):
        PrometheusClient.from_config(PrometheusConfig(url="https://p", tls_ca_file=str(tmp_path / "absent")))
    with pytest.raises(UserError, match=r"prometheus\.tls_ca_file: cannot use"):
        PrometheusClient.from_config(PrometheusConfig(url="https://p", tls_ca_file=str(junk)))
    with pytest.raises(UserError, match=r"prometheus\.tls_cert_file/tls_key_file: cannot use"):
        PrometheusClient.from_config(PrometheusConfig(url="https://p", tls_cert_file=str(junk),
                                                      tls_key_file=str(junk)))


def recording(seen: list[httpx.Headers], status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(status, json=OK) if status == 200 else httpx.Response(status, text="no")
    return httpx.MockTransport(handler)


def test_token_file_and_headers_reach_every_query_and_a_rotated_token_is_used(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    seen: list[httpx.Headers] = []
    cfg = PrometheusConfig(bearer_token_file=str(token), headers={"X-Scope-OrgID": "tenant-a"})
    client = PrometheusClient.from_config(cfg, transport=recording(seen))
    client.query("up")
    token.write_text("second-token\n")
    os.utime(token, ns=(1, 1))  # a different stamp, whatever the file system's mtime resolution
    client.query("up")
    assert [h["authorization"] for h in seen] == ["Bearer first", "Bearer second-token"]
    assert {h["x-scope-orgid"] for h in seen} == {"tenant-a"}


def test_a_vanished_token_file_keeps_the_last_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("kept\n")
    seen: list[httpx.Headers] = []
    client = PrometheusClient.from_config(PrometheusConfig(bearer_token_file=str(token)), transport=recording(seen))
    token.unlink()
    client.query("up")
    assert seen[0]["authorization"] == "Bearer kept"


def test_inline_token_and_basic_auth_headers(tmp_path: Path) -> None:
    seen: list[httpx.Headers] = []
    PrometheusClient.from_config(PrometheusConfig(bearer_token="inline"), transport=recording(seen)).query("up")
    password = tmp_path / "pw"
    password.write_text("pa:ss\n")
    cfg = PrometheusConfig(basic_auth_username="user", basic_auth_password_file=str(password))
    PrometheusClient.from_config(cfg, transport=recording(seen)).query("up")
    assert seen[0]["authorization"] == "Bearer inline"
    assert seen[1]["authorization"] == "Basic " + "dXNlcjpwYTpzcw=="  # base64("user:pa:ss")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_an_auth_error_not_retried(status: int) -> None:
    seen: list[httpx.Headers] = []
    cfg = PrometheusConfig(bearer_token="t", retries=3)
    client = PrometheusClient.from_config(cfg, transport=recording(seen, status), sleep=lambda _s: None)
    with pytest.raises(PrometheusError) as caught:
        client.query("up")
    assert caught.value.kind == PrometheusErrorKind.AUTH and len(seen) == 1
    assert caught.value.fix == "check prometheus.bearer_token (and prometheus.headers for a tenant)"
