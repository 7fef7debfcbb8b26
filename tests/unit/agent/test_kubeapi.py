"""The agent's kubeconfig reading: what it supports, and one clear line for what it does not."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yaml

from powerplanner.agent.kubeapi import endpoint_from
from powerplanner.errors import EndpointError


def _kubeconfig(tmp_path: Path, cluster: dict[str, object], user: dict[str, object]) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))
    return str(path)


def test_token_and_insecure(tmp_path: Path) -> None:
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "https://k:6443/", "insecure-skip-tls-verify": True},
                                         {"token": "abc"}))
    assert endpoint.server == "https://k:6443" and endpoint.verify is False
    assert endpoint.headers() == {"Authorization": "Bearer abc"}


def test_token_file_is_reread_on_every_request(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("one\n")
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "http://k"}, {"tokenFile": "tok"}))
    assert endpoint.headers() == {"Authorization": "Bearer one"}
    (tmp_path / "tok").write_text("two\n")  # rotated
    assert endpoint.headers() == {"Authorization": "Bearer two"}


def test_ca_data(tmp_path: Path) -> None:
    # Any valid PEM will do: borrow the first certificate of the system bundle.
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.skip("no system CA bundle to borrow a certificate from")
    text = bundle.read_text()
    first = text[: text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    data = base64.b64encode(first.encode()).decode()
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "https://k", "certificate-authority-data": data}, {}))
    assert isinstance(endpoint.verify, ssl.SSLContext)


@pytest.mark.parametrize("user", [{"exec": {"command": "aws"}}, {"auth-provider": {"name": "oidc"}}])
def test_plugins_are_refused_with_one_line(tmp_path: Path, user: dict[str, object]) -> None:
    with pytest.raises(EndpointError) as info:
        endpoint_from(_kubeconfig(tmp_path, {"server": "https://k"}, user))
    assert len(info.value.lines) == 1 and "not supported" in info.value.lines[0]


def test_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(EndpointError):
        endpoint_from(str(tmp_path / "nope"))
