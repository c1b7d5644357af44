"""The parsers of setting values: each takes a value (the text of a single value; the items of
a list, or the pairs of a mapping, with the setting's path) and returns it checked and typed,
or raises ValueError saying what is wrong; shared/settings.py adds the setting's name."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from pathlib import Path

import pika
from psycopg2.extensions import parse_dsn

from shared.secret import Secret, split_urls
from shared.tables import Pattern, TableRef, parse_patterns

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
QUEUE_TYPES = ("classic", "quorum")
SNAPSHOT_MODES = ("initial", "never")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
_AMQP_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def positive_int(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


def count_or_off(v: str) -> int:
    n = int(v)
    if n < 0:
        raise ValueError("must be 0 (off) or a positive integer")
    return n


def partition_set(items: list[str], _setting: str) -> tuple[int, ...]:
    """Partition numbers, comma-separated (YAML: a list); empty: every partition."""
    found: set[int] = set()
    for item in items:
        for text in item.split(","):
            number = text.strip()
            if not number:
                continue
            if not number.isdigit():
                raise ValueError("must be partition numbers (0, 1, ...), comma-separated")
            found.add(int(number))
    return tuple(sorted(found))


def positive_float(v: str) -> float:
    x = float(v)
    if not (x > 0 and math.isfinite(x)):
        raise ValueError("must be a positive number")
    return x


def seconds_or_off(v: str) -> float:
    x = float(v)
    if not (x >= 0 and math.isfinite(x)):
        raise ValueError("must be a number of seconds, or 0 to turn it off")
    return x


def table_patterns(items: list[str], setting: str) -> tuple[Pattern, ...]:
    return _patterns(items, setting, 2)


def column_patterns(items: list[str], setting: str) -> tuple[Pattern, ...]:
    return _patterns(items, setting, 3)


def _patterns(items: list[str], setting: str, parts: int) -> tuple[Pattern, ...]:
    found = (pattern for item in items for pattern in parse_patterns(item, setting, parts))
    return tuple(dict.fromkeys(found))


def snapshot_mode(v: str) -> str:
    if v not in SNAPSHOT_MODES:
        raise ValueError(f"must be one of {', '.join(SNAPSHOT_MODES)}")
    return v


def _pair(left: str, right: str) -> tuple[str, str]:
    left, right = left.strip(), right.strip()
    if not left or not right:
        item = f"{left}={right}" if right else left
        raise ValueError(f"{item!r} is not of the form source=target")
    if len(right) > 64:
        raise ValueError(f"{right!r} is longer than MariaDB's 64 characters")
    return left, right


def rename(pairs: list[tuple[str, str]], setting: str) -> dict[TableRef, str]:
    renamed: dict[TableRef, str] = {}
    for left, right in (_pair(*pair) for pair in pairs):
        pattern = parse_patterns(left, setting)
        ref = pattern[0].exact if pattern else None
        if ref is None:
            raise ValueError(f"{left!r} must name one table (schema.table)")
        renamed[ref] = right
    return renamed


def schemas(pairs: list[tuple[str, str]], _setting: str) -> dict[str, str]:
    mapped = {}
    for left, right in (_pair(*pair) for pair in pairs):
        mapped[left.strip('"') if left.startswith('"') else left.lower()] = right
    return mapped


def slot(v: str) -> str:
    if not _SLOT_NAME.match(v):
        raise ValueError("must be 1-63 characters of a-z, 0-9 and _ (PostgreSQL slot name rules)")
    return v


DECODERS = ("wal2json", "pgoutput")


def decoder(v: str) -> str:
    if v not in DECODERS:
        raise ValueError(f"must be one of {', '.join(DECODERS)}")
    return v


def publication(v: str) -> str:
    if v and not _SLOT_NAME.match(v):
        raise ValueError("must be 1-63 characters of a-z, 0-9 and _")
    return v


def amqp_name(v: str) -> str:
    if v and not _AMQP_NAME.match(v):
        raise ValueError("must be letters, digits and _ . : - only")
    return v


def exchange_name(v: str) -> str:
    if not v:
        raise ValueError("must not be empty (the default exchange cannot be declared)")
    return amqp_name(v)


def source_dsn(v: str) -> Secret:
    try:
        parsed = parse_dsn(v)
    except Exception as e:
        raise ValueError("is not a libpq connection string (postgresql://user:pw@host/db)") from e
    if not parsed.get("dbname"):
        raise ValueError("must name a database (postgresql://user:pw@host:5432/dbname)")
    return Secret(v)


def broker_urls(items: list[str], _setting: str) -> Secret:
    """One node's URL, or several (a cluster's nodes, comma-separated or a YAML list), kept
    as one Secret of comma-separated URLs (BrokerConfig.urls splits them)."""
    urls = [url for item in items for url in split_urls(item)]
    if not urls:
        raise ValueError("must be an amqp:// or amqps:// URL")
    for n, url in enumerate(urls, 1):
        # Which URL of a list is wrong, by its place: its text may hold a password.
        which = f"(URL {n} of {len(urls)}) " if len(urls) > 1 else ""
        if not url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"{which}must be an amqp:// or amqps:// URL")
        try:
            pika.URLParameters(url)
        except Exception as e:
            raise ValueError(f"{which}is not a valid AMQP URL ({type(e).__name__})") from e
    return Secret(",".join(urls))


_TARGET_DRIVERS = ("mariadb+mariadbconnector", "mysql+mariadbconnector")
_URL_SCHEME = re.compile(r"^[A-Za-z0-9_+]+$")


def target_url(v: str) -> Secret:
    hosts = target_hosts(v)
    for n, one in enumerate(hosts, 1):
        which = f"(host {n} of {len(hosts)}) " if len(hosts) > 1 else ""
        _check_target_url(one, which)
    return Secret(v)


def _check_target_url(url: str, which: str) -> None:
    """The parts of a one-host target URL that the applier relies on, read as target_hosts
    reads them, in a URL that SQLAlchemy's make_url reads the same way (the same host, port
    and database: tests/unit/test_config.py compares them over a corpus). Not make_url
    itself: importing SQLAlchemy was two fifths of the extractor's start-up, and every
    command checks every setting given (a drain of a queued backlog is timed from the
    processes' start)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _URL_SCHEME.match(scheme):
        raise ValueError(f"{which}is not a SQLAlchemy URL (driver://user:pw@host:3306/db)")
    if scheme not in _TARGET_DRIVERS:
        raise ValueError("must use the driver mariadb+mariadbconnector://")
    # Read only if it cannot be read two ways: SQLAlchemy's make_url, which the applier
    # connects with, lets a user or password run past a "/", "?" or another "@" (with an @
    # in the query of a URL without a password, it reads its host from the query). So the
    # one "@" there may be must end the host part's user and password, before any "/" or "?".
    netloc = re.split(r"[/?]", rest, maxsplit=1)[0]
    if rest.count("@") > 1 or ("@" in rest and "@" not in netloc):
        raise ValueError(
            f"{which}is not a SQLAlchemy URL that reads one way: percent-encode any @, / or ? "
            "in the user, the password, the database or the query (%40, %2F, %3F)"
        )
    before_query = rest.partition("?")[0]
    location = before_query.rpartition("@")[2]
    address, _, database = location.partition("/")
    if address.startswith("["):  # an IPv6 address: [::1]:3306
        host, bracket, after = address[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"{which}has an IPv6 address without its closing ]")
        port = after[1:] if after else None
    else:
        host, colon, port_text = address.partition(":")
        port = port_text if colon else None
    if not host and port is not None:
        # No host: the connector connects over the local server's socket (unix_socket=...),
        # where a port means nothing.
        raise ValueError(f"{which}names a port but no host (driver://user:pw@host:3306/db)")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(
            f"{which}has a port that is not a number from 1 to 65535 (a password holding "
            "?, @ or / must be percent-encoded)"
        )
    if not database:
        raise ValueError("must name a database (mariadb+mariadbconnector://u:pw@host:3306/db)")


def target_hosts(v: str) -> list[str]:
    """target.url once per host: ``scheme://user:pw@h1:3306,h2:3306/db`` (the multi-host form
    of libpq and Connector/J, a Galera cluster's nodes) gives one URL for each ``host:port``
    pair, in the order given; a URL of one host gives itself."""
    scheme, sep, rest = v.partition("://")
    if not sep:
        return [v]
    before_query, q, query = rest.partition("?")
    userinfo, at, location = before_query.rpartition("@")
    hosts, slash, path = location.partition("/")
    names = [h.strip() for h in hosts.split(",")]
    if len(names) == 1:
        return [v]
    if not all(names):
        raise ValueError("has an empty host in its list of hosts")
    return [f"{scheme}://{userinfo}{at}{h}{slash}{path}{q}{query}" for h in names]


def sslmode(v: str) -> str | None:
    mode = v.strip().lower()
    if not mode:
        return None  # libpq's default, or what the DSN says
    if mode not in SSL_MODES:
        raise ValueError(f"must be one of {', '.join(SSL_MODES)}")
    return mode


def readable_file(v: str) -> str | None:
    """A file that exists and that this process can read, as an absolute path (so that it
    means the same file whatever the driver's working folder)."""
    if not v.strip():
        return None
    path = Path(v.strip()).expanduser()
    if not path.exists():
        raise ValueError(f"must name a readable file; {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"must name a readable file; {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"must name a readable file; {str(path)!r} cannot be read by this process")
    return str(path.resolve())


def ca_file(v: str) -> str | None:
    """A readable file of PEM CA certificates: a wrong file is found at start, not at the
    first connection."""
    path = readable_file(v)
    if path is None:
        return None
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"must name a file of PEM CA certificates; {path!r} holds none") from e
    return path


def sslrootcert(v: str) -> str | None:
    # libpq 16 and later: the system's CA certificates (and then only verify-full is allowed).
    if v.strip() == "system":
        return "system"
    return ca_file(v)


def boolean(v: str) -> bool:
    text = v.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false")


def log_level(v: str) -> str:
    level = v.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def log_format(v: str) -> str:
    fmt = v.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
    return fmt


def metrics_port(v: str) -> int | None:
    if v.strip() in ("", "0"):
        return None
    n = int(v)
    if not 1 <= n <= 65535:
        raise ValueError("must be a TCP port (1-65535), or 0 to disable")
    return n


def metrics_host(v: str) -> str:
    host = v.strip()
    try:
        ipaddress.ip_address(host)
    except ValueError as e:
        raise ValueError(
            "must be an IP address to listen on (0.0.0.0: all, 127.0.0.1: local)"
        ) from e
    return host


def queue_type(v: str) -> str:
    if v not in QUEUE_TYPES:
        raise ValueError(f"must be one of {', '.join(QUEUE_TYPES)}")
    return v


DROPPED_MODES = ("keep", "drop")


def dropped_mode(v: str) -> str:
    if v not in DROPPED_MODES:
        raise ValueError(f"must be one of {', '.join(DROPPED_MODES)}")
    return v
