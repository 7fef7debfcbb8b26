"""The agent's kubeconfig reading through lightkube (tokens, token files, exec plugins, TLS in memory; one clear
line for what it does not support) and its typed GETs."""

from __future__ import annotations

import base64
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
import yaml

from powerplanner.agent.kubeapi import KubeEndpoint, PodApi, _in_cluster, endpoint_from
from powerplanner.errors import EndpointError
from powerplanner.kube.errors import (
    ApiStatusError,
    BadResponse,
    Forbidden,
    KubernetesError,
    NotFound,
    ServerError,
    Timeout,
    Unreachable,
)
from tests.support.kubeconfig import EXEC_PLUGIN


def _kubeconfig(tmp_path: Path, cluster: dict[str, object], user: dict[str, object]) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))
    return str(path)


def _seen_tokens(endpoint: KubeEndpoint, answers: Callable[[str], int] = lambda token: 200) -> list[str]:
    """GET one pod twice through ``endpoint``'s credentials; the bearer tokens the server saw."""
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        return httpx2.Response(answers(token), json={"metadata": {"name": "p"}})

    api = PodApi(endpoint, transport=httpx2.MockTransport(handler))
    for _ in range(2):
        api.get_pod("pp", "p")
    return seen


def test_token_and_insecure(tmp_path: Path) -> None:
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "https://k:6443/", "insecure-skip-tls-verify": True},
                                         {"token": "abc"}))
    assert endpoint.server == "https://k:6443" and endpoint.verify.verify_mode is ssl.CERT_NONE
    assert _seen_tokens(endpoint) == ["abc", "abc"]


def test_a_token_file_relative_to_the_kubeconfig_is_reread_when_the_server_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("one\n")
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "http://k"}, {"tokenFile": "tok"}))
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["Authorization"])
        (tmp_path / "tok").write_text("two\n")  # rotated by the kubelet after the first request
        return httpx2.Response(401 if seen[-1] == "Bearer one" and len(seen) > 1 else 200, json={})

    api = PodApi(endpoint, transport=httpx2.MockTransport(handler))
    api.get_pod("pp", "p")
    api.get_pod("pp", "p")
    assert seen == ["Bearer one", "Bearer one", "Bearer two"]


def test_an_exec_credential_plugin_supplies_the_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN, encoding="utf-8")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(plugin)], "env": [{"name": "PLUGIN_TOKEN", "value": "from-the-plugin"}]}}
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "http://k"}, user))
    assert _seen_tokens(endpoint) == ["from-the-plugin", "from-the-plugin"]  # run once, cached


def test_a_failing_exec_plugin_is_unreachable_not_a_traceback(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                     "args": ["-c", "import sys; sys.exit('no credentials today')"]}}
    api = PodApi(endpoint_from(_kubeconfig(tmp_path, {"server": "http://k"}, user)),
                 transport=httpx2.MockTransport(lambda request: httpx2.Response(200, json={})))
    with pytest.raises(Unreachable, match="no credentials today"):
        api.get_pod("pp", "p")


def _a_pem_certificate() -> str:
    """Any valid PEM will do: the first certificate of the system bundle."""
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.skip("no system CA bundle to borrow a certificate from")
    text = bundle.read_text()
    return text[: text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"


def test_in_cluster_an_ipv6_service_host_is_bracketed_and_the_token_file_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("pp")
    (tmp_path / "ca.crt").write_text(_a_pem_certificate())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    endpoint = _in_cluster(tmp_path)
    assert endpoint is not None and endpoint.server == "https://[fd00::1]:443"
    assert len(endpoint.verify.get_ca_certs()) == 1
    assert _seen_tokens(endpoint) == ["sa-token", "sa-token"]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert _in_cluster(tmp_path) is None


def test_ca_data_is_read_from_memory(tmp_path: Path) -> None:
    data = base64.b64encode(_a_pem_certificate().encode()).decode()
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "https://k", "certificate-authority-data": data}, {}))
    assert len(endpoint.verify.get_ca_certs()) == 1 and endpoint.verify.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(("cluster", "user", "says"), [
    ({"server": "https://k"}, {"auth-provider": {"name": "oidc"}}, "auth-provider credentials are not supported"),
    ({"server": "https://k"}, {"exec": {"apiVersion": "client.authentication.k8s.io/v2", "command": "x"}},
     "exec apiVersion"),
    ({"server": "https://k", "certificate-authority-data": "%%%"}, {}, "not base64"),
    ({"server": "https://k", "certificate-authority-data": "bm90IGEgY2VydA=="}, {}, "TLS credential"),
    ({"server": "https://k"}, {"client-certificate-data": "bm90IGEgY2VydA=="}, "client-key is missing"),
    ({"server": "https://k"}, {"client-certificate": "nope.crt", "client-key": "nope.key"}, "TLS credential"),
])
def test_unusable_credentials_are_one_line(tmp_path: Path, cluster: dict[str, object], user: dict[str, object],
                                           says: str) -> None:
    with pytest.raises(EndpointError) as info:
        endpoint_from(_kubeconfig(tmp_path, cluster, user))
    (line,) = info.value.lines
    assert says in line and "kubeconfig" in line


def test_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(EndpointError):
        endpoint_from(str(tmp_path / "nope"))


def _api(handler: Callable[[httpx2.Request], httpx2.Response], tmp_path: Path) -> PodApi:
    endpoint = endpoint_from(_kubeconfig(tmp_path, {"server": "http://k"}, {"token": "t"}))
    return PodApi(endpoint, transport=httpx2.MockTransport(handler))


def test_get_pod_and_daemonset_paths_and_answers(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        assert request.headers["Authorization"] == "Bearer t"
        return httpx2.Response(200, json={"metadata": {"name": request.url.path.rsplit("/", 1)[1]}})

    api = _api(handler, tmp_path)
    assert api.get_pod("pp", "agent-x")["metadata"]["name"] == "agent-x"
    assert api.get_daemonset("pp", "pp-agent")["metadata"]["name"] == "pp-agent"
    assert seen == ["/api/v1/namespaces/pp/pods/agent-x", "/apis/apps/v1/namespaces/pp/daemonsets/pp-agent"]


def _raise_connect(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("refused", request=request)


def _raise_timeout(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ReadTimeout("slow", request=request)


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (lambda r: httpx2.Response(404, json={"message": "daemonsets.apps \"x\" not found"}), NotFound),
        (lambda r: httpx2.Response(403, json={"message": "forbidden"}), Forbidden),
        (lambda r: httpx2.Response(500, text="oops"), ServerError),
        (lambda r: httpx2.Response(200, text="<html>"), BadResponse),
        (lambda r: httpx2.Response(200, json=[1, 2]), BadResponse),
        (_raise_connect, Unreachable),
        (_raise_timeout, Timeout),
    ],
)
def test_get_errors_are_typed(handler: Callable[[httpx2.Request], httpx2.Response], error: type[Exception],
                              tmp_path: Path) -> None:
    api = _api(handler, tmp_path)
    with pytest.raises(error) as info:
        api.get_daemonset("pp", "x")
    assert type(info.value) is error and isinstance(info.value, KubernetesError)
    if isinstance(info.value, ApiStatusError):
        assert info.value.status in (403, 404, 500) and f"HTTP {info.value.status}" in info.value.message


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
