from __future__ import annotations

import pytest

from extractor.wal2json import wal2json_add_tables
from shared.errors import ConfigError, DecodeError
from shared.lsn import format_lsn, parse_lsn
from shared.secret import Secret, redact
from shared.tables import TableRef, parse_table_list

# ---------------------------------------------------------------- redact / Secret


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://rep:s3cret@pg:5432/app", "postgresql://rep:***@pg:5432/app"),
        ("amqp://guest:s3cret@rabbit:5672/%2F", "amqp://guest:***@rabbit:5672/%2F"),
        (
            "mariadb+mariadbconnector://app:s3cret@[::1]:3306/db",
            "mariadb+mariadbconnector://app:***@[::1]:3306/db",
        ),
        # a percent-encoded @ in the password, and a password with a colon in it
        ("postgresql://rep:p%40ss@pg/app", "postgresql://rep:***@pg/app"),
        ("postgresql://rep:a:b@pg/app", "postgresql://rep:***@pg/app"),
        # the password in the query string
        (
            "postgresql://pg/app?user=rep&password=s3cret&sslmode=require",
            "postgresql://pg/app?user=rep&password=***&sslmode=require",
        ),
        # nothing to hide
        ("amqp://guest@rabbit/", "amqp://guest@rabbit/"),
        ("postgresql://pg/app", "postgresql://pg/app"),
    ],
)
def test_redact_urls(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "host=pg dbname=app user=rep password=s3cret",
            "host=pg dbname=app user=rep password=***",
        ),
        ("password=s3cret host=pg", "password=*** host=pg"),
        ("host=pg PASSWORD = s3cret dbname=app", "host=pg PASSWORD = *** dbname=app"),
        ("host=pg password='s3 cr\\'et' dbname=app", "host=pg password=*** dbname=app"),
        ("host=pg dbname=app", "host=pg dbname=app"),
    ],
)
def test_redact_keyword_dsns(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


def test_secret_hides_and_reveals() -> None:
    secret = Secret("postgresql://rep:s3cret@pg/app")
    assert "s3cret" not in str(secret)
    assert "s3cret" not in repr(secret)
    assert "s3cret" not in f"{secret}"
    assert secret.reveal() == "postgresql://rep:s3cret@pg/app"
    assert secret == Secret("postgresql://rep:s3cret@pg/app")
    assert secret != Secret("postgresql://rep:other@pg/app")
    assert hash(secret) == hash(Secret("postgresql://rep:s3cret@pg/app"))


# ---------------------------------------------------------------- parse_table_list


def test_unqualified_names_are_in_public() -> None:
    assert parse_table_list("orders, lines") == (
        TableRef("public", "orders"),
        TableRef("public", "lines"),
    )


def test_unquoted_names_fold_to_lower_case() -> None:
    assert parse_table_list("Sales.Orders") == (TableRef("sales", "orders"),)


def test_quoted_names_keep_case_dots_and_commas() -> None:
    assert parse_table_list('"My.Schema"."Tab,le", "Mixed Case".items, "Orders"') == (
        TableRef("My.Schema", "Tab,le"),
        TableRef("Mixed Case", "items"),
        TableRef("public", "Orders"),
    )


def test_doubled_quote_inside_quoted_name() -> None:
    assert parse_table_list('"a""b".c') == (TableRef('a"b', "c"),)


def test_whitespace_around_names_and_empty_items() -> None:
    assert parse_table_list(' "X" . "Y" ,, sales . orders , ') == (
        TableRef("X", "Y"),
        TableRef("sales", "orders"),
    )
    assert parse_table_list("") == ()
    assert parse_table_list(" , ") == ()


def test_duplicates_removed_keeping_first_order() -> None:
    assert parse_table_list("lines, ORDERS, public.orders, Public.Orders, lines") == (
        TableRef("public", "lines"),
        TableRef("public", "orders"),
    )


def test_quoted_and_unquoted_differ_by_case() -> None:
    assert parse_table_list('orders, "Orders"') == (
        TableRef("public", "orders"),
        TableRef("public", "Orders"),
    )


@pytest.mark.parametrize("text", ["a.b.c", "a.", ".b", '"abc', 'a."', '"x"y', "a,,b.c.d"])
def test_bad_table_lists(text: str) -> None:
    with pytest.raises(ConfigError, match=r"source\.tables"):
        parse_table_list(text)


@pytest.mark.parametrize("text", ['""', '"a".""'])
def test_empty_quoted_name_is_rejected(text: str) -> None:
    # An unquoted empty name is an error ("a."); a quoted one must be too (PostgreSQL:
    # "zero-length delimited identifier").
    with pytest.raises(ConfigError, match=r"source\.tables"):
        parse_table_list(text)


def test_error_names_the_given_setting() -> None:
    with pytest.raises(ConfigError, match=r"my\.setting"):
        parse_table_list("a.b.c", setting="my.setting")


def test_table_ref_shows_as_postgresql_would_read_it() -> None:
    assert str(TableRef("public", "orders")) == "public.orders"
    assert str(TableRef("Mixed Case", "items")) == '"Mixed Case".items'
    assert str(TableRef('a"b', "Orders")) == '"a""b"."Orders"'
    for ref in (TableRef("Mixed Case", "it.ems"), TableRef('a"b', "x,y"), TableRef("s", "t")):
        assert parse_table_list(str(ref)) == (ref,)


# ---------------------------------------------------------------- wal2json add-tables


def test_wal2json_add_tables_plain() -> None:
    refs = (TableRef("public", "orders"), TableRef("sales", "lines"))
    assert wal2json_add_tables(refs) == "public.orders,sales.lines"
    assert wal2json_add_tables(()) == ""


@pytest.mark.parametrize(
    ("ref", "option"),
    [
        (TableRef("public", "a,b"), "public.a\\,b"),
        (TableRef("my.schema", "t"), "my\\.schema.t"),
        (TableRef("public", "star*"), "public.star\\*"),
        (TableRef("Mixed Case", "t"), "Mixed\\ Case.t"),
        (TableRef("public", "back\\slash"), "public.back\\\\slash"),
        (TableRef("my schema", "a,b.c*d\\e"), "my\\ schema.a\\,b\\.c\\*d\\\\e"),
    ],
)
def test_wal2json_add_tables_escapes(ref: TableRef, option: str) -> None:
    assert wal2json_add_tables((ref,)) == option


# ---------------------------------------------------------------- LSNs


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/1", 1),
        ("1/0", 1 << 32),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text
    assert parse_lsn(format_lsn(value)) == value


def test_lsn_lower_case_hex_is_read() -> None:
    assert parse_lsn("16/b374d848") == parse_lsn("16/B374D848")
    assert format_lsn(parse_lsn("16/b374d848")) == "16/B374D848"


def test_lsn_order_is_integer_order() -> None:
    texts = ["0/FFFFFFFF", "1/0", "0/10", "16/B374D848", "0/2"]
    assert sorted(texts, key=parse_lsn) == ["0/2", "0/10", "0/FFFFFFFF", "1/0", "16/B374D848"]


@pytest.mark.parametrize(
    "text", ["", "/", "16", "16/", "/B374D848", "G/1", "1/XYZ", "1/2/3", "a b"]
)
def test_bad_lsn(text: str) -> None:
    with pytest.raises(DecodeError, match="not an LSN"):
        parse_lsn(text)


@pytest.mark.parametrize("text", ["-1/0", "0/100000000", "100000000/0"])
def test_lsn_halves_out_of_range(text: str) -> None:
    # Each half of an LSN is an unsigned 32-bit number: these are not LSNs. Read leniently,
    # "0/100000000" would be the same position as "1/0", and "-1/0" a negative one.
    with pytest.raises(DecodeError, match="not an LSN"):
        parse_lsn(text)
