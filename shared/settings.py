"""How a setting is declared.

A setting is one field of a config class, declared with ``setting()``: its environment
variable, how its value is read and checked, its default and its row in the documentation's
table. Its YAML path is the class's section and the field's name (``source.slot``). Config
classes are declared with ``section()``, which makes them frozen, keyword-only dataclasses
(mypy checks them as such: a hand-built config gets the declared defaults, and must give the
required settings); a field whose type is another config class holds that section. Rules
between settings are declared with the section they constrain. shared/loading.py reads them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, dataclass_transform, overload

from shared.errors import ConfigError

T = TypeVar("T")
C = TypeVar("C")

README = "README.md"
TLS = "docs/tls.md"
_META = "setting"  # the key of a setting's declaration in its dataclass field's metadata
_SECTION = "__cdc_section__"  # a config class's YAML section ("" for the top level)
_RULES = "__cdc_rules__"  # the rules between settings that a config class declares


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


_REQUIRED: Any = _Required()


class WrongShape(Exception):
    """A YAML value of the wrong kind: a list where a single value is wanted, and so on."""

    def __init__(self, expected: str, got: object) -> None:
        super().__init__(expected)
        self.expected = expected
        self.got = type(got).__name__


@dataclasses.dataclass(frozen=True)
class Read(Generic[T]):
    """How a setting's value is taken from what the YAML file or a variable gives (``take``
    gets that raw value and the setting's path, for messages)."""

    take: Callable[[object, str], T]


def text(parse: Callable[[str], T]) -> Read[T]:
    """A single value: its text goes to ``parse``, which raises ValueError saying what is
    wrong."""
    return Read(lambda raw, _path: parse(_single(raw)))


def items(parse: Callable[[list[str], str], T]) -> Read[T]:
    """A list: a YAML list, item by item, or a variable's text (``parse`` splits each item at
    its commas)."""

    def take(raw: object, path: str) -> T:
        if isinstance(raw, list):
            return parse([_single(x, "a list of single values") for x in raw], path)
        return parse([_single(raw, "a list")], path)

    return Read(take)


def pairs(parse: Callable[[list[tuple[str, str]], str], T]) -> Read[T]:
    """A mapping: a YAML mapping, or a variable's ``key=value`` pairs, comma-separated."""

    def take(raw: object, path: str) -> T:
        expected = "a mapping"
        if isinstance(raw, dict):
            return parse(
                [(_single(k, expected), _single(v, expected)) for k, v in raw.items()], path
            )
        found = []
        for item in _single(raw, expected).split(","):
            if item.strip():
                key, _, value = item.partition("=")
                found.append((key, value))
        return parse(found, path)

    return Read(take)


def flag(parse: Callable[[str], bool]) -> Read[bool]:
    """true or false: a YAML boolean, or text that ``parse`` reads."""
    return Read(lambda raw, _path: raw if isinstance(raw, bool) else parse(_single(raw)))


def _single(raw: object, expected: str = "a single value") -> str:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise WrongShape(expected, raw)
    return str(raw)


@dataclasses.dataclass(eq=False)
class Setting:
    """One setting as setting() declares it; section() gives it its path."""

    env: str
    read: Read[Any]
    default: Any  # _REQUIRED when there is none
    default_from: tuple[str, Callable[[Any], Any]] | None  # (another setting's path, how)
    shown: str | None  # the default as the documentation says it, if not the value itself
    doc: str
    page: str  # the documentation page whose table lists it
    path: str = ""

    @property
    def section(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def label(self) -> str:
        return f"{self.path} ({self.env})"

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED and self.default_from is None

    def parse(self, raw: object) -> Any:
        """The value, or a ConfigError that names the setting."""
        try:
            return self.read.take(raw, self.path)
        except WrongShape as e:
            raise ConfigError(f"{self.path}: expected {e.expected}, got {e.got}") from None
        except ConfigError as e:
            # shared/tables.py says "<path>: what is wrong"; the variable is added.
            reason = str(e).removeprefix(f"{self.path}: ")
            raise ConfigError(f"{self.label}: {reason}") from None
        except ValueError as e:
            raise ConfigError(f"{self.label} {_reason(e)}") from e

    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if value is None or value in ((), {}):
            return "none"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, (int, float)):
            return str(value)
        return f"`{value}`"

    def _bind(self, path: str) -> None:
        if self.path and self.path != path:
            raise TypeError(f"the setting {self.path} cannot also be {path}")
        self.path = path


def _reason(e: ValueError) -> str:
    text = str(e)
    if text.startswith("invalid literal for int()"):
        return "must be an integer"
    if text.startswith("could not convert string to float"):
        return "must be a number"
    return text


# A setting's parser: a function of its text, or a Read for a list, a mapping or a flag.
Parse = Callable[[str], T] | Read[T]


@overload
def setting(env: str, parse: Parse[T], *, doc: str, page: str = README) -> T: ...


@overload
def setting(
    env: str, parse: Parse[T], *, default: T, doc: str, shown: str | None = None, page: str = README
) -> T: ...


@overload
def setting(
    env: str,
    parse: Parse[T],
    *,
    default_from: tuple[str, Callable[[Any], T]],
    shown: str,
    doc: str,
    page: str = README,
) -> T: ...


def setting(
    env: str,
    parse: Parse[Any],
    *,
    default: Any = _REQUIRED,
    default_from: tuple[str, Callable[[Any], Any]] | None = None,
    shown: str | None = None,
    doc: str,
    page: str = README,
) -> Any:
    """Declares a field of a config class as a setting.

    ``env``: its environment variable. ``parse``: how its value is read and checked. Without
    ``default`` (or ``default_from``, another setting's path and a function of its value) it
    is required by every command whose config holds it. ``doc``: its meaning, as the
    documentation's table says it (markdown); ``shown``: its default as that table says it,
    when the value itself would not say it well; ``page``: the page whose table lists it.
    """
    read = parse if isinstance(parse, Read) else text(parse)
    spec = Setting(env, read, default, default_from, shown, doc, page)
    metadata = {_META: spec}
    if default is _REQUIRED:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (dict, list, set)):
        return dataclasses.field(
            default_factory=functools.partial(copy.copy, default), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


class Values:
    """What a rule between settings sees: each setting's value as given, else its default
    (None for one that has none)."""

    def __init__(self, settings: Mapping[str, Setting], given: Mapping[str, Any]) -> None:
        self._settings = settings
        self._given = given

    def __getitem__(self, path: str) -> Any:
        if path in self._given:
            return self._given[path]
        s = self._settings[path]
        if s.default_from is not None:
            source, derive = s.default_from
            value = self[source]
            return None if value is None else derive(value)
        return None if s.default is _REQUIRED else copy.copy(s.default)

    def label(self, path: str) -> str:
        return self._settings[path].label


Rule = Callable[[Values], None]


def client_certificate_needs_its_key(cert: str, key: str) -> Rule:
    """A rule several sections share: a client certificate and its key, both or neither."""

    def check(v: Values) -> None:
        for given, missing in ((cert, key), (key, cert)):
            if v[given] is not None and v[missing] is None:
                raise ConfigError(
                    f"{v.label(given)} is set but {v.label(missing)} is not: "
                    "a client certificate needs its key"
                )

    return check


@dataclass_transform(
    frozen_default=True, kw_only_default=True, field_specifiers=(setting, dataclasses.field)
)
def section(name: str, *, rules: Sequence[Rule] = ()) -> Callable[[type[C]], type[C]]:
    """Declares a config class: its setting() fields are the settings under ``name`` in the
    YAML file ("" for the top level); a field whose type is another config class holds that
    section. ``rules``: checks between settings (they raise ConfigError), run whenever any
    command's settings are read."""

    def declare(cls: type[C]) -> type[C]:
        cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = f.metadata.get(_META)
            if spec is not None:
                spec._bind(f"{name}.{f.name}" if name else f.name)
        setattr(cls, _SECTION, name)
        setattr(cls, _RULES, tuple(rules))
        return cls

    return declare


def declared_setting(f: dataclasses.Field[Any]) -> Setting | None:
    """The setting a config class's field declares, if it is one."""
    spec = f.metadata.get(_META)
    return spec if isinstance(spec, Setting) else None


def declared_section(cls: type) -> str | None:
    """The YAML section of a class declared with section() (not of one merely inheriting)."""
    name = cls.__dict__.get(_SECTION)
    return name if isinstance(name, str) else None


def declared_rules(cls: type) -> tuple[Rule, ...]:
    rules: tuple[Rule, ...] = cls.__dict__.get(_RULES, ())
    return rules
