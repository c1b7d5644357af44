"""The machinery of declared settings (shared/settings.py, shared/loading.py), on a small
catalogue of its own: how a setting is declared, whom it is required by, where its value comes
from, and what a mistake in the declarations does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.loading import Catalog
from shared.settings import Values, flag, items, pairs, section, setting


def _positive(text: str) -> int:
    n = int(text)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


def _names(found: list[str], _path: str) -> tuple[str, ...]:
    return tuple(n.strip() for item in found for n in item.split(",") if n.strip())


def _limits(found: list[tuple[str, str]], _path: str) -> dict[str, int]:
    return {key.strip(): _positive(value) for key, value in found}


def _window_fits(v: Values) -> None:
    if v["pump.window"] > v["pump.most"]:
        raise ConfigError(f"{v.label('pump.window')} is larger than pump.most")


@section("pump", rules=[_window_fits])
class PumpConfig:
    name: str = setting("TOY_PUMP_NAME", str.strip, doc="the pump's name")
    most: int = setting("TOY_PUMP_MOST", _positive, default=10, doc="at most this many")
    window: int = setting("TOY_PUMP_WINDOW", _positive, default=5, doc="this many at a time")
    label: str = setting(
        "TOY_PUMP_LABEL",
        str.strip,
        default_from=("pump.name", lambda name: f"pump-{name}"),
        shown="`pump-<name>`",
        doc="shown name",
    )


@section("sink")
class SinkConfig:
    url: str = setting("TOY_SINK_URL", str.strip, doc="where it goes")
    names: tuple[str, ...] = setting("TOY_SINK_NAMES", items(_names), default=(), doc="names")
    limits: dict[str, int] = setting("TOY_SINK_LIMITS", pairs(_limits), default={}, doc="limits")
    fast: bool = setting("TOY_SINK_FAST", flag(lambda t: t == "yes"), default=False, doc="fast")


@section("")
class PumpCommand:
    verbose: bool = setting("TOY_VERBOSE", flag(lambda t: t == "yes"), default=False, doc="v")
    origin: str = "environment"
    pump: PumpConfig


@section("")
class SinkCommand:
    sink: SinkConfig


TOYS = Catalog(PumpCommand, SinkCommand)


def test_a_setting_is_a_field_of_its_section() -> None:
    cfg = TOYS.load(PumpCommand, environ={"TOY_PUMP_NAME": " p1 ", "TOY_PUMP_MOST": "20"})
    assert cfg == PumpCommand(pump=PumpConfig(name="p1", most=20, label="pump-p1"))
    assert cfg.pump.window == 5  # the declared default, for a loaded config and a built one
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pump.most = 3  # type: ignore[misc]
    assert [s.path for s in TOYS.settings] == [
        "pump.name",
        "pump.most",
        "pump.window",
        "pump.label",
        "sink.url",
        "sink.names",
        "sink.limits",
        "sink.fast",
        "verbose",
    ]


def test_required_only_by_the_commands_that_hold_it() -> None:
    assert TOYS.load(SinkCommand, environ={"TOY_SINK_URL": "u"}).sink.url == "u"
    with pytest.raises(ConfigError, match=r"^pump\.name is required: set TOY_PUMP_NAME or pump"):
        TOYS.load(PumpCommand, environ={"TOY_SINK_URL": "u"})
    # ... but a value given is checked by every command, and so are the rules.
    with pytest.raises(ConfigError, match=r"^pump\.most \(TOY_PUMP_MOST\) must be a positive"):
        TOYS.load(SinkCommand, environ={"TOY_SINK_URL": "u", "TOY_PUMP_MOST": "0"})
    with pytest.raises(ConfigError, match=r"^pump\.window \(TOY_PUMP_WINDOW\) is larger"):
        TOYS.load(SinkCommand, environ={"TOY_SINK_URL": "u", "TOY_PUMP_WINDOW": "11"})


def test_a_default_taken_from_another_setting() -> None:
    env = {"TOY_PUMP_NAME": "p1", "TOY_PUMP_LABEL": "mine"}
    assert TOYS.load(PumpCommand, environ=env).pump.label == "mine"
    assert [s.path for s in TOYS.needs(PumpCommand) if s.required] == ["pump.name"]


def test_the_variable_wins_and_an_empty_one_is_unset(tmp_path: Path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(
        "pump:\n  name: from_file\n  most: 30\n"
        "sink:\n  url: u\n  names: [a, 'b,c']\n  limits: {x: 1}\n  fast: true\n"
        "verbose: yes\n"
    )
    env = {"TOY_PUMP_NAME": "from_env", "TOY_PUMP_MOST": "  "}
    cfg = TOYS.load(PumpCommand, path, env)
    assert (cfg.pump.name, cfg.pump.most, cfg.verbose, cfg.origin) == (
        "from_env",
        30,
        True,
        str(path),
    )
    sink = TOYS.load(SinkCommand, path, {"TOY_SINK_LIMITS": "y=2, z=3"}).sink
    assert sink.names == ("a", "b", "c")
    assert sink.limits == {"y": 2, "z": 3}
    assert sink.fast is True


def test_unknown_keys_and_commands_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text("pump:\n  name: x\n  speed: 3\n")
    with pytest.raises(ConfigError, match=r"^unknown setting pump\.speed in "):
        TOYS.load(PumpCommand, path, {})

    @section("")
    class Other:
        pass

    with pytest.raises(TypeError, match="not a command's config"):
        TOYS.load(Other, environ={})


@section("")
class Misnamed:
    sink2: SinkConfig


@section("other")
class Again:
    url: str = setting("TOY_SINK_URL", str.strip, doc="the same variable")


@section("")
class Holder:
    sink: SinkConfig
    other: Again


def test_mistakes_in_the_declarations_are_found_at_once() -> None:
    with pytest.raises(TypeError, match="holds section sink"):
        Catalog(Misnamed)
    with pytest.raises(
        TypeError, match=r"TOY_SINK_URL is the variable of sink\.url and other\.url"
    ):
        Catalog(Holder)


def test_documentation_of_defaults() -> None:
    shown = {s.path: s.shown_default() for s in TOYS.settings if not s.required}
    assert shown == {
        "pump.most": "10",
        "pump.window": "5",
        "pump.label": "`pump-<name>`",
        "sink.names": "none",
        "sink.limits": "none",
        "sink.fast": "`false`",
        "verbose": "`false`",
    }
