from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import docs
from shared.config import (
    CATALOG,
    SETTINGS,
    ApplierConfig,
    BackfillConfig,
    BrokerConfig,
    CommandConfig,
    DlqConfig,
    ExtractorConfig,
    SourceConfig,
    StatusConfig,
    TargetConfig,
    VerifyConfig,
    load_config,
)
from shared.errors import ConfigError
from shared.secret import Secret
from shared.tables import TableRef
from tests.support.settings import BROKER_URL, PASSWORDS, SOURCE_DSN, TARGET_URL, full_env


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cdc.yaml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Both:
    """One set of settings as both processes read them: the source as the extractor has it,
    the target as the applier has it, and what they share, alike in both."""

    extractor: ExtractorConfig
    applier: ApplierConfig

    @property
    def source(self) -> SourceConfig:
        assert self.applier.source.slot == self.extractor.source.slot
        return self.extractor.source

    @property
    def broker(self) -> BrokerConfig:
        assert self.applier.broker == self.extractor.broker
        return self.extractor.broker

    @property
    def target(self) -> TargetConfig:
        return self.applier.target

    def __getattr__(self, name: str) -> Any:  # log_level, metrics_port, origin, ...
        value = getattr(self.extractor, name)
        assert getattr(self.applier, name) == value, name
        return value


def read(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Both:
    """The settings as every command reads them: all of them accept them, or all refuse
    them with the same ConfigError (raised here)."""
    refusals: list[ConfigError] = []
    for kind in CATALOG.kinds:
        try:
            load_config(kind, path, environ)
        except ConfigError as e:
            refusals.append(e)
    if refusals:
        messages = {str(e) for e in refusals}
        assert len(refusals) == len(CATALOG.kinds) and len(messages) == 1, messages
        raise refusals[0]
    return Both(
        load_config(ExtractorConfig, path, environ), load_config(ApplierConfig, path, environ)
    )


# ---------------------------------------------------------------- environment only


def test_environment_only() -> None:
    cfg = read(environ=full_env())
    assert cfg.source.dsn.reveal() == SOURCE_DSN
    assert cfg.source.slot == "cdc_main"
    assert tuple(p.exact for p in cfg.source.capture.include) == (
        TableRef("public", "orders"),
        TableRef("Mixed Case", "items"),
        TableRef("public", "lines"),
    )
    assert cfg.broker.url.reveal() == BROKER_URL
    assert cfg.target.url.reveal() == TARGET_URL
    assert cfg.log_level == "DEBUG"
    assert cfg.metrics_port == 9100
    assert cfg.origin == "environment"


def test_defaults() -> None:
    env = full_env()
    del env["CDC_TABLES"], env["CDC_LOG_LEVEL"], env["CDC_METRICS_PORT"]
    cfg = read(environ=env)
    assert cfg.source.capture.include == ()
    assert cfg.source.max_chunk_changes == 1000
    assert cfg.source.max_chunk_bytes == 4194304
    assert cfg.source.feedback_interval == 1.0
    assert cfg.broker.exchange == "cdc"
    assert cfg.broker.queue_type == "classic"
    assert cfg.broker.max_inflight == 512
    assert cfg.broker.prefetch == 256
    assert cfg.target.max_batch_changes == 10000
    assert cfg.target.bulk_rows == 200
    assert cfg.target.dropped == "keep"
    assert cfg.log_level == "INFO"
    assert cfg.metrics_port is None


def test_default_queue_is_named_after_the_slot() -> None:
    cfg = read(environ=full_env(CDC_SLOT="orders_slot"))
    assert cfg.broker.queue == "cdc.orders_slot"
    assert cfg.broker.dead_letter_queue == "cdc.orders_slot.dead"
    assert cfg.broker.dead_letter_exchange == "cdc.dlx"


def test_explicit_queue_name_wins() -> None:
    cfg = read(environ=full_env(CDC_BROKER_QUEUE="my.queue"))
    assert cfg.broker.queue == "my.queue"


def test_metrics_port_zero_disables() -> None:
    assert read(environ=full_env(CDC_METRICS_PORT="0")).metrics_port is None


def test_metrics_host_defaults_to_every_interface_and_takes_an_address() -> None:
    assert read(environ=full_env()).metrics_host == "0.0.0.0"
    cfg = read(environ=full_env(CDC_METRICS_HOST="127.0.0.1"))
    assert cfg.metrics_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="metrics_host"):
        read(environ=full_env(CDC_METRICS_HOST="localhost:9100"))


# ---------------------------------------------------------------- YAML file


YAML = f"""\
source:
  dsn: "{SOURCE_DSN}"
  slot: file_slot
  tables: [public.orders, '"Odd.Name"']
  max_chunk_changes: 50
broker:
  url: "{BROKER_URL}"
  queue_type: quorum
target:
  url: "{TARGET_URL}"
  max_batch_changes: 200
log_level: warning
metrics_port: 8080
"""


def test_yaml_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, YAML)
    cfg = read(path, environ={})
    assert cfg.source.dsn.reveal() == SOURCE_DSN
    assert cfg.source.slot == "file_slot"
    assert tuple(p.exact for p in cfg.source.capture.include) == (
        TableRef("public", "orders"),
        TableRef("public", "Odd.Name"),
    )
    assert cfg.source.max_chunk_changes == 50
    assert cfg.broker.url.reveal() == BROKER_URL
    assert cfg.broker.queue_type == "quorum"
    assert cfg.broker.queue == "cdc.file_slot"
    assert cfg.target.url.reveal() == TARGET_URL
    assert cfg.target.max_batch_changes == 200
    assert cfg.log_level == "WARNING"
    assert cfg.metrics_port == 8080
    assert cfg.origin == str(path)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, YAML)
    environ = {
        "CDC_SLOT": "env_slot",
        "CDC_SOURCE_MAX_CHUNK_CHANGES": "7",
        "CDC_LOG_LEVEL": "ERROR",
        "CDC_METRICS_PORT": "0",
    }
    cfg = read(path, environ=environ)
    assert cfg.source.slot == "env_slot"
    assert cfg.broker.queue == "cdc.env_slot"
    assert cfg.source.max_chunk_changes == 7
    assert cfg.log_level == "ERROR"
    assert cfg.metrics_port is None
    # what the environment does not set still comes from the file
    assert cfg.target.max_batch_changes == 200
    assert cfg.broker.queue_type == "quorum"


def test_empty_yaml_file_means_environment_only(tmp_path: Path) -> None:
    cfg = read(write_yaml(tmp_path, ""), environ=full_env())
    assert cfg.source.slot == "cdc_main"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("source:\n  slots: x\n", "source.slots"),
        ("sorce:\n  slot: x\n", "sorce"),
        ("log_levle: INFO\n", "log_levle"),
    ],
)
def test_unknown_yaml_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown setting {named}"):
        read(write_yaml(tmp_path, text), environ=full_env())


@pytest.mark.parametrize("text", ["- source\n- broker\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read(write_yaml(tmp_path, text), environ=full_env())


def test_yaml_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source in .* must be a mapping"):
        read(write_yaml(tmp_path, "source: [1, 2]\n"), environ=full_env())


def test_yaml_value_that_is_not_a_scalar(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "source:\n  max_chunk_changes: {a: 1}\n")
    with pytest.raises(ConfigError, match=r"source\.max_chunk_changes: expected a single value"):
        read(path, environ=full_env())


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid YAML"):
        read(write_yaml(tmp_path, "source: [unclosed\n"), environ=full_env())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file"):
        read(tmp_path / "nope.yaml", environ=full_env())


def test_invalid_yaml_error_does_not_print_the_password(tmp_path: Path) -> None:
    # An unterminated quote: PyYAML's message quotes the offending line, DSN and all.
    path = write_yaml(tmp_path, f'source:\n  dsn: "{SOURCE_DSN}\n  slot: x\n')
    with pytest.raises(ConfigError) as info:
        read(path, environ={})
    assert "pg-s3cret" not in str(info.value)


# ---------------------------------------------------------------- missing settings


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("CDC_SOURCE_DSN", "source.dsn"),
        ("CDC_SLOT", "source.slot"),
        ("CDC_BROKER_URL", "broker.url"),
        ("CDC_TARGET_URL", "target.url"),
    ],
)
def test_missing_required_setting(variable: str, setting: str) -> None:
    env = full_env()
    del env[variable]
    needing = [k for k in CATALOG.kinds if setting in {s.path for s in CATALOG.needs(k)}]
    assert needing
    for kind in needing:
        with pytest.raises(ConfigError) as info:
            load_config(kind, environ=env)
        message = str(info.value)
        assert setting in message
        assert variable in message


def test_blank_required_setting_counts_as_missing() -> None:
    with pytest.raises(ConfigError, match=r"source\.slot is required: set CDC_SLOT"):
        read(environ=full_env(CDC_SLOT="  "))


def test_missing_setting_names_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "source:\n  slot: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(ExtractorConfig, path, environ={})
    assert "CDC_SOURCE_DSN" in str(info.value)
    assert str(path) in str(info.value)


def test_extractor_does_not_need_a_target() -> None:
    env = full_env()
    del env["CDC_TARGET_URL"]
    cfg = load_config(ExtractorConfig, environ=env)
    # No placeholder: of the target, the extractor holds the naming only (to refuse two tables
    # that would share one target table), not the URL.
    assert not hasattr(cfg.target, "url")
    assert cfg.source.dsn.reveal() == SOURCE_DSN


def test_applier_does_not_need_the_source_dsn() -> None:
    env = full_env()
    del env["CDC_SOURCE_DSN"]
    cfg = load_config(ApplierConfig, environ=env)
    assert not hasattr(cfg.source, "dsn")  # of the source, the applier holds the slot only
    assert cfg.target.url.reveal() == TARGET_URL


def test_extractor_still_needs_the_source_dsn() -> None:
    env = full_env()
    del env["CDC_SOURCE_DSN"], env["CDC_TARGET_URL"]
    with pytest.raises(ConfigError, match="CDC_SOURCE_DSN"):
        load_config(ExtractorConfig, environ=env)


def test_applier_still_needs_the_target() -> None:
    env = full_env()
    del env["CDC_SOURCE_DSN"], env["CDC_TARGET_URL"]
    with pytest.raises(ConfigError, match="CDC_TARGET_URL"):
        load_config(ApplierConfig, environ=env)


def test_unneeded_setting_is_still_checked_when_given() -> None:
    env = full_env(CDC_TARGET_URL="mysql+pymysql://u:p@h/db")
    with pytest.raises(ConfigError, match=r"target\.url"):
        load_config(ExtractorConfig, environ=env)


@pytest.mark.parametrize(
    ("kind", "required"),
    [
        (ExtractorConfig, {"source.slot", "source.dsn", "broker.url"}),
        (StatusConfig, {"source.slot", "source.dsn", "broker.url"}),
        (BackfillConfig, {"source.slot", "source.dsn"}),
        (ApplierConfig, {"source.slot", "broker.url", "target.url"}),
        (DlqConfig, {"source.slot", "broker.url"}),
        (VerifyConfig, {"source.slot", "source.dsn", "target.url"}),
    ],
    ids=["extractor", "status", "backfill", "applier", "dlq", "verify"],
)
def test_each_command_needs_its_own_settings(kind: type[CommandConfig], required: set[str]) -> None:
    assert {s.path for s in CATALOG.needs(kind) if s.required} == required
    env = {s.env: full_env()[s.env] for s in CATALOG.settings if s.path in required}
    loaded = load_config(kind, environ=env)  # these alone are enough
    assert loaded.log_level == "INFO"


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("CDC_SLOT", "Bad-Slot", "source.slot"),
        ("CDC_SLOT", "x" * 64, "source.slot"),
        ("CDC_SOURCE_DSN", "not a dsn", "source.dsn"),
        ("CDC_SOURCE_DSN", "host=pg user=rep", "source.dsn"),
        ("CDC_BROKER_URL", "http://rabbit.example/", "broker.url"),
        ("CDC_BROKER_URL", "amqp://u:p@h:notaport/", "broker.url"),
        ("CDC_TARGET_URL", "mysql+pymysql://u:p@h/db", "target.url"),
        ("CDC_TARGET_URL", "postgresql://u:p@h/db", "target.url"),
        ("CDC_TARGET_URL", "mariadb+mariadbconnector://u:p@h:3306", "target.url"),
        ("CDC_TARGET_URL", "not a url", "target.url"),
        ("CDC_LOG_LEVEL", "verbose", "log_level"),
        ("CDC_METRICS_PORT", "70000", "metrics_port"),
        ("CDC_METRICS_PORT", "-1", "metrics_port"),
        ("CDC_METRICS_PORT", "http", "metrics_port"),
        ("CDC_SOURCE_MAX_CHUNK_CHANGES", "-5", "source.max_chunk_changes"),
        ("CDC_SOURCE_MAX_CHUNK_BYTES", "0", "source.max_chunk_bytes"),
        ("CDC_SOURCE_FEEDBACK_INTERVAL", "-1.5", "source.feedback_interval"),
        ("CDC_SOURCE_FEEDBACK_INTERVAL", "soon", "source.feedback_interval"),
        ("CDC_BROKER_MAX_INFLIGHT", "-1", "broker.max_inflight"),
        ("CDC_BROKER_PREFETCH", "1.5", "broker.prefetch"),
        ("CDC_TARGET_MAX_BATCH_CHANGES", "-10", "target.max_batch_changes"),
        ("CDC_TARGET_BULK_ROWS", "-1", "target.bulk_rows"),
        ("CDC_TARGET_BULK_ROWS", "many", "target.bulk_rows"),
        ("CDC_BROKER_QUEUE_TYPE", "stream", "broker.queue_type"),
        ("CDC_BROKER_EXCHANGE", "bad name", "broker.exchange"),
        ("CDC_TABLES", "a.b.c", "source.tables"),
    ],
)
def test_bad_value_names_the_setting(variable: str, value: str, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        read(environ=full_env(**{variable: value}))
    assert setting in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CDC_METRICS_PORT", "http", "must be an integer"),
        ("CDC_SOURCE_FEEDBACK_INTERVAL", "soon", "must be a number"),
        ("CDC_SOURCE_MAX_CHUNK_CHANGES", "-5", "must be a positive integer"),
    ],
)
def test_bad_value_message_names_the_variable(variable: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        read(environ=full_env(**{variable: value}))
    assert variable in str(info.value)
    assert reason in str(info.value)


def test_bad_value_in_yaml_names_the_setting(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "source:\n  max_chunk_bytes: -1\n")
    with pytest.raises(ConfigError, match=r"source\.max_chunk_bytes"):
        read(path, environ=full_env())


def test_bad_values_do_not_print_the_password() -> None:
    env = full_env(CDC_BROKER_URL="amqp://cdc:rabbit-s3cret@rabbit.example:notaport/")
    with pytest.raises(ConfigError) as info:
        read(environ=env)
    assert "rabbit-s3cret" not in str(info.value)


# ---------------------------------------------------------------- passwords


def test_passwords_never_shown() -> None:
    cfg = read(environ=full_env())
    shown = [repr(cfg), str(cfg.source.dsn), str(cfg.broker.url), str(cfg.target.url)]
    for text in shown:
        for password in PASSWORDS:
            assert password not in text
    assert str(cfg.source.dsn) == "postgresql://rep:***@pg.example:5432/app"
    assert str(cfg.broker.url) == "amqp://cdc:***@rabbit.example:5672/%2F"
    assert str(cfg.target.url) == "mariadb+mariadbconnector://app:***@maria.example:3306/target"


def test_reveal_gives_the_passwords_back() -> None:
    cfg = read(environ=full_env())
    assert "pg-s3cret" in cfg.source.dsn.reveal()
    assert "rabbit-s3cret" in cfg.broker.url.reveal()
    assert "maria-s3cret" in cfg.target.url.reveal()


def test_keyword_dsn_password_never_shown() -> None:
    dsn = "host=pg.example dbname=app user=rep password=pg-s3cret"
    cfg = read(environ=full_env(CDC_SOURCE_DSN=dsn))
    assert "pg-s3cret" not in repr(cfg)
    assert "pg-s3cret" not in str(cfg.source.dsn)
    assert cfg.source.dsn.reveal() == dsn


def test_filters_and_mapping() -> None:
    env = full_env()
    env["CDC_TABLES"] = "public.*,sales.orders"
    env["CDC_EXCLUDE_TABLES"] = "public.tmp_*"
    env["CDC_EXCLUDE_COLUMNS"] = "*.*.secret,public.users.pw"
    env["CDC_TARGET_RENAME"] = "public.orders=orders_copy"
    env["CDC_TARGET_SCHEMAS"] = "sales=sales_db"
    env["CDC_SNAPSHOT"] = "never"
    env["CDC_TARGET_DROPPED"] = "drop"
    cfg = read(environ=env)
    capture = cfg.source.capture
    assert capture.captures(TableRef("public", "anything"))
    assert not capture.captures(TableRef("public", "tmp_x"))
    assert capture.captures(TableRef("sales", "orders"))
    assert not capture.captures(TableRef("sales", "other"))
    assert capture.drops_column(TableRef("a", "b"), "secret", [])
    assert not capture.drops_column(TableRef("a", "b"), "secret", ["secret"])  # a key column
    assert capture.drops_column(TableRef("public", "users"), "pw", [])
    assert cfg.target.rename == {TableRef("public", "orders"): "orders_copy"}
    assert cfg.target.schemas == {"sales": "sales_db"}
    assert cfg.source.snapshot == "never"
    assert load_config(ApplierConfig, environ=env).target.dropped == "drop"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDC_TARGET_RENAME", "public.orders"),
        ("CDC_TARGET_RENAME", "public.*=x"),
        ("CDC_TARGET_SCHEMAS", "sales="),
        ("CDC_SNAPSHOT", "sometimes"),
        ("CDC_TARGET_DROPPED", "delete"),
        ("CDC_EXCLUDE_COLUMNS", "just_a_table"),
    ],
)
def test_bad_filters_and_mapping(variable: str, value: str) -> None:
    env = full_env()
    env[variable] = value
    with pytest.raises(ConfigError):
        read(environ=env)


# ---------------------------------------------------------------- TLS

PEM_CA = """-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUIFSWhAMWlDyCMvCazXG8PyOUNAwwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGdGVzdGNhMB4XDTI2MDEwMTAwMDAwMFoXDTM2MDEwMTAwMDAw
MFowETEPMA0GA1UEAwwGdGVzdGNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
"""


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A real CA certificate (PEM), made with the openssl command line."""
    import subprocess

    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=unit test CA", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def tls_env(ca: Path, **overrides: str) -> dict[str, str]:
    tls = {
        "CDC_SOURCE_SSLMODE": "verify-full",
        "CDC_SOURCE_SSLROOTCERT": str(ca),
        "CDC_BROKER_URL": BROKER_URL.replace("amqp://", "amqps://"),
        "CDC_BROKER_CA_FILE": str(ca),
        "CDC_TARGET_SSL": "true",
        "CDC_TARGET_SSL_CA": str(ca),
    }
    return full_env(**{**tls, **overrides})


def test_tls_off_by_default() -> None:
    cfg = read(environ=full_env())
    assert cfg.source.sslmode is None and cfg.source.sslrootcert is None
    assert cfg.source.tls_params() == {}
    assert cfg.broker.ca_file is None and cfg.broker.cert_file is None
    assert cfg.target.ssl is False and cfg.target.ssl_ca is None


def test_tls_settings_from_the_environment(ca_file: Path) -> None:
    cfg = read(environ=tls_env(ca_file))
    assert cfg.source.sslmode == "verify-full"
    assert cfg.source.sslrootcert == str(ca_file)
    assert cfg.source.tls_params() == {"sslmode": "verify-full", "sslrootcert": str(ca_file)}
    assert cfg.broker.ca_file == str(ca_file)
    assert cfg.target.ssl is True and cfg.target.ssl_ca == str(ca_file)


def test_tls_settings_from_yaml(tmp_path: Path, ca_file: Path) -> None:
    path = write_yaml(
        tmp_path,
        f"source:\n  dsn: {SOURCE_DSN}\n  slot: s\n  sslmode: verify-ca\n"
        f"  sslrootcert: {ca_file}\n"
        f"broker:\n  url: amqps://u:p@rabbit.example/%2F\n  ca_file: {ca_file}\n"
        f"target:\n  url: {TARGET_URL}\n  ssl: true\n  ssl_ca: {ca_file}\n",
    )
    cfg = read(path, environ={})
    assert cfg.source.sslmode == "verify-ca"
    assert cfg.broker.ca_file == str(ca_file)
    assert cfg.target.ssl is True  # a YAML boolean, not only the text "true"


def test_relative_file_path_is_made_absolute(
    ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ca_file.parent)
    cfg = read(environ=tls_env(Path(ca_file.name)))
    assert cfg.broker.ca_file == str(ca_file.resolve())


@pytest.mark.parametrize("value", ["verify", "VERIFY_FULL", "on", "ssl"])
def test_bad_sslmode_names_the_setting(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        read(environ=full_env(CDC_SOURCE_SSLMODE=value))
    text = str(info.value)
    assert "source.sslmode" in text and "CDC_SOURCE_SSLMODE" in text
    assert "verify-full" in text  # says which values are allowed


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_bad_target_ssl_names_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match=r"target\.ssl \(CDC_TARGET_SSL\) must be true or false"):
        read(environ=full_env(CDC_TARGET_SSL=value))


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("CDC_SOURCE_SSLROOTCERT", "source.sslrootcert"),
        ("CDC_BROKER_CA_FILE", "broker.ca_file"),
        ("CDC_TARGET_SSL_CA", "target.ssl_ca"),
        ("CDC_SOURCE_SSLCERT", "source.sslcert"),
        ("CDC_BROKER_KEY_FILE", "broker.key_file"),
        ("CDC_TARGET_SSL_KEY", "target.ssl_key"),
    ],
)
def test_missing_tls_file_names_the_setting(
    tmp_path: Path, ca_file: Path, variable: str, setting: str
) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(ConfigError) as info:
        read(environ=tls_env(ca_file, **{variable: str(missing)}))
    text = str(info.value)
    assert text.startswith(f"{setting} ({variable})")
    assert str(missing) in text and "does not exist" in text
    assert "\n" not in text


def test_tls_file_that_is_a_folder(tmp_path: Path, ca_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"target\.ssl_ca .* is not a file"):
        read(environ=tls_env(ca_file, CDC_TARGET_SSL_CA=str(tmp_path)))


def test_unreadable_tls_file(ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    # As if the file's mode kept this process out (root may read anything, so a chmod would
    # not show it when the tests run as root).
    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)
    with pytest.raises(ConfigError, match=r"source\.sslrootcert .* cannot be read"):
        read(environ=tls_env(ca_file))


def test_ca_file_that_holds_no_certificate(tmp_path: Path, ca_file: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        read(environ=tls_env(ca_file, CDC_SOURCE_SSLROOTCERT=str(junk)))
    assert "source.sslrootcert (CDC_SOURCE_SSLROOTCERT)" in str(info.value)
    assert "PEM" in str(info.value)
    truncated = tmp_path / "truncated.pem"
    truncated.write_text(PEM_CA)
    with pytest.raises(ConfigError, match=r"broker\.ca_file"):
        read(environ=tls_env(ca_file, CDC_BROKER_CA_FILE=str(truncated)))


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("CDC_SOURCE_SSLCERT", "source.sslkey"),
        ("CDC_SOURCE_SSLKEY", "source.sslcert"),
        ("CDC_BROKER_CERT_FILE", "broker.key_file"),
        ("CDC_TARGET_SSL_KEY", "target.ssl_cert"),
    ],
)
def test_client_certificate_needs_its_key(ca_file: Path, given: str, missing: str) -> None:
    with pytest.raises(ConfigError, match=f"{missing}.* is not: a client certificate needs"):
        read(environ=tls_env(ca_file, **{given: str(ca_file)}))


def test_client_certificates(ca_file: Path) -> None:
    pair = {
        "CDC_SOURCE_SSLCERT": str(ca_file),
        "CDC_SOURCE_SSLKEY": str(ca_file),
        "CDC_BROKER_CERT_FILE": str(ca_file),
        "CDC_BROKER_KEY_FILE": str(ca_file),
        "CDC_TARGET_SSL_CERT": str(ca_file),
        "CDC_TARGET_SSL_KEY": str(ca_file),
    }
    cfg = read(environ=tls_env(ca_file, **pair))
    assert cfg.source.tls_params()["sslkey"] == str(ca_file)
    assert cfg.broker.cert_file == cfg.broker.key_file == str(ca_file)
    assert cfg.target.ssl_cert == cfg.target.ssl_key == str(ca_file)


def test_broker_tls_files_need_an_amqps_url(ca_file: Path) -> None:
    env = tls_env(ca_file, CDC_BROKER_URL=BROKER_URL)
    with pytest.raises(ConfigError) as info:
        read(environ=env)
    text = str(info.value)
    assert "broker.ca_file (CDC_BROKER_CA_FILE)" in text and "amqps://" in text
    assert "rabbit-s3cret" not in text


def test_broker_tls_files_need_every_node_on_amqps(ca_file: Path) -> None:
    urls = [BROKER_URL.replace("amqp://", "amqps://"), BROKER_URL.replace("@", "@second")]
    with pytest.raises(ConfigError, match="every node") as info:
        read(environ=tls_env(ca_file, CDC_BROKER_URL=",".join(urls)))
    assert "rabbit-s3cret" not in str(info.value)


def test_target_tls_files_need_target_ssl(ca_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"target\.ssl_ca .* target\.ssl is false"):
        read(environ=tls_env(ca_file, CDC_TARGET_SSL="false"))


def test_tls_settings_leave_the_passwords_hidden(ca_file: Path) -> None:
    cfg = read(environ=tls_env(ca_file))
    for text in (repr(cfg), str(cfg)):
        for secret in PASSWORDS:
            assert secret not in text


def test_sslrootcert_system_means_the_system_store() -> None:
    cfg = read(environ=full_env(CDC_SOURCE_SSLROOTCERT="system"))
    assert cfg.source.tls_params() == {"sslrootcert": "system"}


# ---------------------------------------------------------------- lists and mappings


def test_yaml_lists_and_mappings_are_taken_as_they_are(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        f"source:\n  dsn: {SOURCE_DSN}\n  slot: s\n"
        "  tables: ['\"a,b\".t', public.x, 'sales.*']\n"
        "  exclude_columns: ['*.*.secret']\n"
        f"broker:\n  url: {BROKER_URL}\n"
        f"target:\n  url: {TARGET_URL}\n"
        "  rename: {public.orders: orders_copy, '\"Odd\".t': odd_t}\n"
        "  schemas: {Sales: sales_db}\n",
    )
    from_file = read(path, environ={})
    env = full_env(
        CDC_SLOT="s",
        CDC_TABLES='"a,b".t, public.x, sales.*',
        CDC_EXCLUDE_COLUMNS="*.*.secret",
        CDC_TARGET_RENAME='public.orders=orders_copy, "Odd".t=odd_t',
        CDC_TARGET_SCHEMAS="Sales=sales_db",
        CDC_LOG_LEVEL="",
        CDC_METRICS_PORT="",
    )
    from_env = read(environ=env)
    for cfg in (from_file, from_env):
        assert [str(p) for p in cfg.source.tables] == ['"a,b".t', "public.x", "sales.*"]
        assert cfg.source.capture.captures(TableRef("sales", "orders"))
        assert cfg.source.capture.drops_column(TableRef("a", "b"), "secret", [])
        assert cfg.target.rename == {
            TableRef("public", "orders"): "orders_copy",
            TableRef("Odd", "t"): "odd_t",
        }
        assert cfg.target.schemas == {"sales": "sales_db"}
    assert from_file.source == from_env.source
    assert from_file.target == from_env.target


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("target:\n  rename: [a.b=c]\n", "target.rename: expected a mapping, got list"),
        ("target:\n  schemas: {a: [b]}\n", "target.schemas: expected a mapping, got list"),
        (
            "source:\n  tables: [{a: b}]\n",
            "source.tables: expected a list of single values, got dict",
        ),
        ("source:\n  tables: {a: b}\n", "source.tables: expected a list, got dict"),
        ("log_level: [INFO]\n", "log_level: expected a single value, got list"),
        ("log_level: yes\n", "log_level: expected a single value, got bool"),
    ],
)
def test_yaml_value_of_the_wrong_kind(tmp_path: Path, text: str, message: str) -> None:
    needed = ("CDC_SOURCE_DSN", "CDC_SLOT", "CDC_BROKER_URL", "CDC_TARGET_URL")
    env = {name: full_env()[name] for name in needed}
    with pytest.raises(ConfigError) as info:
        read(write_yaml(tmp_path, text), environ=env)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "CDC_TABLES",
            "a.b.c",
            "source.tables (CDC_TABLES): 'a.b.c' is not a name of the form schema.table",
        ),
        (
            "CDC_TARGET_RENAME",
            "public.orders",
            "target.rename (CDC_TARGET_RENAME) 'public.orders' is not of the form source=target",
        ),
        (
            "CDC_SOURCE_MAX_CHUNK_CHANGES",
            "many",
            "source.max_chunk_changes (CDC_SOURCE_MAX_CHUNK_CHANGES) must be an integer",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_and_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        read(environ=full_env(**{variable: value}))
    assert str(info.value) == message


# ---------------------------------------------------------------- the declarations


def test_a_config_built_by_hand_has_the_declared_defaults() -> None:
    env = {"CDC_SOURCE_DSN": SOURCE_DSN, "CDC_SLOT": "cdc_main"}
    loaded = load_config(BackfillConfig, environ=env)
    assert loaded.source == SourceConfig(dsn=Secret(SOURCE_DSN), slot="cdc_main")
    assert loaded.source.capture.include == ()


def test_every_setting_is_declared_once_and_documented() -> None:
    assert len({s.path for s in SETTINGS}) == len({s.env for s in SETTINGS}) == len(SETTINGS)
    for s in SETTINGS:
        assert s.env.startswith("CDC_"), s.path
        assert s.doc and "|" not in s.doc and "\n" not in s.doc, s.path
        assert s.page in docs.PAGES, s.path


@pytest.mark.parametrize("page", docs.PAGES)
def test_the_documented_settings_are_the_declared_ones(page: str) -> None:
    text = (docs.ROOT / page).read_text()
    assert docs.rewrite(text, page) == text, f"{page}: its settings table is out of date: make docs"


# ---------------------------------------------------------------- partitions (issue 14)


def test_partitions_default_to_one_in_both_processes() -> None:
    cfg = read(environ=full_env())
    assert cfg.extractor.target.partitions == 1
    assert cfg.applier.target.partitions == 1


def test_partitions_and_the_partition_set() -> None:
    cfg = read(environ=full_env(CDC_TARGET_PARTITIONS="4"))
    assert cfg.extractor.target.partitions == cfg.applier.target.partitions == 4
    assert cfg.applier.target.mine == (0, 1, 2, 3)
    cfg = read(environ=full_env(CDC_TARGET_PARTITIONS="4", CDC_TARGET_PARTITION_SET="3, 1"))
    assert cfg.applier.target.mine == (1, 3)
    with pytest.raises(ConfigError, match=r"target\.partitions"):
        read(environ=full_env(CDC_TARGET_PARTITIONS="0"))
    with pytest.raises(ConfigError, match=r"target\.partition_set .* names partition 4"):
        read(environ=full_env(CDC_TARGET_PARTITIONS="4", CDC_TARGET_PARTITION_SET="0,4"))
    with pytest.raises(ConfigError, match=r"target\.partition_set .*partition numbers"):
        read(environ=full_env(CDC_TARGET_PARTITIONS="4", CDC_TARGET_PARTITION_SET="p1"))


# target.url is checked without SQLAlchemy (the extractor's start-up); what the check accepts,
# SQLAlchemy's make_url, which the applier connects with, must read with the same driver and
# database; what make_url rejects, the check rejects too.
_URLS = [
    "mariadb+mariadbconnector://u:p@h:3306/db",
    "mysql+mariadbconnector://u:p@h/db",
    "mariadb+mariadbconnector://u@h/db",
    "mariadb+mariadbconnector://h/db",
    "mariadb+mariadbconnector://u:p@127.0.0.1:3306/db?ssl=true&charset=utf8mb4",
    "mariadb+mariadbconnector://u:p@[::1]:3306/db",
    "mariadb+mariadbconnector://u:p@[::1]/db",
    "mariadb+mariadbconnector://u:p%40ss%2Fw@h:3306/db",
    "mariadb+mariadbconnector://u:p:a:ss@h:3306/db",
    "mariadb+mariadbconnector://u:pa/ss@h:3306/db",
    "mariadb+mariadbconnector://u:p@ss@h:3306/db",
    "mariadb+mariadbconnector://u:pa?ss@h:3306/db",
    "mariadb+mariadbconnector://u:p@h:33o6/db",
    "mariadb+mariadbconnector://u:p@h:99999/db",
    "mariadb+mariadbconnector://u:p@h:/db",
    "mariadb+mariadbconnector://u:p@h:3306",
    "mariadb+mariadbconnector://u:p@h:3306/",
    "mariadb+mariadbconnector://u:p@:3306/db",
    "mariadb+mariadbconnector://u:p@[::1:3306/db",
    "mariadb+mariadbconnector:/u:p@h/db",
    "mariadb+pymysql://u:p@h/db",
    "mariadb+mariadbconnector://u/x:p@h/db",
    "mariadb+mariadbconnector://u:p@h/db/more",
    "mariadb+mariadbconnector://u:p@h/d%20b",
    # No password, and an @ in the query: make_url reads the user as "u@h", the password as
    # "3306/db?ssl_key=/keys/u" and the host as "h.pem", with no database.
    "mariadb+mariadbconnector://u@h:3306/db?ssl_key=/keys/u@h.pem",
    "mariadb+mariadbconnector://h:3306/db?init=a@b",
]


@pytest.mark.parametrize("url", _URLS)
def test_the_target_url_check_agrees_with_sqlalchemy(url: str) -> None:
    from sqlalchemy.engine import make_url

    from shared import parsers

    try:
        parsers.target_url(url)
    except ValueError:
        return  # refused: loud at start, whatever make_url would have made of it
    parsed = make_url(url)  # must not raise
    assert parsed.drivername in ("mariadb+mariadbconnector", "mysql+mariadbconnector")
    assert parsed.database, url
    place = url.split("://", 1)[1].partition("?")[0].rpartition("@")[2].partition("/")[0]
    host = place[1:].partition("]")[0] if place.startswith("[") else place.partition(":")[0]
    assert parsed.host == host, url  # the host the check read: the one the applier connects to
    expected_db = url.split("://", 1)[1].rpartition("@")[2].partition("/")[2].partition("?")[0]
    assert parsed.database == expected_db.replace("%20", " ")


def test_the_target_url_check_accepts_the_usual_forms() -> None:
    from shared import parsers

    for url in _URLS[:8]:
        parsers.target_url(url)


def test_a_target_url_without_a_host_is_a_local_servers_socket() -> None:
    # make_url reads no host, and the connector connects over the local server's socket (the
    # one named, or its default): accepted before the check left SQLAlchemy out, and still.
    from sqlalchemy.engine import make_url

    from shared import parsers

    for url in (
        "mariadb+mariadbconnector://u:p@/db?unix_socket=/run/mysqld/mysqld.sock",
        "mariadb+mariadbconnector://u:p@/db",
    ):
        parsers.target_url(url)
        parsed = make_url(url)
        assert (parsed.host, parsed.database) == (None, "db")
    with pytest.raises(ValueError, match="a port but no host"):
        parsers.target_url("mariadb+mariadbconnector://u:p@:3306/db")
