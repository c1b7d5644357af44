"""target.url naming a Galera cluster's nodes: the hosts read from the URL, every password
hidden, and the tables Galera cannot replicate refused."""

from __future__ import annotations

import pytest

from applier.refusal import TargetFacts, refusal
from shared.config import ApplierConfig, load_config
from shared.errors import ConfigError
from shared.naming import TargetRef
from shared.parsers import target_hosts
from shared.tables import TableRef
from tests.support.settings import full_env

GALERA = "mariadb+mariadbconnector://app:maria-s3cret@10.0.0.1:3306,10.0.0.2:3307,db3/shop?x=1"


def test_each_host_of_a_multi_host_url() -> None:
    assert target_hosts(GALERA) == [
        "mariadb+mariadbconnector://app:maria-s3cret@10.0.0.1:3306/shop?x=1",
        "mariadb+mariadbconnector://app:maria-s3cret@10.0.0.2:3307/shop?x=1",
        "mariadb+mariadbconnector://app:maria-s3cret@db3/shop?x=1",
    ]


def test_a_url_of_one_host_is_itself() -> None:
    url = "mariadb+mariadbconnector://app:p@w@h:3306/db"
    assert target_hosts(url) == [url]


def test_config_reads_the_hosts_and_hides_the_password() -> None:
    cfg = load_config(ApplierConfig, environ=full_env(CDC_TARGET_URL=GALERA))
    assert [u.reveal() for u in cfg.target.urls] == target_hosts(GALERA)
    for shown in (str(cfg.target.url), repr(cfg.target), *map(str, cfg.target.urls)):
        assert "maria-s3cret" not in shown
    assert "10.0.0.1:3306,10.0.0.2:3307,db3" in str(cfg.target.url)


@pytest.mark.parametrize(
    "url",
    [
        "mariadb+mariadbconnector://app:maria-s3cret@h1:3306,,h3:3306/shop",
        "mariadb+mariadbconnector://app:maria-s3cret@h1:3306,h2:port/shop",
    ],
)
def test_a_bad_host_list_names_the_setting_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"target\.url") as caught:
        load_config(ApplierConfig, environ=full_env(CDC_TARGET_URL=url))
    assert "maria-s3cret" not in str(caught.value)


T = TargetRef(None, "t")
A = TableRef("public", "t")


def test_galera_refuses_a_source_table_without_a_key() -> None:
    found = refusal(T, [A], [], TargetFacts(A, None), galera=True)
    assert found is not None and found.reason == "galera_needs_key"
    assert "fix: add a primary key to public.t" in found.text


def test_galera_takes_a_table_with_a_key_and_a_single_server_a_keyless_one() -> None:
    assert refusal(T, [A], ["id"], TargetFacts(A, {"PRIMARY": ("id",)}), galera=True) is None
    assert refusal(T, [A], [], TargetFacts(A, {}), galera=False) is None
