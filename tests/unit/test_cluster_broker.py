"""broker.url naming a cluster's nodes: the list read, every password hidden, the node order a
process tries, and the quorum queue's arguments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from shared.amqp import classify_broker_error, connect_blocking, nodes_for
from shared.config import ApplierConfig, BrokerConfig, ExtractorConfig, load_config
from shared.errors import ConfigError, SetupError
from shared.nodes import Nodes
from shared.secret import Secret, redact
from shared.topology import topology_for
from tests.support.settings import full_env

NODES = [
    "amqp://cdc:pw-one@rabbit1.example:5672/%2F",
    "amqp://cdc:pw,two@rabbit2.example:5673/%2F",  # a comma in a password stays in its URL
    "amqp://cdc:pw-three@rabbit3.example:5674/%2F",
]
PASSWORDS = ("pw-one", "pw,two", "pw-three")


def _hidden(text: str) -> bool:
    return not any(pw in text for pw in PASSWORDS)


def test_a_comma_separated_list_names_each_node() -> None:
    cfg = load_config(ExtractorConfig, environ=full_env(CDC_BROKER_URL=" , ".join(NODES)))
    assert [u.reveal() for u in cfg.broker.urls] == NODES
    assert cfg.broker.url.reveal() == ",".join(NODES)


def test_a_yaml_list_names_each_node(tmp_path: Path) -> None:
    env = full_env()
    del env["CDC_BROKER_URL"]
    path = tmp_path / "cdc.yaml"
    path.write_text("broker:\n  url:\n" + "".join(f"    - '{u}'\n" for u in NODES))
    cfg = load_config(ApplierConfig, path, environ=env)
    assert [u.reveal() for u in cfg.broker.urls] == NODES


def test_one_url_is_a_list_of_one() -> None:
    cfg = load_config(ExtractorConfig, environ=full_env())
    assert len(cfg.broker.urls) == 1


def test_no_password_of_a_list_is_shown_in_reprs_or_errors() -> None:
    cfg = load_config(ExtractorConfig, environ=full_env(CDC_BROKER_URL=",".join(NODES)))
    assert _hidden(str(cfg.broker.url)), str(cfg.broker.url)
    assert _hidden(repr(cfg.broker)), repr(cfg.broker)
    assert _hidden(repr(cfg))
    assert str(cfg.broker.url).count("***") == 3
    for node in cfg.broker.urls:
        assert _hidden(str(node)) and _hidden(repr(node))
    # the error line a lost connection makes, naming the whole list
    error = classify_broker_error(ConnectionResetError("reset"), str(cfg.broker.url))
    assert "rabbit3.example" in str(error)
    assert _hidden(str(error)), str(error)


def test_a_bad_url_in_a_list_is_named_by_its_place_without_passwords() -> None:
    bad = [*NODES[:2], "http://cdc:pw-three@rabbit3.example/"]
    with pytest.raises(ConfigError) as caught:
        load_config(ExtractorConfig, environ=full_env(CDC_BROKER_URL=",".join(bad)))
    assert "URL 3 of 3" in str(caught.value)
    assert "broker.url" in str(caught.value)
    assert _hidden(str(caught.value)), str(caught.value)


def test_redact_keeps_a_multi_host_url_whole() -> None:
    url = "mariadb+mariadbconnector://app:s3cret@10.0.0.1:3306,10.0.0.2:3306/db"
    assert redact(url) == "mariadb+mariadbconnector://app:***@10.0.0.1:3306,10.0.0.2:3306/db"


# ---------------------------------------------------------------- the node order


def _nodes(n: int) -> Nodes:
    return Nodes(tuple(Secret(f"amqp://u:p@h{i}/") for i in range(n)))


def test_nodes_are_tried_in_order_from_the_one_that_worked() -> None:
    nodes = _nodes(3)
    assert nodes.order() == [0, 1, 2]
    nodes.worked(1)
    assert nodes.order() == [1, 2, 0]


def test_a_lost_node_is_tried_last() -> None:
    nodes = _nodes(3)
    nodes.worked(2)
    nodes.lost(2)
    assert nodes.order() == [0, 1, 2]
    # a loss reported late, for a node no longer first, changes nothing
    nodes.worked(1)
    nodes.lost(2)
    assert nodes.order() == [1, 2, 0]


class _FakeConnection:
    def __init__(self, params: pika.URLParameters) -> None:
        self.params = params


def _fake_blocking(monkeypatch: pytest.MonkeyPatch, fail: dict[str, BaseException]) -> list[str]:
    tried: list[str] = []

    def blocking(params: pika.URLParameters) -> Any:
        tried.append(params.host)
        if params.host in fail:
            raise fail[params.host]
        return _FakeConnection(params)

    monkeypatch.setattr(pika, "BlockingConnection", blocking)
    return tried


def _cluster_cfg(tag: str) -> BrokerConfig:
    # A URL list of its own: nodes_for keeps one order per list and process.
    urls = ",".join(f"amqp://cdc:pw-one@{tag}{i}:5672/%2F" for i in range(3))
    return load_config(ExtractorConfig, environ=full_env(CDC_BROKER_URL=urls)).broker


def test_connect_moves_past_a_dead_node_and_stays_on_the_next(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cluster_cfg("dead")
    tried = _fake_blocking(monkeypatch, {"dead0": pika.exceptions.AMQPConnectionError("refused")})
    with caplog.at_level(logging.WARNING):
        conn, index = connect_blocking(cfg, "test")
    assert (tried, index) == (["dead0", "dead1"], 1)
    assert conn.params.host == "dead1"
    assert "broker_node_unreachable" in caplog.text and _hidden(caplog.text)
    tried.clear()
    connect_blocking(cfg, "test")
    assert tried == ["dead1"]
    nodes_for(cfg.url).lost(1)
    connect_blocking(cfg, "test")
    assert tried == ["dead1", "dead2"]


def test_connect_raises_the_last_failure_when_no_node_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _cluster_cfg("none")
    down = pika.exceptions.AMQPConnectionError("refused")
    tried = _fake_blocking(monkeypatch, {f"none{i}": down for i in range(3)})
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect_blocking(cfg, "test")
    assert tried == ["none0", "none1", "none2"]


def test_a_refused_login_is_not_tried_on_other_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cluster_cfg("auth")
    refused = pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED")
    tried = _fake_blocking(monkeypatch, {"auth0": refused})
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        connect_blocking(cfg, "test")
    assert tried == ["auth0"]
    assert isinstance(classify_broker_error(caught.value, "x"), SetupError)


# ---------------------------------------------------------------- quorum queues


def test_quorum_queue_arguments_for_a_cluster() -> None:
    cfg = load_config(ExtractorConfig, environ=full_env(CDC_BROKER_QUEUE_TYPE="quorum"))
    args = topology_for(cfg.broker, "s").queue_arguments
    assert args["x-queue-type"] == "quorum"
    assert args["x-delivery-limit"] == 1000
    assert args["x-overflow"] == "reject-publish"
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-dead-letter-exchange"] == "cdc.dlx"
    assert args["x-single-active-consumer"] is True


def test_delivery_limit_is_a_setting() -> None:
    env = full_env(CDC_BROKER_QUEUE_TYPE="quorum", CDC_BROKER_DELIVERY_LIMIT="50")
    cfg = load_config(ExtractorConfig, environ=env)
    assert topology_for(cfg.broker, "s").queue_arguments["x-delivery-limit"] == 50


def test_classic_queues_keep_their_arguments() -> None:
    cfg = load_config(ExtractorConfig, environ=full_env())
    args = topology_for(cfg.broker, "s").queue_arguments
    assert not {"x-delivery-limit", "x-overflow", "x-dead-letter-strategy"} & set(args)


def test_the_state_queue_is_replicated_on_a_cluster() -> None:
    cfg = load_config(ExtractorConfig, environ=full_env(CDC_BROKER_QUEUE_TYPE="quorum"))
    args = topology_for(cfg.broker, "s").state_arguments
    assert args["x-queue-type"] == "quorum"
    assert args["x-max-length"] == 1 and args["x-overflow"] == "drop-head"
    classic = topology_for(load_config(ExtractorConfig, environ=full_env()).broker, "s")
    assert classic.state_arguments == {
        "x-queue-type": "classic",
        "x-max-length": 1,
        "x-overflow": "drop-head",
    }
