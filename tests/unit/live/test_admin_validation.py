"""The admin endpoint's input checks, as pure functions: Content-Length, the PUT /budget body, the bearer
header, the token and TLS settings read at start-up, and the AdminConfig rules behind them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.config import AdminConfig, config_from_mapping
from powerplanner.errors import ConfigError, UserError
from powerplanner.live.admin_requests import (
    MAX_BODY_BYTES,
    RequestError,
    bearer_token,
    parse_budget_body,
    parse_content_length,
)
from powerplanner.live.admin_settings import AdminSettings, read_token, tls_context


@pytest.mark.parametrize("values,expected", [([], None), (["0"], 0), (["17"], 17), ([" 42 "], 42),
                                             (["12", "12"], 12), ([str(MAX_BODY_BYTES)], MAX_BODY_BYTES)])
def test_content_length_accepted(values: list[str], expected: int | None) -> None:
    assert parse_content_length(values) == expected


@pytest.mark.parametrize("values,status", [
    (["abc"], 400), (["-5"], 400), (["+5"], 400), (["1e3"], 400), (["5.0"], 400), (["1_0"], 400), ([""], 400),
    (["\u0665"], 400),  # ARABIC-INDIC DIGIT FIVE: str.isdigit() says yes, HTTP says no
    (["5, 5"], 400), (["5", "6"], 400), (["9" * 40], 400),
    ([str(MAX_BODY_BYTES + 1)], 413), (["99999999"], 413),
])
def test_content_length_refused(values: list[str], status: int) -> None:
    with pytest.raises(RequestError) as err:
        parse_content_length(values)
    assert err.value.status == status and ("Content-Length" in err.value.message or "limit" in err.value.message)


@given(st.lists(st.text(max_size=14), min_size=1, max_size=3))
def test_content_length_is_a_number_or_a_4xx(values: list[str]) -> None:
    try:
        length = parse_content_length(values)
    except RequestError as exc:
        assert exc.status in (400, 413) and exc.message
    else:
        assert length is not None and 0 <= length <= MAX_BODY_BYTES
        assert all(v.strip().isascii() and v.strip().isdigit() for v in values)


@pytest.mark.parametrize("body,watts", [(b'{"watts": 5000}', 5000.0), (b'{"watts": 1234.5}', 1234.5),
                                        (b' {"watts":1e3} ', 1000.0), (b'{"watts": 0.001}', 0.001)])
def test_budget_body_accepted(body: bytes, watts: float) -> None:
    assert parse_budget_body(body) == watts


@pytest.mark.parametrize("body,needle", [
    (b'{"watts": true}', "boolean"), (b'{"watts": false}', "boolean"), (b'{"watts": "5000"}', "string"),
    (b'{"watts": null}', "null"), (b'{"watts": [5000]}', "array"), (b'{"watts": NaN}', "NaN"),
    (b'{"watts": Infinity}', "Infinity"), (b'{"watts": -Infinity}', "Infinity"), (b'{"watts": 1e400}', "too large"),
    (b'{"watts": -3}', "-3"), (b'{"watts": 0}', "0"), (b'{"watts": 1, "watts": 99999}', "twice"),
    (b'{"watts": 1, "extra": 2}', "extra"), (b"{}", "missing"), (b"[]", "array"), (b'"5000"', "string"),
    (b"5000", "number"), (b"", "not valid JSON"), (b"{", "not valid JSON"), (b"\xff\xfe", "UTF-8"),
    (b"[" * 4000 + b"]" * 4000, "nested"), (b'{"watts": ' + b"9" * 4000 + b"}", "too large"),
])
def test_budget_body_refused(body: bytes, needle: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_budget_body(body)
    assert err.value.status == 400 and needle in err.value.message and '{"watts"' in err.value.message


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _is_watts(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except OverflowError:
        return False


@given(_json_values)
def test_only_positive_finite_numbers_are_watts(value: object) -> None:
    body = json.dumps({"watts": value}).encode()  # json.dumps writes NaN/Infinity literals for those floats
    try:
        watts = parse_budget_body(body)
    except RequestError as exc:
        assert exc.status == 400 and not _is_watts(value)
    else:
        assert _is_watts(value) and watts == float(value)  # type: ignore[arg-type]


@given(st.binary(max_size=64))
def test_any_bytes_give_watts_or_a_400(raw: bytes) -> None:
    try:
        watts = parse_budget_body(raw)
    except RequestError as exc:
        assert exc.status == 400
    else:
        assert math.isfinite(watts) and watts > 0


@pytest.mark.parametrize("header,token", [("Bearer abc", "abc"), ("bearer abc", "abc"), ("Bearer  abc ", "abc"),
                                          ("Basic abc", None), ("Bearer", None), ("Bearer   ", None), ("", None),
                                          (None, None), ("abc", None)])
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_whitespace_tokens_are_refused(tmp_path: Path) -> None:
    for token in ("", "   ", "\t\n"):
        with pytest.raises(ConfigError, match=r"budget.admin.token: .*whitespace"):
            config_from_mapping({"budget": {"watts": 100, "admin": {"enabled": True, "token": token}}})
    assert AdminConfig(enabled=True, token="  s3cret \n").token == "s3cret"
    blank = tmp_path / "blank"
    blank.write_text("  \n\t\n")
    with pytest.raises(UserError, match="empty or only whitespace"):
        read_token(AdminConfig(enabled=True, token_file=str(blank)))
    with pytest.raises(UserError, match="bearer token"):
        AdminSettings("127.0.0.1:0", "   ")
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 10_000)
    with pytest.raises(UserError, match="over 4096 bytes"):
        read_token(AdminConfig(enabled=True, token_file=str(huge)))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        read_token(AdminConfig(enabled=True, token_file=str(binary)))


def test_tls_files_both_or_neither_and_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_cert_file and admin.tls_key_file go together"):
        config_from_mapping({"budget": {"watts": 100, "admin": {"tls_cert_file": "/x.crt"}}})
    with pytest.raises(ConfigError, match="go together"):
        config_from_mapping({"budget": {"watts": 100, "admin": {"tls_key_file": "/x.key"}}})
    with pytest.raises(UserError, match=r"tls_cert_file: .* is not a readable file"):
        tls_context(str(tmp_path / "missing.crt"), str(tmp_path / "missing.key"))
    garbage_cert, garbage_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    garbage_cert.write_text("not a certificate\n")
    garbage_key.write_text("not a key\n")
    with pytest.raises(UserError, match=r"cannot use .* PEM certificate and its matching"):
        tls_context(str(garbage_cert), str(garbage_key))
    cfg = AdminConfig(enabled=True, token="t", tls_cert_file=str(garbage_cert), tls_key_file=str(garbage_key))
    with pytest.raises(UserError, match="tls_cert_file/tls_key_file"):
        AdminSettings.from_config(cfg)


@pytest.mark.parametrize("name", ["Budget", "-budget", "budget-", "a..b", "a_b", "", "x" * 254, "büdget"])
def test_state_configmap_must_be_an_object_name(name: str) -> None:
    with pytest.raises(ConfigError, match="state_configmap"):
        config_from_mapping({"budget": {"watts": 100, "admin": {"state_configmap": name}}})
    assert AdminConfig(state_configmap="pp.powerplanner-budget").state_configmap == "pp.powerplanner-budget"


def test_timeouts_and_connection_cap_are_bounded() -> None:
    for bad in ({"timeout_s": 0}, {"timeout_s": 0.01}, {"timeout_s": float("nan")}, {"max_connections": 0}):
        with pytest.raises(ConfigError, match=r"budget.admin"):
            config_from_mapping({"budget": {"watts": 100, "admin": bad}})
