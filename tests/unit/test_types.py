from __future__ import annotations

import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from applier.verify_columns import TEXT, Storage, kind_of
from shared.errors import RowRejected
from shared.types import (
    MAX_JSON_DEPTH,
    PgType,
    column_type,
    comparison,
    converter,
    copied_as_values,
    decimal_for,
    element_delimiter,
    is_builtin,
    parse_type,
)


@pytest.fixture(scope="module")
def dialect() -> Dialect:
    return sa.create_engine("mariadb+mariadbconnector://u:p@localhost/db").dialect


def ddl(dialect: Dialect, type_text: str, is_key: bool = False) -> str:
    return str(dialect.type_compiler_instance.process(column_type(type_text, is_key)))


def convert(type_text: str, value: object) -> object:
    conv = converter(type_text)
    assert conv is not None
    return conv(value)


# ---------------------------------------------------------------- parse_type


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("numeric(12,4)", PgType("numeric", (12, 4), False)),
        ("numeric(12, 4)", PgType("numeric", (12, 4), False)),
        ("numeric", PgType("numeric", (), False)),
        ("character varying(20)", PgType("character varying", (20,), False)),
        ("timestamp(3) with time zone", PgType("timestamp with time zone", (3,), False)),
        ("timestamp with time zone", PgType("timestamp with time zone", (), False)),
        ("timestamp without time zone", PgType("timestamp without time zone", (), False)),
        ("double precision", PgType("double precision", (), False)),
        ("integer[]", PgType("integer", (), True)),
        ("integer[][]", PgType("integer", (), True)),
        ("character varying(20)[]", PgType("character varying", (20,), True)),
        ("time without time zone", PgType("time without time zone", (), False)),
        ("time(2) with time zone", PgType("time with time zone", (2,), False)),
        ("int4", PgType("integer", (), False)),
        ("timestamptz", PgType("timestamp with time zone", (), False)),
        ("  text  ", PgType("text", (), False)),
    ],
)
def test_parse_type(text: str, parsed: PgType) -> None:
    assert parse_type(text) == parsed


def test_time_zone_flag() -> None:
    assert parse_type("timestamp(3) with time zone").with_time_zone
    assert parse_type("time with time zone").with_time_zone
    assert not parse_type("timestamp without time zone").with_time_zone
    assert not parse_type("text").with_time_zone


# ---------------------------------------------------------------- column_type


@pytest.mark.parametrize(
    ("pg", "maria"),
    [
        ("smallint", "SMALLINT"),
        ("integer", "INTEGER"),
        ("bigint", "BIGINT"),
        ("oid", "INTEGER UNSIGNED"),
        ("real", "DOUBLE"),  # exact for the float4's decimal text (whole-row matches)
        ("time with time zone", "VARCHAR(32)"),
        ("double precision", "DOUBLE"),
        ("numeric(12,4)", "DECIMAL(12, 4)"),
        ("numeric(65,30)", "DECIMAL(65, 30)"),
        ("numeric(10)", "DECIMAL(10, 0)"),
        ("numeric", "DECIMAL(65, 30)"),
        ("numeric(70,2)", "DECIMAL(65, 30)"),
        ("numeric(2,5)", "DECIMAL(5, 5)"),  # scale above precision: MariaDB wants M >= D
        ("numeric(3,-2)", "DECIMAL(5, 0)"),  # negative scale: rounded to hundreds
        ("numeric(40,35)", "DECIMAL(65, 30)"),
        ("numeric(64,-2)", "DECIMAL(65, 30)"),
        ("interval", "LONGTEXT"),
        ("inet", "LONGTEXT"),
        ("cidr", "LONGTEXT"),
        ("mood", "LONGTEXT"),  # an enum, as wal2json names it
        # money prints with the server's currency format ("$1,234.50"): kept as text.
        ("money", "LONGTEXT"),
        ("boolean", "BOOL"),
        ("date", "DATE"),
        ("timestamp with time zone", "DATETIME(6)"),
        ("timestamp(3) with time zone", "DATETIME(3)"),
        ("timestamp without time zone", "DATETIME(6)"),
        ("time without time zone", "TIME(6)"),
        ("bytea", "LONGBLOB"),
        ("text", "LONGTEXT"),
        ("character varying(20)", "VARCHAR(20)"),
        ("character varying(5000)", "LONGTEXT"),
        ("character varying", "LONGTEXT"),
        ("character(3)", "VARCHAR(3)"),
        ("json", "JSON"),
        ("jsonb", "JSON"),
        ("uuid", "CHAR(36)"),
        ("integer[]", "JSON"),
        ("text[]", "JSON"),
        ('"Mood"', "LONGTEXT"),
    ],
)
def test_column_type(dialect: Dialect, pg: str, maria: str) -> None:
    assert ddl(dialect, pg) == maria


@pytest.mark.parametrize(
    ("pg", "maria"),
    [
        ("integer", "INTEGER"),
        ("bytea", "VARBINARY(255)"),
        ("text", "VARCHAR(255)"),
        ("character varying", "VARCHAR(255)"),
        ("character varying(20)", "VARCHAR(20)"),
        ("uuid", "CHAR(36)"),
        ("numeric(12,4)", "DECIMAL(12, 4)"),
        ("timestamp with time zone", "DATETIME(6)"),
        ("text[]", "VARCHAR(255)"),
        ('"Mood"', "VARCHAR(255)"),
    ],
)
def test_key_column_type(dialect: Dialect, pg: str, maria: str) -> None:
    assert ddl(dialect, pg, is_key=True) == maria


# ---------------------------------------------------------------- converter: scalars


def test_types_bound_as_they_are() -> None:
    for type_text in (
        "integer",
        "text",
        "uuid",
        # Out of MariaDB's range (infinity, BC, after 9999) MariaDB refuses them itself,
        # naming value and column ("Incorrect date value: 'infinity' for column ...").
        "date",
        "timestamp without time zone",
        "timestamp(3) without time zone",
        "interval",
        "inet",
        "cidr",
        '"Mood"',
        "time without time zone",
        "time with time zone",
        "character(4)",
    ):
        assert converter(type_text) is None


@pytest.mark.parametrize(
    ("args", "decimal"),
    [
        ((), None),
        ((12, 4), (12, 4)),
        ((10,), (10, 0)),
        ((65, 30), (65, 30)),
        ((66, 0), None),
        ((40, 31), None),
        ((2, 5), (5, 5)),
        ((30, 30), (30, 30)),
        ((3, -2), (5, 0)),
        ((60, -5), (65, 0)),
        ((61, -5), None),
    ],
)
def test_decimal_for(args: tuple[int, ...], decimal: tuple[int, int] | None) -> None:
    assert decimal_for(args) == decimal


@pytest.mark.parametrize(
    ("type_text", "value"),
    [("numeric(2,5)", "0.00012"), ("numeric(3,-2)", "-99900"), ("numeric(3,-2)", 12300)],
)
def test_numeric_with_unusual_scale_is_bound_exactly(type_text: str, value: object) -> None:
    assert convert(type_text, value) == str(value)


@pytest.mark.parametrize("type_text", ["numeric(12,4)", "real", "double precision"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-1.5e-300", "-1.50"])
def test_numbers_as_strings_are_bound_as_they_are(type_text: str, value: str) -> None:
    # wal2json 2.6+ (numeric-data-types-as-string) sends text. NaN and ±Infinity are left to
    # MariaDB, which refuses them ("Incorrect double value: 'NaN' for column ..."), so that a
    # parked message can be replayed once the target column is made text.
    assert convert(type_text, value) == value


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_unconstrained_numeric_nan_and_infinity_are_rejected(value: str) -> None:
    with pytest.raises(RowRejected, match=f"numeric '{value}' has no exact DECIMAL equivalent"):
        convert("numeric", value)


@pytest.mark.parametrize("type_text", ["numeric(12,4)", "numeric", "real", "double precision"])
def test_numbers_are_always_bound_as_text(type_text: str) -> None:
    # One executemany must bind one type all down a column: 10 and "10.25" both as text.
    assert convert(type_text, 10) == "10"
    assert convert(type_text, "10.25") == "10.25"
    assert convert(type_text, None) is None


@pytest.mark.parametrize(
    "value",
    [
        "1" * 36,  # 36 digits before the point: DECIMAL(65,30) holds 35
        "0." + "1" * 31,  # 31 after: MariaDB would round it silently
        "-" + "9" * 36 + ".5",
    ],
)
def test_unconstrained_numeric_that_does_not_fit_is_rejected(value: str) -> None:
    with pytest.raises(RowRejected):
        convert("numeric", value)


@pytest.mark.parametrize(
    "value",
    [
        "1" * 35,
        "0." + "1" * 30,
        "-" + "9" * 35 + "." + "9" * 30,
        "1.50000000000000000000000000000000000",
    ],
)
def test_unconstrained_numeric_that_fits_passes_exactly(value: str) -> None:
    assert convert("numeric", value) == value


def test_timestamptz_utc_fast_path() -> None:
    assert convert("timestamp with time zone", "2024-02-29 01:34:56.123456+00") == (
        "2024-02-29 01:34:56.123456"
    )
    assert convert("timestamp(3) with time zone", "2024-02-29 01:34:56.123+00") == (
        "2024-02-29 01:34:56.123"
    )
    assert convert("timestamp with time zone", None) is None


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2024-02-29 07:04:56.123456+05:30", "2024-02-29 01:34:56.123456"),
        ("2024-02-29 07:04:56+05", "2024-02-29 02:04:56"),
        ("2024-01-01 00:30:00-03", "2024-01-01 03:30:00"),
        ("2024-03-01 00:15:00.5+01:00", "2024-02-29 23:15:00.500000"),
        ("1900-01-01 00:00:00+00:19:32", "1899-12-31 23:40:28"),
    ],
)
def test_timestamptz_other_offsets_move_to_utc(value: str, utc: str) -> None:
    assert convert("timestamp with time zone", value) == utc


@pytest.mark.parametrize(
    "value",
    ["infinity", "-infinity", "2024-02-29 01:34:56+00 BC", "0001-12-31 23:30:00+00 BC", "junk"],
)
def test_timestamptz_without_datetime_equivalent(value: str) -> None:
    with pytest.raises(RowRejected, match="has no MariaDB DATETIME equivalent"):
        convert("timestamp with time zone", value)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01 00:00:00+00",
        "9999-12-31 23:59:59.999999+00",
        "2024-02-29 00:00:00+00",
        # After 9999 in UTC: MariaDB refuses it ("Incorrect datetime value"), naming the column.
        "10000-01-01 00:30:00+00",
    ],
)
def test_timestamptz_in_utc_loses_only_its_offset(value: str) -> None:
    assert convert("timestamp with time zone", value) == value[:-3]


# ---------------------------------------------------------------- converter: json


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("type_text", ["json", "jsonb"])
@pytest.mark.parametrize(
    "doc",
    [
        "null",
        '"just a string"',
        '  {"a": 1, "a": 2}  ',
        '{"k": "\\u00e9 \\ud83c\\udf89", "n": 1.50, "e": 1e400}',
        nested(MAX_JSON_DEPTH),
        '{"a":' * (MAX_JSON_DEPTH - 1) + "{}" + "}" * (MAX_JSON_DEPTH - 1),
        # Brackets inside strings do not nest, escaped quotes do not end a string.
        nested(MAX_JSON_DEPTH - 1, '"[[[[\\"[[[[", "{{{{"'),
        "[" + ",".join(["[1]"] * 100) + "]",  # many brackets, shallow
        '"\\\\ud800"',  # an escaped backslash, then plain letters: no surrogate
        '"\\uD83C\\uDF89"',  # a pair, upper case
        '"\\ud800',  # not JSON at all: not for the applier to judge
    ],
)
def test_json_that_mariadb_holds_passes_silently(
    type_text: str, doc: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert convert(type_text, doc) == doc
    assert not caplog.records


@pytest.mark.parametrize("type_text", ["json", "jsonb"])
@pytest.mark.parametrize(
    ("doc", "depth"),
    [
        (nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH + 1),
        ("[" * 40 + "]" * 40, 40),
        ('{"a":' * 32 + "{}" + "}" * 32, 33),
        ('[{"a": ' + nested(31) + "}]", 33),
        ("[" * 5000 + "]" * 5000, 5000),
    ],
)
def test_json_deeper_than_mariadb_holds_is_bound_with_a_warning(
    type_text: str, doc: str, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Bound as it is: a JSON column refuses it ("CONSTRAINT ... failed", dead-letter queue),
    # a LONGTEXT column (after ALTER TABLE, then dlq replay) holds it. The log says why.
    assert convert(type_text, doc) == doc
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"json_refused_by_mariadb reason=nested depth={depth} limit={MAX_JSON_DEPTH}"
    ]
    assert all(r.levelname == "WARNING" for r in caplog.records)


@pytest.mark.parametrize(
    "doc",
    ['"\\ud800"', '["\\udc00"]', '{"k": "x\\ud800y"}', '{"\\udbff": 1}', '"\\udc00\\ud800"'],
)
def test_json_with_a_lone_surrogate_is_bound_with_a_warning(
    doc: str, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL's json (not jsonb) keeps such an escape; MariaDB's JSON_VALID refuses it.
    assert convert("json", doc) == doc
    assert len(caplog.records) == 1
    assert "json_refused_by_mariadb reason=unpaired_surrogate_escape" in caplog.text


def test_json_null_is_null() -> None:
    assert convert("json", None) is None
    assert convert("jsonb", None) is None


@pytest.mark.parametrize("value", ["9999-12-31 23:30:00-01:00", "0001-01-01 00:30:00+01"])
def test_timestamptz_out_of_range_after_utc_is_rejected(value: str) -> None:
    # Moved to UTC these fall after 9999-12-31 / before 0001-01-01: no DATETIME holds them,
    # which is a RowRejected (permanent) like any other such value, not a crash.
    with pytest.raises(RowRejected):
        convert("timestamp with time zone", value)


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        ("00ff10", b"\x00\xff\x10"),
        ("\\x00ff10", b"\x00\xff\x10"),
        ("", b""),
        ("\\x", b""),
        ("0000", b"\x00\x00"),
        ("DEADbeef", b"\xde\xad\xbe\xef"),
        (None, None),
    ],
)
def test_bytea_from_hex(value: str | None, raw: bytes | None) -> None:
    assert convert("bytea", value) == raw


@pytest.mark.parametrize("value", ["zz", "abc", "\\xg0"])
def test_bytea_not_hex(value: str) -> None:
    with pytest.raises(RowRejected):
        convert("bytea", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("t", True),
        ("true", True),
        ("f", False),
        ("false", False),
        (None, None),
    ],
)
def test_boolean(value: object, expected: bool | None) -> None:
    assert convert("boolean", value) is expected


# ---------------------------------------------------------------- converter: arrays


@pytest.mark.parametrize(
    ("type_text", "literal", "as_json"),
    [
        ("integer[]", "{1,2,3}", "[1,2,3]"),
        ("integer[]", "{1,NULL,-3}", "[1,null,-3]"),
        ("bigint[]", "{9223372036854775807}", "[9223372036854775807]"),
        ("integer[]", "{{1,2},{3,4}}", "[[1,2],[3,4]]"),
        ("integer[]", "{}", "[]"),
        ("boolean[]", "{t,f,NULL}", "[true,false,null]"),
        ("text[]", "{}", "[]"),
        ("text[]", "{plain,NULL}", '["plain",null]'),
        ("text[]", '{"a b","NULL",""}', '["a b","NULL",""]'),
        ("text[]", '{"q\\"x","back\\\\slash"}', '["q\\"x","back\\\\slash"]'),
        ("text[]", '{"a,b","{c}"}', '["a,b","{c}"]'),
        ("text[]", '{{a,"b c"},{NULL,d}}', '[["a","b c"],[null,"d"]]'),
        ("text[]", '{é,"🎉"}', '["é","🎉"]'),
        ("character varying(20)[]", "{x,y}", '["x","y"]'),
    ],
)
def test_array_to_json(type_text: str, literal: str, as_json: str) -> None:
    out = convert(type_text, literal)
    assert out == as_json
    assert isinstance(out, str)
    json.loads(out)


def test_array_null_is_null() -> None:
    assert convert("integer[]", None) is None


def test_text_array_values_survive_json() -> None:
    out = convert("text[]", '{"q\\"x","back\\\\slash",NULL,"NULL"}')
    assert isinstance(out, str)
    assert json.loads(out) == ['q"x', "back\\slash", None, "NULL"]


def test_numeric_array_keeps_exact_digits() -> None:
    out = convert(
        "numeric[]",
        "{1.10,-0.000000000000000000001,1234567890123456789012345678901234567890.12345,NULL}",
    )
    assert out == (
        "[1.10,-0.000000000000000000001,1234567890123456789012345678901234567890.12345,null]"
    )
    assert isinstance(out, str)
    assert json.loads(out, parse_float=Decimal)[2] == Decimal(
        "1234567890123456789012345678901234567890.12345"
    )


def test_float_array_specials_become_strings() -> None:
    out = convert("double precision[]", "{Infinity,-Infinity,NaN,1e+300,1.5}")
    assert out == '["Infinity","-Infinity","NaN",1e+300,1.5]'


@pytest.mark.parametrize(
    "literal", ["[0:1]={1,2}", "[-3:-2]={1,2}", "[0:1][1:2]={{1,2},{3,4}}", "[2:2]={x}"]
)
def test_array_with_other_lower_bounds_is_rejected(literal: str) -> None:
    # A JSON array starts at its first element: carrying [0:1]={1,2} as [1,2] would change
    # every subscript without a word.
    with pytest.raises(RowRejected, match="lower bounds other than 1"):
        convert("integer[]", literal)


@pytest.mark.parametrize("literal", ["1,2", "{1,2", "[0:1]=1,2"])
def test_bad_array_literal(literal: str) -> None:
    with pytest.raises(RowRejected):
        convert("integer[]", literal)


@pytest.mark.parametrize("literal", ['{"abc', '{"a\\'])
def test_unterminated_quoted_array_element(literal: str) -> None:
    # "{1,2" is a RowRejected("unterminated array literal"); a quote left open must be too.
    with pytest.raises(RowRejected):
        convert("text[]", literal)


# ---------------------------------------------------------------- other delimiters, base types


@pytest.mark.parametrize(
    ("literal", "as_json"),
    [
        ("{}", "[]"),
        ("{NULL}", "[null]"),
        ("{(1,1),(0,0)}", '["(1,1),(0,0)"]'),
        ("{(1,1),(0,0);NULL;(2.5,2),(-1,-1e-300)}", '["(1,1),(0,0)",null,"(2.5,2),(-1,-1e-300)"]'),
        (
            "{{(1,1),(0,0);(2,2),(1,1)};{(3,3),(2,2);NULL}}",
            '[["(1,1),(0,0)","(2,2),(1,1)"],["(3,3),(2,2)",null]]',
        ),
    ],
)
def test_box_arrays_are_split_on_semicolons(literal: str, as_json: str) -> None:
    """box's text has commas of its own: PostgreSQL separates box[] elements with ';'."""
    assert convert("box[]", literal) == as_json


def test_other_geometric_arrays_are_split_on_commas() -> None:
    assert convert("point[]", '{"(1,2)",NULL}') == '["(1,2)",null]'
    assert convert("line[]", '{"{1,2,3}"}') == '["{1,2,3}"]'


def test_array_elements_keep_white_space_postgresql_does_not_quote() -> None:
    """PostgreSQL quotes an element with ASCII white space around it, and no other: a leading
    U+00A0 or U+3000 is the element's own."""
    literal = "{\u00a0nbsp\u00a0,\u3000ideographic\u2003,\u200b}"
    assert json.loads(str(convert("text[]", literal))) == [
        "\u00a0nbsp\u00a0",
        "\u3000ideographic\u2003",
        "\u200b",
    ]


@pytest.mark.parametrize(
    ("pg", "maria", "key"),
    [
        # What domains arrive as (extractor/basetypes.py): their base types, typmod included.
        ("numeric(10,3)", "DECIMAL(10, 3)", "DECIMAL(10, 3)"),
        ("bigint", "BIGINT", "BIGINT"),
        ("numeric(10,3)[]", "JSON", "VARCHAR(255)"),
        ("timestamp(3) with time zone", "DATETIME(3)", "DATETIME(3)"),
        # An array of a type with its own delimiter arrives under its array type's name.
        ("_geometry", "LONGTEXT", "VARCHAR(255)"),
        ('public."_My Type"', "LONGTEXT", "VARCHAR(255)"),
        # Enums and the one-byte "char" are text.
        ('"Mood"', "LONGTEXT", "VARCHAR(255)"),
        ("mood[]", "JSON", "VARCHAR(255)"),
        ('"char"', "LONGTEXT", "VARCHAR(255)"),
        ("box[]", "JSON", "VARCHAR(255)"),
    ],
)
def test_types_the_extractor_resolves(dialect: Dialect, pg: str, maria: str, key: str) -> None:
    assert ddl(dialect, pg) == maria
    assert ddl(dialect, pg, is_key=True) == key


def test_an_array_under_its_array_type_name_is_bound_as_text() -> None:
    assert converter("_geometry") is None
    assert converter('"Mood"') is None


# ---------------------------------------------------------------- built-in names


@pytest.mark.parametrize(
    "printed",
    [
        "double precision",
        "character varying(20)[]",
        "character(1)",
        "bit varying(5)",
        "time(2) with time zone",
        "timestamp(0) without time zone",
        "interval day to second(3)",
        "interval year to month",
        "interval(2)",
        "numeric(5,-2)",
    ],
)
def test_built_in_spellings(printed: str) -> None:
    assert is_builtin(printed)


@pytest.mark.parametrize(
    "printed",
    ["price", "char", "Mood", '"Other S"."My Dom"', "public.text", "texts", "user", "mood[]"],
)
def test_names_that_need_the_catalog(printed: str) -> None:
    """Anything else, "char" included: wal2json writes the one-byte "char" as char."""
    assert not is_builtin(printed)


# ---------------------------------------------------------------- the registry, one rule per type


# Every built-in type the registry names, as format_type prints it, with a typmod where the
# column depends on it.
_KNOWN = [
    "smallint", "integer", "bigint", "oid", "real", "double precision", "numeric",
    "numeric(12,4)", "numeric(70,2)", "boolean", "date", "timestamp without time zone",
    "timestamp(3) with time zone", "time(2) without time zone", "time with time zone", "bytea",
    "text", "character varying", "character varying(20)", "character(3)", "bpchar", "json",
    "jsonb", "uuid", "interval", "inet", "money", "box", "integer[]", "box[]", '"Mood"',
    "_geometry",
]  # fmt: skip


def _data_type(dialect: Dialect, type_text: str, is_key: bool) -> str:
    """information_schema's DATA_TYPE of the column the applier makes (a JSON column: json)."""
    compiled = ddl(dialect, type_text, is_key).split("(")[0].split()[0].lower()
    return {"integer": "int", "bool": "tinyint"}.get(compiled, compiled)


@pytest.mark.parametrize("type_text", _KNOWN)
@pytest.mark.parametrize("is_key", [False, True])
def test_verify_compares_every_column_the_applier_makes(
    dialect: Dialect, type_text: str, is_key: bool
) -> None:
    """The column a type gets and the storage its comparison expects are one rule: as the type
    itself where the registry compares it so, else as PostgreSQL's text; never nothing."""
    compared = comparison(type_text)
    storage = Storage(_data_type(dialect, type_text, is_key), None)
    kind = kind_of(type_text, storage)
    if compared.storage and not (is_key and "[]" in type_text):
        assert kind == type_text, storage
    else:
        assert kind == TEXT, storage


@pytest.mark.parametrize(
    ("type_text", "compared"),
    [
        ("smallint", "integer"),
        ("oid", "integer"),
        ("numeric(12,4)", "numeric"),
        ("real", "float"),
        ("double precision", "float"),
        ("boolean", "boolean"),
        ("bytea", "bytea"),
        ("date", "date"),
        ("timestamp(3) without time zone", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
        ("time without time zone", "time"),
        ("text", "text"),
        ("character varying(20)", "text"),
        # PostgreSQL's text as printed: char(n) with its padding, true as t.
        ("character(3)", "printed"),
        ("time with time zone", "printed"),
        ("interval day to second(3)", "printed"),
        ("jsonb", "printed"),
        ('"Mood"', "printed"),
        ("_geometry", "printed"),  # an array under its array type's name: its text
        ("integer[]", "array"),
        ('"Mood"[]', "array"),
        ("box[]", "array"),
    ],
)
def test_each_type_has_one_comparison(type_text: str, compared: str) -> None:
    assert comparison(type_text).name == compared


def test_a_copy_reads_as_values_only_the_types_that_travel_as_ints_and_bools() -> None:
    # As format_type names them: the copier asks the catalog for every other type's OID.
    assert copied_as_values() == ["smallint", "integer", "bigint", "oid", "boolean"]


def test_element_delimiters() -> None:
    assert element_delimiter("box") == ";"
    assert element_delimiter("point") == ","
    assert element_delimiter("int4") == ","


def test_a_quoted_name_is_never_another_spelling_of_a_built_in_type() -> None:
    # format_type quotes the one-byte "char" because it is not character(1).
    assert parse_type('"char"') == PgType("char", (), False)
    assert parse_type("char") == PgType("character", (), False)
    assert parse_type("interval year to month") == PgType("interval", (), False)
