"""TLS settings reach every driver as they should, and a TLS set-up failure is permanent."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import psycopg2
import pytest
from pika.adapters.utils.connection_workflow import (
    AMQPConnectionWorkflowFailed,
    AMQPConnectorTransportSetupError,
)

from applier.target import classify, tls_connect_args
from shared.amqp import classify_broker_error, connection_parameters
from shared.config import BrokerConfig, SourceConfig, TargetConfig
from shared.errors import BrokerUnavailable, SetupError, SourceUnavailable, TargetUnavailable
from shared.postgres import classify_connect_error, connect_kwargs
from shared.secret import Secret

DSN = "postgresql://cdc:pg-s3cret@127.0.0.1:5432/app?sslmode=disable&sslrootcert=/dsn/ca.pem"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    cert = folder / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=unit test CA", "-keyout", str(folder / "ca.key"),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def source(**tls: Any) -> SourceConfig:
    return SourceConfig(dsn=Secret(DSN), slot="s", **tls)


def broker(url: str, **tls: Any) -> BrokerConfig:
    return BrokerConfig(url=Secret(url), queue="cdc.s", **tls)


# ---------------------------------------------------------------- PostgreSQL


def test_explicit_settings_win_over_the_dsn() -> None:
    params = connect_kwargs(source(sslmode="verify-full", sslrootcert="/etc/ca.pem"))
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == "/etc/ca.pem"
    assert params["password"] == "pg-s3cret"  # the rest of the DSN is kept
    assert "TimeZone=UTC" in params["options"]


def test_the_dsn_decides_when_nothing_is_set() -> None:
    params = connect_kwargs(source())
    assert params["sslmode"] == "disable"
    assert params["sslrootcert"] == "/dsn/ca.pem"
    assert "sslcert" not in params


def test_client_certificate_is_passed_on() -> None:
    params = connect_kwargs(source(sslcert="/c.pem", sslkey="/c.key"))
    assert (params["sslcert"], params["sslkey"]) == ("/c.pem", "/c.key")


@pytest.mark.parametrize(
    "text",
    [
        'connection to server at "127.0.0.1", port 5432 failed: SSL error: certificate verify '
        "failed",
        'server certificate for "pg.example" does not match host name "10.0.0.1"',
        "connection to server failed: server does not support SSL, but SSL was required",
        'root certificate file "/nope.pem" does not exist',
    ],
)
def test_postgres_tls_setup_failure_is_permanent(text: str) -> None:
    error = classify_connect_error(psycopg2.OperationalError(text), DSN)
    assert isinstance(error, SetupError)
    assert "PostgreSQL TLS failed" in str(error) and "source.sslrootcert" in str(error)
    assert "pg-s3cret" not in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "SSL SYSCALL error: EOF detected",
        "SSL connection has been closed unexpectedly",
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused',
    ],
)
def test_postgres_tls_connection_cut_is_transient(text: str) -> None:
    error = classify_connect_error(psycopg2.OperationalError(text), DSN)
    assert isinstance(error, SourceUnavailable)


# ---------------------------------------------------------------- RabbitMQ


def test_amqps_gets_a_verifying_context_with_our_ca(ca_file: Path) -> None:
    params = connection_parameters(
        broker("amqps://u:p@127.0.0.1:5671/%2F", ca_file=str(ca_file)), "test"
    )
    options = params.ssl_options
    assert options is not None
    assert options.server_hostname == "127.0.0.1"
    assert options.context.verify_mode == ssl.CERT_REQUIRED
    assert options.context.check_hostname is True
    assert options.context.cert_store_stats()["x509_ca"] == 1  # just ours
    assert params.port == 5671


def test_amqps_without_a_ca_file_verifies_against_the_system_store() -> None:
    params = connection_parameters(broker("amqps://u:p@rabbit.example/%2F"), "test")
    assert params.ssl_options is not None
    assert params.ssl_options.context.verify_mode == ssl.CERT_REQUIRED
    assert params.ssl_options.context.check_hostname is True
    assert params.ssl_options.server_hostname == "rabbit.example"
    assert params.port == 5671


def test_amqp_stays_plain() -> None:
    params = connection_parameters(broker("amqp://u:p@127.0.0.1:5672/%2F"), "test")
    assert params.ssl_options is None
    assert params.client_properties == {"connection_name": "test"}


def test_ssl_options_of_the_url_are_kept_without_settings(ca_file: Path) -> None:
    url = "amqps://u:p@rabbit.example/%2F?ssl_options=" + repr(
        {"cafile": str(ca_file), "server_hostname": "other.example"}
    ).replace(" ", "")
    params = connection_parameters(broker(url), "test")
    assert params.ssl_options is not None
    assert params.ssl_options.server_hostname == "other.example"
    # ... and a setting wins over them.
    params = connection_parameters(broker(url, ca_file=str(ca_file)), "test")
    assert params.ssl_options is not None
    assert params.ssl_options.server_hostname == "rabbit.example"


def test_unloadable_broker_files_are_a_setup_error(tmp_path: Path) -> None:
    gone = tmp_path / "gone.pem"
    with pytest.raises(SetupError, match="RabbitMQ TLS files"):
        connection_parameters(broker("amqps://u:p@h/%2F", ca_file=str(gone)), "test")


def _verify_failure() -> ssl.SSLCertVerificationError:
    e = ssl.SSLCertVerificationError(1, "certificate verify failed")
    e.reason = "CERTIFICATE_VERIFY_FAILED"
    e.verify_message = "unable to get local issuer certificate"
    return e


def test_broker_certificate_failure_is_permanent_however_pika_wraps_it() -> None:
    direct = _verify_failure()
    wrapped = pika.exceptions.AMQPConnectionError(
        AMQPConnectorTransportSetupError(_verify_failure())
    )
    workflow = AMQPConnectionWorkflowFailed([AMQPConnectorTransportSetupError(_verify_failure())])
    for exc in (direct, wrapped, workflow):
        error = classify_broker_error(exc, "amqps://u:***@h:5671/%2F")
        assert isinstance(error, SetupError), exc
        assert "RabbitMQ TLS failed" in str(error)
        assert "unable to get local issuer certificate" in str(error)
        assert "broker.ca_file" in str(error)


def test_broker_tls_connection_cut_is_transient() -> None:
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    error = classify_broker_error(pika.exceptions.AMQPConnectionError(eof), "h")
    assert isinstance(error, BrokerUnavailable)


# ---------------------------------------------------------------- MariaDB


def target(**tls: Any) -> TargetConfig:
    url = Secret("mariadb+mariadbconnector://u:p@127.0.0.1:3306/db")
    return TargetConfig(url=url, **tls)


def test_target_tls_off_by_default() -> None:
    assert tls_connect_args(target()) == {}


def test_target_tls_verifies_the_certificate() -> None:
    assert tls_connect_args(target(ssl=True)) == {"ssl": True, "ssl_verify_cert": True}
    args = tls_connect_args(target(ssl=True, ssl_ca="/ca.pem", ssl_cert="/c.pem", ssl_key="/k"))
    assert args == {
        "ssl": True,
        "ssl_verify_cert": True,
        "ssl_ca": "/ca.pem",
        "ssl_cert": "/c.pem",
        "ssl_key": "/k",
    }


class _DriverError(Exception):
    def __init__(self, errno: int, text: str) -> None:
        super().__init__(text)
        self.errno = errno


@pytest.mark.parametrize(
    "text",
    [
        "TLS/SSL error: unable to get local issuer certificate",
        "TLS/SSL error: self-signed certificate in certificate chain",
        "TLS/SSL error: Validation of SSL server certificate failed",
        "SSL connection error: SSL is required, but the server does not support it",
    ],
)
def test_target_tls_setup_failure_is_permanent(text: str) -> None:
    error = classify(_DriverError(2026, text), "mariadb+mariadbconnector://u:***@h/db")
    assert isinstance(error, SetupError)
    assert "MariaDB TLS failed" in str(error) and "target.ssl_ca" in str(error)


def test_target_tls_connection_cut_is_transient() -> None:
    error = classify(_DriverError(2026, "TLS/SSL error: unexpected eof while reading"), "h")
    assert isinstance(error, TargetUnavailable)
