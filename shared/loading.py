"""Reading a command's settings: from a YAML file and the environment, into its config class.

A ``Catalog`` holds the commands' config classes (shared/config.py) and every setting they
hold, in the documentation's order (sections as they first appear, the top level last):

- a variable wins over the file, and an empty variable counts as unset;
- every setting that is given is checked, whether or not the command uses it (a bad value in
  the shared file stops both processes alike), and so are the rules between settings; a
  setting without a default is required only by the commands whose config holds it;
- a problem is one ConfigError naming the setting (its YAML path and its variable);
- an unknown key in the file is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from shared.errors import ConfigError
from shared.settings import (
    Rule,
    Setting,
    Values,
    declared_rules,
    declared_section,
    declared_setting,
)

C = TypeVar("C")
_ORIGIN = "origin"  # the one field of a command's config that is not a setting: its file


# What a field of a config class is: a setting, a nested section, or the origin.
Part = Setting | type | None


@functools.cache
def _layout(kind: type) -> tuple[tuple[str, Part], ...]:
    if declared_section(kind) is None:
        raise TypeError(f"{kind.__name__} is not declared with section()")
    hints = typing.get_type_hints(kind)
    layout: list[tuple[str, Part]] = []
    for f in dataclasses.fields(kind):
        spec = declared_setting(f)
        hint = hints[f.name]
        held = declared_section(hint) if isinstance(hint, type) else None
        if spec is not None:
            layout.append((f.name, spec))
        elif held is not None:
            if held != f.name:
                raise TypeError(f"{kind.__name__}.{f.name} holds section {held}")
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
    found: list[type] = [k for k in kind.__mro__ if declared_section(k) is not None]
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
                rules.update(dict.fromkeys(declared_rules(cls)))
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
