"""Settings for both processes: one YAML file and/or ``CDC_*`` environment variables.

Everything is parsed and checked once, at start-up, into frozen dataclasses. A bad or missing
value raises ConfigError naming the setting; the CLI turns it into one line and exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.errors import ConfigError
from shared.secret import Secret
from shared.settings import SETTINGS
from shared.tables import TableFilter, TableRef


@dataclass(frozen=True)
class SourceConfig:
    dsn: Secret
    slot: str
    capture: TableFilter
    snapshot: str
    max_chunk_changes: int
    max_chunk_bytes: int
    feedback_interval: float
    heartbeat_interval: float
    # TLS: None leaves it to the DSN and libpq; a value here wins over the DSN's.
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    def tls_params(self) -> dict[str, str]:
        """The libpq TLS parameters that were set, to lay over every connection's DSN."""
        given = {
            "sslmode": self.sslmode,
            "sslrootcert": self.sslrootcert,
            "sslcert": self.sslcert,
            "sslkey": self.sslkey,
        }
        return {k: v for k, v in given.items() if v is not None}


@dataclass(frozen=True)
class BrokerConfig:
    url: Secret
    exchange: str
    queue: str
    queue_type: str
    max_inflight: int
    prefetch: int
    # TLS for amqps:// URLs: None means the system's CA certificates, no client certificate.
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"


@dataclass(frozen=True)
class TargetConfig:
    url: Secret
    max_batch_changes: int
    rename: dict[TableRef, str]
    schemas: dict[str, str]
    ssl: bool = False
    dropped: str = "keep"  # keep or drop: a source DROP COLUMN / DROP TABLE in the target
    ssl_ca: str | None = None  # None: the system's CA certificates
    ssl_cert: str | None = None
    ssl_key: str | None = None


@dataclass(frozen=True)
class Config:
    source: SourceConfig
    broker: BrokerConfig
    target: TargetConfig
    log_level: str
    metrics_port: int | None
    log_format: str = "text"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a container's scraper comes from outside
    origin: str = field(default="environment")


SECTIONS = ("source", "broker", "target")
_LISTS = {"source.tables", "source.exclude_tables", "source.exclude_columns"}
_MAPS = {"target.rename", "target.schemas"}
_BOOLS = {"target.ssl"}
# A client certificate and its key only work together.
_PAIRS = (
    ("source.sslcert", "source.sslkey"),
    ("broker.cert_file", "broker.key_file"),
    ("target.ssl_cert", "target.ssl_key"),
)
EXTRACTOR_NEEDS = frozenset({"source.dsn", "source.slot", "broker.url"})
APPLIER_NEEDS = frozenset({"source.slot", "broker.url", "target.url"})


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    need: frozenset[str] = EXTRACTOR_NEEDS | APPLIER_NEEDS,
) -> Config:
    """Read the YAML file (if any), let environment variables override it, validate.

    ``need`` names the settings without a default that must be present: the extractor does
    not need a target, the applier does not need the source's DSN.
    """
    env = os.environ if environ is None else environ
    file_values = _read_file(path) if path else {}
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = env.get(s.env)
        if raw is not None and raw.strip() == "":
            raw = None  # an empty variable is as good as unset
        if raw is None:
            raw = _lookup(file_values, s.path)
        if raw is None or (isinstance(raw, str) and raw.strip() == "" and s.default is None):
            if s.default is None and s.name in need:
                where = f" in {path}" if path else ""
                raise ConfigError(f"{s.name} is required: set {s.env} or {s.name}{where}")
            raw = s.default if s.default is not None else None
        if raw is None:
            values[s.name] = None
            continue
        if isinstance(raw, list) and s.name in _LISTS:
            raw = ",".join(str(x) for x in raw)
        if isinstance(raw, dict) and s.name in _MAPS:
            raw = ",".join(f"{k}={v}" for k, v in raw.items())
        if isinstance(raw, bool) and s.name in _BOOLS:
            raw = "true" if raw else "false"  # YAML's true/false
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ConfigError(f"{s.name}: expected a single value, got {type(raw).__name__}")
        try:
            values[s.name] = s.parse(str(raw))
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(f"{s.name} ({s.env}) {_reason(e)}") from e

    _check_tls(values)
    slot = values["source.slot"] or "unset"
    return Config(
        source=SourceConfig(
            dsn=values["source.dsn"] or Secret(""),
            slot=slot,
            capture=TableFilter(
                values["source.tables"],
                values["source.exclude_tables"],
                values["source.exclude_columns"],
            ),
            snapshot=values["source.snapshot"],
            max_chunk_changes=values["source.max_chunk_changes"],
            max_chunk_bytes=values["source.max_chunk_bytes"],
            feedback_interval=values["source.feedback_interval"],
            heartbeat_interval=values["source.heartbeat_interval"],
            sslmode=values["source.sslmode"],
            sslrootcert=values["source.sslrootcert"],
            sslcert=values["source.sslcert"],
            sslkey=values["source.sslkey"],
        ),
        broker=BrokerConfig(
            url=values["broker.url"] or Secret(""),
            exchange=values["broker.exchange"],
            queue=values["broker.queue"] or f"cdc.{slot}",
            queue_type=values["broker.queue_type"],
            max_inflight=values["broker.max_inflight"],
            prefetch=values["broker.prefetch"],
            ca_file=values["broker.ca_file"],
            cert_file=values["broker.cert_file"],
            key_file=values["broker.key_file"],
        ),
        target=TargetConfig(
            url=values["target.url"] or Secret(""),
            max_batch_changes=values["target.max_batch_changes"],
            rename=values["target.rename"],
            schemas=values["target.schemas"],
            dropped=values["target.dropped"],
            ssl=values["target.ssl"],
            ssl_ca=values["target.ssl_ca"],
            ssl_cert=values["target.ssl_cert"],
            ssl_key=values["target.ssl_key"],
        ),
        log_level=values["log_level"],
        log_format=values["log_format"],
        metrics_port=values["metrics_port"],
        metrics_host=values["metrics_host"],
        origin=str(path) if path else "environment",
    )


def _check_tls(values: Mapping[str, Any]) -> None:
    """TLS settings that only make sense together: said at start, not found out in production
    by a connection that is silently unencrypted."""
    env = {s.name: s.env for s in SETTINGS}
    for cert, key in _PAIRS:
        for given, missing in ((cert, key), (key, cert)):
            if values[given] is not None and values[missing] is None:
                raise ConfigError(
                    f"{given} ({env[given]}) is set but {missing} ({env[missing]}) is not: "
                    "a client certificate needs its key"
                )
    url = values["broker.url"]
    if url is not None and not url.reveal().startswith("amqps://"):
        for name in ("broker.ca_file", "broker.cert_file", "broker.key_file"):
            if values[name] is not None:
                raise ConfigError(
                    f"{name} ({env[name]}) is set but broker.url is not an amqps:// URL: "
                    "use amqps:// (and the broker's TLS port) for TLS, or unset it"
                )
    if not values["target.ssl"]:
        for name in ("target.ssl_ca", "target.ssl_cert", "target.ssl_key"):
            if values[name] is not None:
                raise ConfigError(
                    f"{name} ({env[name]}) is set but target.ssl is false: "
                    "set target.ssl (CDC_TARGET_SSL) to true, or unset it"
                )


def _reason(e: ValueError) -> str:
    text = str(e)
    if text.startswith("invalid literal for int()"):
        return "must be an integer"
    if text.startswith("could not convert string to float"):
        return "must be a number"
    return text


def _read_file(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # PyYAML's own message quotes the offending line, which may hold a password.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping (source:, broker:, target:)")
    known = {s.path for s in SETTINGS}
    for key, value in data.items():
        if key in SECTIONS and not isinstance(value, dict):
            raise ConfigError(f"{key} in {path} must be a mapping of settings")
        if key in SECTIONS:
            for sub in value:
                if (key, sub) not in known:
                    raise ConfigError(f"unknown setting {key}.{sub} in {path}")
        elif (key,) not in known:
            raise ConfigError(f"unknown setting {key} in {path}")
    return data


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node
