"""The agent's API client against real servers: an exec credential plugin against the emulated API server, and a
client certificate given inline (``client-key-data``) against a mutual-TLS server, leaving no file behind."""

from __future__ import annotations

import base64
import json
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from powerplanner.agent.kubeapi import PodApi, endpoint_from
from tests.fixtures.k8s import EmulatedCluster
from tests.integration.agent.harness import Env
from tests.support.kubeconfig import EXEC_PLUGIN
from tests.support.tls import MutualTls, mutual_tls, openssl_binary


def _kubeconfig(path: Path, cluster: dict[str, object], user: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x",
    }), encoding="utf-8")
    return str(path)


@pytest.fixture()
def empty_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary directory, empty, so a test can see whether anything was left there; and
    tempfile's makers refuse outright, so a credential written there even briefly fails the test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a credential was written to a temporary file")

    for maker in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, maker, refuse)
    return folder


def test_an_exec_plugin_kubeconfig_lists_pods_from_the_emulator(tmp_path: Path, empty_tempdir: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN, encoding="utf-8")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                     "args": [str(plugin)], "env": [{"name": "PLUGIN_TOKEN", "value": "t"}]}}
    with EmulatedCluster() as cluster:
        cluster.add_pod("llm-decode-0", "llm", "decode", namespace="llm")
        api = PodApi(endpoint_from(_kubeconfig(tmp_path / "kubeconfig", {"server": cluster.url}, user)))
        try:
            pods, version = api.list_pods("spec.nodeName=n1")
            assert [p["metadata"]["name"] for p in pods] == ["llm-decode-0"] and version
            assert api.get_pod("llm", "llm-decode-0")["metadata"]["namespace"] == "llm"
        finally:
            api.close()
    assert list(empty_tempdir.iterdir()) == []


def test_the_agent_process_with_an_exec_plugin_kubeconfig_applies_annotations(env: Env, tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN, encoding="utf-8")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                     "args": [str(plugin)], "env": [{"name": "PLUGIN_TOKEN", "value": "t"}]}}
    env.add_pod("decode-0", [0], "300")
    agent = env.agent(new_pod_grace_s=0, park=False, kubeconfig_user=user)
    env.until(lambda: env.limits()[0] == 300)
    env.annotate("decode-0", "250")
    env.until(lambda: env.limits()[0] == 250)
    assert agent.terminate() == 0


@pytest.fixture()
def mtls_server(tmp_path: Path) -> Iterator[tuple[MutualTls, str, list[str]]]:
    """An HTTPS server that requires a client certificate from its CA; yields (certificates, URL, client CNs)."""
    if openssl_binary() is None:
        pytest.skip("the openssl CLI is not installed")
    certs = mutual_tls(tmp_path)
    clients: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            clients.append(dict(item[0] for item in peer["subject"])["commonName"])
            body = json.dumps({"metadata": {"name": self.path.rsplit("/", 1)[1]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield certs, f"https://127.0.0.1:{server.server_address[1]}", clients
    finally:
        server.shutdown()
        server.server_close()


def test_an_inline_client_key_authenticates_and_touches_no_file(
        tmp_path: Path, empty_tempdir: Path, mtls_server: tuple[MutualTls, str, list[str]]) -> None:
    certs, url, clients = mtls_server

    def inline(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    cluster = {"server": url, "certificate-authority-data": inline(certs.ca)}
    user = {"client-certificate-data": inline(certs.client_cert), "client-key-data": inline(certs.client_key)}
    api = PodApi(endpoint_from(_kubeconfig(tmp_path / "kubeconfig", cluster, user)))
    try:
        assert api.get_pod("pp", "agent-x")["metadata"]["name"] == "agent-x"
    finally:
        api.close()
    assert clients == ["client"]
    assert list(empty_tempdir.iterdir()) == []
