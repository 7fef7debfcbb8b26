"""The planner's Prometheus client against a real Prometheus secured with ``--web.config.file``: basic auth (a
bcrypt hash made by the C library's ``crypt``: the venv has no ``bcrypt`` and the machine no ``htpasswd``) and
mutual TLS (a CA and certificates made by the ``openssl`` CLI). Right settings: the metrics source, the budget's
``promql`` source and the start-up check succeed; wrong ones: one line naming the setting to fix."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplanner.config import PrometheusConfig
from powerplanner.errors import EndpointError
from powerplanner.live.budget import PromQLBudget
from powerplanner.live.prometheus import PrometheusClient, PrometheusMetricsSource
from powerplanner.live.prometheus_error import PrometheusErrorKind
from powerplanner.model.roles import Role
from powerplanner.verify.prometheus_checks import check_prometheus
from powerplanner.verify.setup import build_verifier
from powerplanner.verify.state import VerifyState
from tests.fixtures.prometheus import PrometheusServer, start_prometheus
from tests.support import tls
from tests.support.kubeconfig import write_kubeconfig

pytestmark = pytest.mark.integration

USER, PASSWORD = "planner", "correct horse"
PODS = {Role.PREFILL: ["p-0"], Role.DECODE: ["d-0"]}


def bcrypt_hash(password: str) -> str | None:
    """A ``$2b$`` hash from the C library (libxcrypt), or None where it cannot make one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    return hashed if hashed and hashed.startswith("$2") else None


def serve(workdir: Path, web_config: str, ready: dict[str, Any]) -> Iterator[PrometheusServer]:
    try:
        server = start_prometheus(workdir, [], web_config=web_config, ready_client=ready)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def basic_auth_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    hashed = bcrypt_hash(PASSWORD)
    if hashed is None:
        pytest.skip("no bcrypt: neither the `bcrypt` package nor a C library crypt with $2b$")
    yield from serve(tmp_path_factory.mktemp("basic"), f"basic_auth_users:\n  {USER}: '{hashed}'\n",
                     {"auth": (USER, PASSWORD)})


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tls.MutualTls:
    if tls.openssl_binary() is None:
        pytest.skip("the openssl CLI is not installed")
    return tls.mutual_tls(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def mtls_prometheus(tmp_path_factory: pytest.TempPathFactory, certs: tls.MutualTls) -> Iterator[PrometheusServer]:
    web = (f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
           f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n")
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(certs.client_cert, certs.client_key)
    ready = {"verify": context}
    yield from serve(tmp_path_factory.mktemp("mtls"), web, ready)


def client(cfg: PrometheusConfig) -> PrometheusClient:
    return PrometheusClient.from_config(cfg, sleep=lambda _s: None)


def assert_works(cfg: PrometheusConfig) -> None:
    prom = client(cfg)
    prom.check_reachable()
    reading = PrometheusMetricsSource(prom, cfg, "default").read(60.0, PODS)
    assert reading.source_ok, reading.source_error
    budget = PromQLBudget(prom, "vector(12000)").read(datetime(2026, 1, 1, tzinfo=UTC))
    assert budget.watts == 12000.0 and budget.error is None
    prom.close()


def refused_line(cfg: PrometheusConfig) -> str:
    """The start-up check's one line (and the same fault seen by the metrics source)."""
    prom = client(cfg)
    with pytest.raises(EndpointError) as caught:
        prom.check_reachable()
    reading = PrometheusMetricsSource(prom, cfg, "default").read(60.0, PODS)
    assert not reading.source_ok
    prom.close()
    assert len(caught.value.lines) == 1
    return caught.value.lines[0]


def secret(tmp_path: Path, text: str) -> str:
    path = tmp_path / "password"
    path.write_text(text + "\n")
    return str(path)


def test_basic_auth_with_the_right_password(basic_auth_prometheus: PrometheusServer, tmp_path: Path) -> None:
    assert_works(PrometheusConfig(url=basic_auth_prometheus.url, basic_auth_username=USER,
                                  basic_auth_password_file=secret(tmp_path, PASSWORD)))


def test_basic_auth_with_a_wrong_password_names_the_fields(basic_auth_prometheus: PrometheusServer,
                                                           tmp_path: Path) -> None:
    cfg = PrometheusConfig(url=basic_auth_prometheus.url, basic_auth_username=USER,
                           basic_auth_password_file=secret(tmp_path, "wrong"))
    line = refused_line(cfg)
    assert "HTTP 401" in line and "prometheus.basic_auth_username/basic_auth_password_file" in line
    reading = PrometheusMetricsSource(client(cfg), cfg, "default").read(60.0, PODS)
    assert reading.error_kind == PrometheusErrorKind.AUTH


def test_no_credentials_say_which_fields_to_set(basic_auth_prometheus: PrometheusServer) -> None:
    line = refused_line(PrometheusConfig(url=basic_auth_prometheus.url))
    assert "HTTP 401" in line and "set prometheus.bearer_token_file or prometheus.basic_auth_username" in line


def test_a_rotated_password_file_is_read_again(basic_auth_prometheus: PrometheusServer, tmp_path: Path) -> None:
    path = secret(tmp_path, "wrong")
    prom = client(PrometheusConfig(url=basic_auth_prometheus.url, basic_auth_username=USER,
                                   basic_auth_password_file=path))
    with pytest.raises(EndpointError):
        prom.check_reachable()
    Path(path).write_text(PASSWORD + "  \n")  # a different size: seen as a change even within one mtime tick
    prom.check_reachable()
    prom.close()


def test_mutual_tls_with_the_ca_and_a_client_certificate(mtls_prometheus: PrometheusServer,
                                                         certs: tls.MutualTls) -> None:
    assert_works(PrometheusConfig(url=mtls_prometheus.url, tls_ca_file=str(certs.ca),
                                  tls_cert_file=str(certs.client_cert), tls_key_file=str(certs.client_key)))


def test_insecure_skip_verify_trusts_any_server_certificate(mtls_prometheus: PrometheusServer,
                                                            certs: tls.MutualTls) -> None:
    assert_works(PrometheusConfig(url=mtls_prometheus.url, tls_insecure_skip_verify=True,
                                  tls_cert_file=str(certs.client_cert), tls_key_file=str(certs.client_key)))


def test_an_untrusted_server_certificate_names_tls_ca_file(mtls_prometheus: PrometheusServer,
                                                           certs: tls.MutualTls) -> None:
    line = refused_line(PrometheusConfig(url=mtls_prometheus.url, tls_cert_file=str(certs.client_cert),
                                         tls_key_file=str(certs.client_key)))
    assert "not trusted: set prometheus.tls_ca_file" in line


def test_a_missing_client_certificate_names_tls_cert_file(mtls_prometheus: PrometheusServer,
                                                          certs: tls.MutualTls) -> None:
    line = refused_line(PrometheusConfig(url=mtls_prometheus.url, tls_ca_file=str(certs.ca)))
    assert "set prometheus.tls_cert_file and tls_key_file" in line


def test_plain_http_to_the_tls_server_says_use_https(mtls_prometheus: PrometheusServer) -> None:
    line = refused_line(PrometheusConfig(url=mtls_prometheus.url.replace("https://", "http://")))
    assert "use an https:// URL in prometheus.url" in line


def test_verify_uses_the_planners_client_settings(basic_auth_prometheus: PrometheusServer, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")  # never contacted here
    config = tmp_path / "pp.yaml"
    for password, passed in ((PASSWORD, True), ("wrong", False)):
        config.write_text(yaml.safe_dump({"budget": {"watts": 1000}, "prometheus": {
            "url": "http://unused:9090", "basic_auth_username": USER,
            "basic_auth_password_file": secret(tmp_path, password)}}))
        verifier = build_verifier(namespace=None, dgd=None, config_path=config,
                                  prometheus_url=basic_auth_prometheus.url, kubeconfig=str(kubeconfig), context=None,
                                  as_user=None, budget_watts=None, max_age_s=60.0)
        assert verifier.prometheus is not None
        result = check_prometheus(VerifyState(verifier.settings, verifier.cluster, verifier.prometheus))
        assert result.passed is passed
        if not passed:
            assert result.fix is not None and "prometheus.basic_auth_username/basic_auth_password_file" in result.fix
