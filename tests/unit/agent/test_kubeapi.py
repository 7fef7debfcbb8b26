"""The agent's kubeconfig reading (what it supports, one clear line for what it does not) and its typed GETs."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from powerplanner.agent.kubeapi import (
    ApiError,
    ApiUnreachable,
    BadResponse,
    KubeApiError,
    KubeEndpoint,
    NotFound,
    PodApi,
    endpoint_from,
)
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


def _api(handler: Callable[[httpx.Request], httpx.Response]) -> PodApi:
    return PodApi(KubeEndpoint(server="http://k", token="t"), transport=httpx.MockTransport(handler))


def test_get_pod_and_daemonset_paths_and_answers() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        assert request.headers["Authorization"] == "Bearer t"
        return httpx.Response(200, json={"metadata": {"name": request.url.path.rsplit("/", 1)[1]}})

    api = _api(handler)
    assert api.get_pod("pp", "agent-x")["metadata"]["name"] == "agent-x"
    assert api.get_daemonset("pp", "pp-agent")["metadata"]["name"] == "pp-agent"
    assert seen == ["/api/v1/namespaces/pp/pods/agent-x", "/apis/apps/v1/namespaces/pp/daemonsets/pp-agent"]


def _raise_connect(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def _raise_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (lambda r: httpx.Response(404, json={"message": "daemonsets.apps \"x\" not found"}), NotFound),
        (lambda r: httpx.Response(403, json={"message": "forbidden"}), ApiError),
        (lambda r: httpx.Response(500, text="oops"), ApiError),
        (lambda r: httpx.Response(200, text="<html>"), BadResponse),
        (lambda r: httpx.Response(200, json=[1, 2]), BadResponse),
        (_raise_connect, ApiUnreachable),
        (_raise_timeout, ApiUnreachable),
    ],
)
def test_get_errors_are_typed(handler: Callable[[httpx.Request], httpx.Response], error: type[Exception]) -> None:
    api = _api(handler)
    with pytest.raises(error) as info:
        api.get_daemonset("pp", "x")
    assert isinstance(info.value, KubeApiError)
    if isinstance(info.value, ApiError):
        assert info.value.status in (403, 404, 500)


@pytest.mark.parametrize(("text", "says"), [
    ("a: 1\na: 2\n", "duplicate key"),
    ("[" * 200 + "]" * 200, "nested"),
    ("- just\n- a list\n", "not a mapping"),
])
def test_a_hostile_kubeconfig_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EndpointError) as info:
        endpoint_from(str(path))
    (line,) = info.value.lines
    assert str(path) in line and says in line


def test_dev_zero_as_a_kubeconfig_is_one_line() -> None:
    with pytest.raises(EndpointError) as info:
        endpoint_from("/dev/zero")
    assert len(info.value.lines) == 1 and "/dev/zero" in info.value.lines[0]
