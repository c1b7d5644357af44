"""How a setting is declared, read and checked.

A setting is one field of a config class, declared with ``setting()``: its environment
variable, how its value is read and checked, its default and its line in the documentation.
Its YAML path is the class's section and the field's name (``source.slot``). Config classes are
declared with ``section()``, which makes them frozen, keyword-only dataclasses; the commands'
config classes nest them (shared/config.py). A ``Catalog`` of the commands' classes reads one
of them from a YAML file and the environment:

- a variable wins over the file, and an empty variable counts as unset; the file's lists and
  mappings are taken as they are, a variable holds them as comma-separated text;
- every setting that is given is checked, whether or not the command uses it (a bad value in
  the shared file stops both processes alike), and so are the rules between settings; a
  setting without a default is required only by the commands whose config holds it;
- a problem is one ConfigError naming the setting: its YAML path and its variable.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, dataclass_transform, overload

import yaml

from shared.errors import ConfigError

T = TypeVar("T")
C = TypeVar("C")

README = "README.md"
_META = "setting"  # the key of a setting's declaration in its dataclass field's metadata
_SECTION = "__cdc_section__"  # a config class's YAML section ("" for the top level)
_RULES = "__cdc_rules__"  # the rules between settings that a config class declares
_ORIGIN = "origin"  # the one field of a command's config that is not a setting


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


# What a field of a config class is: a setting, a nested section, or the origin.
Part = Setting | type | None


@functools.cache
def _layout(kind: type) -> tuple[tuple[str, Part], ...]:
    if not hasattr(kind, _SECTION):
        raise TypeError(f"{kind.__name__} is not declared with section()")
    hints = typing.get_type_hints(kind)
    layout: list[tuple[str, Part]] = []
    for f in dataclasses.fields(kind):
        spec = f.metadata.get(_META)
        hint = hints[f.name]
        if spec is not None:
            layout.append((f.name, spec))
        elif isinstance(hint, type) and hasattr(hint, _SECTION):
            if getattr(hint, _SECTION) != f.name:
                raise TypeError(f"{kind.__name__}.{f.name} holds section {getattr(hint, _SECTION)}")
            layout.append((f.name, hint))
        elif f.name == _ORIGIN:
            layout.append((f.name, None))
        else:
            raise TypeError(f"{kind.__name__}.{f.name} is neither a setting nor a section")
    return tuple(layout)


def _held(kind: type) -> list[Setting]:
    """The settings a config class holds, its sections' included."""
    found: list[Setting] = []
    for _name, part in _layout(kind):
        if isinstance(part, Setting):
            found.append(part)
        elif part is not None:
            found.extend(_held(part))
    return found


def _classes(kind: type) -> list[type]:
    """The config classes a command's config is made of (bases included)."""
    found: list[type] = [k for k in kind.__mro__ if k.__dict__.get(_SECTION) is not None]
    for _name, part in _layout(kind):
        if isinstance(part, type):
            found.extend(_classes(part))
    return found


class Catalog:
    """Every setting of a set of commands' config classes: what the YAML file may hold, which
    variables are settings, and how one command's config is read."""

    def __init__(self, *kinds: type) -> None:
        self.kinds: tuple[type[Any], ...] = kinds
        found: dict[str, Setting] = {}
        variables: dict[str, str] = {}
        rules: dict[Rule, None] = {}
        for kind in kinds:
            for s in _held(kind):
                if variables.setdefault(s.env, s.path) != s.path:
                    raise TypeError(f"{s.env} is the variable of {variables[s.env]} and {s.path}")
                found.setdefault(s.path, s)
            for cls in _classes(kind):
                rules.update(dict.fromkeys(cls.__dict__[_RULES]))
        # Sections in the order they first appear, the top level last.
        order = [*dict.fromkeys(s.section for s in found.values() if s.section), ""]
        self.settings = tuple(sorted(found.values(), key=lambda s: order.index(s.section)))
        self.rules = tuple(rules)
        self._by_path = {s.path: s for s in self.settings}

    def needs(self, kind: type) -> tuple[Setting, ...]:
        """The settings a command's config reads, in catalogue order (with those a default
        is taken from)."""
        held = set(_held(kind))
        for s in list(held):
            if s.default_from is not None:
                held.add(self._by_path[s.default_from[0]])
        return tuple(s for s in self.settings if s in held)

    def load(
        self,
        kind: type[C],
        path: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> C:
        """Read the YAML file (if any), let environment variables override it, check, and
        build ``kind``."""
        if kind not in self.kinds:
            raise TypeError(f"{kind.__name__} is not a command's config of this catalogue")
        env = os.environ if environ is None else environ
        document = self._read_file(path) if path else {}
        needed = set(self.needs(kind))
        given: dict[str, Any] = {}
        for s in self.settings:
            raw = _given(s, env, document)
            if raw is None:
                if s.required and s in needed:
                    where = f" in {path}" if path else ""
                    raise ConfigError(f"{s.path} is required: set {s.env} or {s.path}{where}")
                continue
            given[s.path] = s.parse(raw)
        values = Values(self._by_path, given)
        for rule in self.rules:
            rule(values)
        return typing.cast(C, _build(kind, values, str(path) if path else "environment"))

    def _read_file(self, path: str | Path) -> dict[str, Any]:
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
        sections = {s.section for s in self.settings if s.section}
        for key, value in data.items():
            if key in sections and not isinstance(value, dict):
                raise ConfigError(f"{key} in {path} must be a mapping of settings")
            if key in sections:
                for sub in value:
                    if f"{key}.{sub}" not in self._by_path:
                        raise ConfigError(f"unknown setting {key}.{sub} in {path}")
            elif not isinstance(key, str) or key not in self._by_path:
                raise ConfigError(f"unknown setting {key} in {path}")
        return data


def _given(s: Setting, environ: Mapping[str, str], document: Mapping[str, Any]) -> object:
    """The setting's raw value: its variable's, else the file's; None if neither gives one."""
    raw = environ.get(s.env)
    if raw is not None and raw.strip():
        return raw
    node: Any = document
    for key in s.path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, str) and not node.strip() and s.required:
        return None  # a blank required value is a missing one
    return node


def _build(kind: type, values: Values, origin: str) -> Any:
    fields: dict[str, Any] = {}
    for name, part in _layout(kind):
        if isinstance(part, Setting):
            fields[name] = values[part.path]
        elif part is None:
            fields[name] = origin
        else:
            fields[name] = _build(part, values, origin)
    return kind(**fields)
