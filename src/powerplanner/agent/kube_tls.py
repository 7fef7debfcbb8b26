"""The TLS context for the agent's API client, built without writing a credential to any filesystem.

Why not lightkube's (or the official client's): both write inline ``*-data`` credentials (a client key
included) to temporary files. Python's :mod:`ssl` reads a CA from memory (``cadata``) but a certificate chain
only from a path, so the client certificate and key go to an anonymous in-memory file (``memfd_create``, Linux:
the agent's only platform) read through ``/proc/self/fd``, closed as soon as :mod:`ssl` has read it.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lightkube.config.kubeconfig import SingleConfig


@contextmanager
def _memory_file(data: bytes, name: str) -> Iterator[str]:
    """A path that reads ``data`` from an anonymous in-memory file (nothing in any directory)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _decoded(data: str, what: str, fail: Callable[[str], Exception]) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise fail(f"{what} is not base64") from None


def tls_context(config: SingleConfig, fail: Callable[[str], Exception]) -> ssl.SSLContext:
    """The context that verifies the API server (its CA from a file or inline) and presents the client
    certificate, if any (``insecure-skip-tls-verify``: a context that verifies nothing); ``fail(problem)``
    makes the one-line error for a credential that cannot be used."""
    cluster, user = config.cluster, config.user
    try:
        if cluster.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif cluster.certificate_auth_data:
            pem = _decoded(cluster.certificate_auth_data, "certificate-authority-data", fail)
            context = ssl.create_default_context(cadata=pem.decode("ascii", errors="replace"))
        elif cluster.certificate_auth:
            context = ssl.create_default_context(cafile=str(config.abs_file(cluster.certificate_auth)))
        else:
            context = ssl.create_default_context()
        if user is not None and (user.client_cert or user.client_cert_data):
            _load_client_cert(context, config, fail)
    except (ssl.SSLError, OSError) as exc:
        raise fail(f"a TLS credential cannot be used ({exc})") from None
    return context


def _load_client_cert(context: ssl.SSLContext, config: SingleConfig, fail: Callable[[str], Exception]) -> None:
    user = config.user
    assert user is not None

    def material(key: str, data: str | None, path: str | None) -> bytes:
        if data:
            return _decoded(data, f"{key}-data", fail)
        if not path:
            raise fail(f"{key} is missing (a client certificate needs its key and the key its certificate)")
        return Path(config.abs_file(path)).read_bytes()

    cert = material("client-certificate", user.client_cert_data, user.client_cert)
    key = material("client-key", user.client_key_data, user.client_key)
    with _memory_file(cert, "client-certificate") as cert_path, _memory_file(key, "client-key") as key_path:
        context.load_cert_chain(cert_path, key_path)
