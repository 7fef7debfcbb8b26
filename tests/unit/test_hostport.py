"""The one host:port grammar (src/powerplanner/hostport.py): IPv6 in brackets, bare IPv6 refused, round trips."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.hostport import HostPortError, join_host_port, split_host_port


@pytest.mark.parametrize(("text", "expected"), [
    ("[::]:9401", ("::", 9401)),
    ("[fe80::1]:80", ("fe80::1", 80)),
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ("[::ffff:10.0.0.1]:8081", ("::ffff:10.0.0.1", 8081)),
    ("0.0.0.0:9401", ("0.0.0.0", 9401)),
    ("localhost:8081", ("localhost", 8081)),
    (":9401", ("", 9401)),
    (" 127.0.0.1:0 ", ("127.0.0.1", 0)),
])
def test_split(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("fe80::1:80", "needs brackets"),
    ("::", "needs brackets"),
    ("localhost", "no port"),
    ("[::1]", "not [IPv6]:port"),
    ("[::1]80", "not [IPv6]:port"),
    ("[::1:80", "not [IPv6]:port"),
    ("[example.com]:80", "not an IPv6 address"),
    ("host:http", "not a number"),
    ("host:65536", "not a number"),
    ("host:", "not a number"),
    ("host:٣", "not a number"),
])
def test_refused_with_the_fix(text: str, says: str) -> None:
    with pytest.raises(HostPortError, match=re.escape(says)):
        split_host_port(text)


def test_join() -> None:
    assert join_host_port("::", 9401) == "[::]:9401"
    assert join_host_port("[fe80::1]", 80) == "[fe80::1]:80"
    assert join_host_port("10.0.0.1", 80) == "10.0.0.1:80"


_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
)


@given(_hosts, st.integers(0, 65535))
def test_join_then_split_is_the_identity(host: str, port: int) -> None:
    joined = join_host_port(host, port)
    assert split_host_port(joined) == (host, port)
    if ":" in host:
        assert joined.startswith("[") and ipaddress.ip_address(host).version == 6
