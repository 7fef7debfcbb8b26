"""``host:port`` as one grammar for every address the project reads or prints, IPv6 included.

Why one module: a plain ``rpartition(":")`` reads ``[::]:9401`` as host ``[::]`` (which no socket accepts) and
``fe80::1:80`` as host ``fe80::1`` port 80, a guess. The rule here is the URL one (RFC 3986): an IPv6 address is
written in brackets, ``[fe80::1]:80``; a bare IPv6 address with a port is refused as ambiguous. This module imports
nothing but the standard library (the agent, the planner and the config models all use it).
"""

from __future__ import annotations

import ipaddress


class HostPortError(ValueError):
    """The text is not ``host:port``; the message says why and how to write it."""


def split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); ``[v6]:port`` -> (v6 without brackets, port); an empty host stays empty
    (the caller picks its default, e.g. every interface)."""
    value = text.strip()
    if value.startswith("["):
        close = value.find("]")
        host, rest = value[1:close], value[close + 1:] if close > 0 else ""
        if close < 0 or not rest.startswith(":"):
            raise HostPortError(f"{text!r} is not [IPv6]:port; write e.g. [::]:9401")
        if not _is_ipv6(host):
            raise HostPortError(f"{text!r}: {host!r} in brackets is not an IPv6 address; write e.g. [::1]:8081")
        port = rest[1:]
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise HostPortError(f"{text!r} has no port; write host:port, e.g. 127.0.0.1:8081 or [::]:9401")
        if ":" in host:
            raise HostPortError(f"{text!r}: an IPv6 address needs brackets before the port; write e.g. [{host}]:{port}")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise HostPortError(f"{text!r}: the port {port!r} is not a number from 0 to 65535")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    """(host, port) -> ``host:port``, an IPv6 address in brackets (``[::1]:8081``); the inverse of
    :func:`split_host_port`."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host.split("%", 1)[0])  # a zone (fe80::1%eth0) is allowed
    except ValueError:
        return False
    return True
