"""Connection strings that carry a password and never print it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# Where a comma-separated list of URLs (broker.url naming a cluster's nodes) starts its next
# URL: a comma followed by a scheme. A comma in a URL's host part (target.url's host:port
# pairs) is not followed by one, so such a URL stays whole.
_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_urls(text: str) -> list[str]:
    """A comma-separated list of URLs, each stripped (one URL gives a list of one)."""
    return [part.strip() for part in _NEXT_URL.split(text) if part.strip()]


def redact(dsn: str) -> str:
    """The DSN or URL (or comma-separated list of URLs) with every password replaced by
    ``***``."""
    if dsn.count("://") > 1:
        return ",".join(_redact_one(part) for part in split_urls(dsn))
    return _redact_one(dsn)


def _redact_one(dsn: str) -> str:
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:
            return "***"
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{host}"
        query = _KEYWORD_PASSWORD.sub(r"\1***", parts.query.replace("&", " ")).replace(" ", "&")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KEYWORD_PASSWORD.sub(r"\1***", dsn)


class Secret:
    """A string to hand to a driver, shown everywhere else with its password hidden."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return redact(self._value)

    def __repr__(self) -> str:
        return f"Secret({redact(self._value)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
