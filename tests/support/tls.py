"""Certificates for TLS tests, made with the ``openssl`` CLI (the venv has no ``cryptography``): a self-signed
server certificate, or a small CA with a server and a client certificate for mutual TLS. Every certificate is
for 127.0.0.1 and valid for a day. Callers skip when :func:`openssl_binary` is None."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl_binary() -> str | None:
    return shutil.which("openssl")


def _run(*args: str) -> None:
    openssl = openssl_binary()
    if openssl is None:
        raise FileNotFoundError("the openssl CLI is not installed")
    subprocess.run([openssl, *args], check=True, capture_output=True)


def self_signed(folder: Path, name: str = "tls") -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for 127.0.0.1."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    return cert, key


@dataclass(frozen=True)
class MutualTls:
    """A CA and two certificates it signed: one for the server (127.0.0.1), one for a client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _signed(folder: Path, name: str, ca: Path, ca_key: Path, extension: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (folder / f"{name}.{s}" for s in ("crt", "key", "csr", "ext"))
    ext.write_text(extension + "\n")
    _run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
         "-days", "1", "-extfile", str(ext))
    return cert, key


def mutual_tls(folder: Path) -> MutualTls:
    """A fresh CA in ``folder`` and a server and a client certificate signed by it."""
    ca, ca_key = self_signed(folder, "ca")
    server_cert, server_key = _signed(folder, "server", ca, ca_key,
                                      "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client_cert, client_key = _signed(folder, "client", ca, ca_key, "extendedKeyUsage=clientAuth")
    return MutualTls(ca, server_cert, server_key, client_cert, client_key)
