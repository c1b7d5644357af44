"""``python -m applier verify``: an exact copy passes on checksums alone; rows changed, deleted
or added behind the pipeline's back are found and named, with exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from devstack.stack import APP_USER
from harness.pipeline import ROOT, Pipeline
from shared.naming import Naming
from shared.tables import TableRef

TABLES = (
    # Every kind of canonical text the checksums use, several chunks of a numeric key.
    """CREATE TABLE mixed (
        id bigint PRIMARY KEY, n numeric(12,2), w numeric, t text, c char(4), b boolean,
        ts timestamp, tz timestamptz, d date, tm time, by bytea, j jsonb, js json, u uuid,
        a int[], iv interval, r real, f double precision)""",
    "CREATE TABLE texts (k text PRIMARY KEY, v int)",
    "CREATE TABLE pairs (a int, b varchar(10), v text, PRIMARY KEY (a, b))",
    "CREATE TABLE nokey (v int, w text)",
)
ROWS = (
    """INSERT INTO mixed SELECT g, g * 1.25, g / 7.0, 'row ' || g || ' ''quoted'' ü 🙂', 'ab',
        g % 2 = 0, '2024-02-29 07:04:56.123456'::timestamp + g * interval '1 hour',
        '2024-02-29 07:04:56.5+05:30'::timestamptz + g * interval '1 minute',
        date '0999-01-01' + g, time '23:59:59.999999' - g * interval '1 second',
        decode(lpad(to_hex(g), 8, '0'), 'hex'), jsonb_build_object('g', g, 'x', 'y'),
        '{"b": 1,  "a": [1.50, 2]}', md5(g::text)::uuid, ARRAY[g, g + 1],
        make_interval(months => g, secs => g / 3.0), g / 3.0, g * 1e-7
        FROM generate_series(1, 40) g""",
    "INSERT INTO mixed (id) VALUES (41)",  # every column NULL but the key
    """INSERT INTO texts SELECT k, ord FROM unnest(ARRAY['a', 'B', 'b', 'é', 'Z', 'aa', '',
        ' x', 'ä', '中', 'zz', 'A1', 'a1', 'ß', 'ss']) WITH ORDINALITY AS u(k, ord)""",
    "INSERT INTO pairs SELECT g % 4, 'k' || g, 'v' || g FROM generate_series(1, 30) g",
    "INSERT INTO nokey SELECT g % 3, 'w' FROM generate_series(1, 9) g",
)


def verify(pipeline: Pipeline, *args: str, **env: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "applier", "verify", "--chunk-rows", "7", *args],
        env={**pipeline.env, **env}, cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def by_table(stdout: str) -> dict[str, dict[str, Any]]:
    docs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {str(d["source"]): d for d in docs}


def test_verify_passes_an_exact_copy_and_names_the_rows_changed_behind_its_back(
    pipeline: Pipeline,
) -> None:
    pipeline.sql(*TABLES)
    pipeline.start_pipeline()
    pipeline.sql(*ROWS)
    pipeline.wait_converged(["mixed", "texts", "pairs", "nokey"])

    code, out, err = verify(pipeline, "--json")
    assert code == 0, out + err
    results = by_table(out)
    assert set(results) == {"public.mixed", "public.texts", "public.pairs", "public.nokey"}
    assert all(r["equal"] for r in results.values()), results
    assert results["public.mixed"]["rows"] == 41
    assert results["public.mixed"]["chunks"] == 6
    assert results["public.pairs"]["chunks"] == 5
    # Equal chunks are found equal by their checksums: nothing was read row by row, so the
    # canonical text of every type above is the same in both databases.
    assert [r["read_row_by_row"] for r in results.values()] == [0, 0, 0, 0], results

    # Behind the pipeline's back: a value changed, a row deleted, a row added, a keyless row
    # doubled, and a float changed in its last digit.
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute("UPDATE mixed SET t = 'changed' WHERE id = 17")
        cur.execute("UPDATE mixed SET f = f * (1 + 1e-15) WHERE id = 3")
        cur.execute("DELETE FROM texts WHERE k = 'é'")
        cur.execute("INSERT INTO pairs VALUES (9, 'zz', 'extra')")
        cur.execute("INSERT INTO nokey VALUES (1, 'w')")
        maria.commit()
    finally:
        maria.close()

    code, out, err = verify(pipeline, "--json")
    assert code == 1, out + err
    results = by_table(out)
    assert results["public.mixed"]["different"] == ["3", "17"]
    assert results["public.mixed"]["missing"] == [] and results["public.mixed"]["extra"] == []
    assert results["public.texts"]["missing"] == ["'é'"]
    assert results["public.pairs"]["extra"] == ["(9, 'zz')"]
    assert results["public.nokey"]["extra"] == ["(1, 'w')"]

    # The text report, one table only.
    code, out, _ = verify(pipeline, "--table", "public.texts", "--rechecks", "0")
    assert code == 1
    assert "public.texts -> texts: DIFFERENT (15 rows in the source, 14 in the target" in out
    assert "missing in the target (1): 'é'" in out
    assert "1 table verified, 1 with differences" in out


def test_verify_reports_a_table_missing_in_the_target(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE lonely (id int PRIMARY KEY)", "INSERT INTO lonely VALUES (1)")
    code, out, _ = verify(pipeline, "--rechecks", "0")
    assert code == 1, out
    assert "public.lonely -> lonely: MISSING in the target (1 rows in the source)" in out


# ---------------------------------------------------------------- helpers for hand-made targets


def maria_sql(pipeline: Pipeline, *statements: str) -> None:
    """As MariaDB's root, in the test's target database (tables verify is to compare with)."""
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        for s in statements:
            cur.execute(s)
    finally:
        maria.close()


def copy_rows(
    pipeline: Pipeline,
    source: str,
    target: str,
    convert: Callable[[str], Any] = lambda v: v,
) -> None:
    """The rows of ``source`` (key ``k`` and text ``v``) into the MariaDB table ``target``, the
    key as PostgreSQL prints it (the extractor's session settings), passed through ``convert``."""
    pg = pipeline.pg()
    try:
        with pg.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'; SET DateStyle = ISO; SET extra_float_digits = 3")
            cur.execute(f"SELECT concat(k), v FROM {source}")
            rows = [(convert(k), v) for k, v in cur.fetchall()]
    finally:
        pg.close()
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.executemany(f"INSERT INTO `{target}` (k, v) VALUES (?, ?)", rows)
    finally:
        maria.close()


def only_line(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------- names


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def backticked(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def test_every_name_is_quoted_whatever_it_holds(pipeline: Pipeline) -> None:
    """Quotes, backticks, %, ?, spaces, case and non-ASCII in schema, table and column names,
    and target tables named through target.schemas and target.rename."""
    other = f"{pipeline.name}_other"
    mapped, unmapped = "Sch'ema ñ", 'q"s'
    pipeline.stack.mariadb.sql(
        f"CREATE DATABASE `{other}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin;\n"
    )
    pipeline.grant_target(other)
    try:
        pipeline.sql('CREATE SCHEMA "Sch\'ema ñ"', 'CREATE SCHEMA "q""s"')
        pipeline.grant_source(mapped)
        pipeline.grant_source(unmapped)
        tables = {
            # source (schema, table): (DDL, key column, the target's database and table)
            ("public", 'we"ird'): (
                """CREATE TABLE public."we""ird" ("i""d" int PRIMARY KEY, "va'l" text)""",
                'i"d', None, 'we"ird',
            ),
            ("public", "it's"): (
                """CREATE TABLE public."it's" (k text PRIMARY KEY, "v`" text)""",
                "k", None, "it's",
            ),
            ("public", "back`tick"): (
                """CREATE TABLE public."back`tick" ("k`ey" int PRIMARY KEY, "Mixed Case" text)""",
                "k`ey", None, "back`tick",
            ),
            ("public", "MixedCase ñandú"): (
                """CREATE TABLE public."MixedCase ñandú" (id int PRIMARY KEY, "Größe" text)""",
                "id", None, "MixedCase ñandú",
            ),
            ("public", "50%off?"): (
                """CREATE TABLE public."50%off?" ("p%c" int PRIMARY KEY, "q?" text)""",
                "p%c", None, "50%off?",
            ),
            (mapped, "t\"q'x"): (
                """CREATE TABLE "Sch'ema ñ"."t""q'x" (id int PRIMARY KEY, v text)""",
                "id", other, "t\"q'x",
            ),
            (unmapped, "T"): (
                """CREATE TABLE "q""s"."T" (id int PRIMARY KEY, v text)""",
                "id", None, 'q"s__T',
            ),
            ("public", "src"): (
                "CREATE TABLE public.src (id int PRIMARY KEY, v text)",
                "id", None, "Ren\"am'ed",
            ),
        }  # fmt: skip
        pipeline.sql(*(ddl for ddl, *_ in tables.values()))
        env = {
            "CDC_TARGET_SCHEMAS": f'"{mapped}"={other}',
            "CDC_TARGET_RENAME": "public.src=Ren\"am'ed",
        }
        pipeline.start("applier", **env).wait_for("consuming queue=")
        pipeline.start("extractor", **env).wait_for("streaming slot=")
        for (schema, table), (_, key, _, _) in tables.items():
            value = "'k' || g" if key == "k" else "g"
            pipeline.sql(
                f"INSERT INTO {quoted(schema)}.{quoted(table)}"
                f" SELECT {value}, 'v' || g FROM generate_series(1, 10) g"
            )
        pipeline.naming = Naming({TableRef("public", "src"): "Ren\"am'ed"}, {mapped: other})
        for schema in ("public", mapped, unmapped):
            pipeline.wait_converged([t for s, t in tables if s == schema], schema=schema)

        code, out, err = verify(pipeline, "--json", "--chunk-rows", "3", **env)
        assert code == 0, out + err
        results = by_table(out)
        assert set(results) == {str(TableRef(s, t)) for s, t in tables}, results
        for (schema, table), (_, _, database, target) in tables.items():
            result = results[str(TableRef(schema, table))]
            assert result["target"] == (f"{database}.{target}" if database else target)
            assert result["equal"] and result["rows"] == 10 and result["chunks"] == 4, result
            assert result["read_row_by_row"] == 0, result

        # One value changed in each target table: found, and named by its key.
        maria = pipeline.maria()
        try:
            cur = maria.cursor()
            for _, _, database, target in tables.values():
                where = (
                    f"{backticked(database)}.{backticked(target)}"
                    if database
                    else backticked(target)
                )
                column = {
                    'we"ird': "va'l", "it's": "v`", "back`tick": "Mixed Case",
                    "MixedCase ñandú": "Größe", "50%off?": "q?",
                }.get(target, "v")  # fmt: skip
                cur.execute(
                    f"UPDATE {where} SET {backticked(column)} = 'changed'"
                    f" WHERE {backticked(column)} = 'v5'"
                )
                assert cur.rowcount == 1
        finally:
            maria.close()
        code, out, err = verify(pipeline, "--json", "--chunk-rows", "3", **env)
        assert code == 1, out + err
        for (schema, table), (_, key, _, _) in tables.items():
            result = by_table(out)[str(TableRef(schema, table))]
            assert result["different"] == (["'k5'"] if key == "k" else ["5"]), result
            assert result["missing"] == [] and result["extra"] == [], result
    finally:
        pipeline.stack.mariadb.sql(f"DROP DATABASE IF EXISTS `{other}`;")


# ---------------------------------------------------------------- what cannot be verified


def one_error_line(out: str, err: str, needle: str) -> str:
    """The line that says what could not be verified; nothing else mentions ``needle``."""
    assert len(err.strip().splitlines()) <= 1, err
    return only_line(out + err, needle)


def test_what_cannot_be_verified_is_exit_3_with_one_line_saying_why(pipeline: Pipeline) -> None:
    hidden_db = f"{pipeline.name}_hidden"
    pipeline.stack.mariadb.sql(
        f"CREATE DATABASE `{hidden_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin;\n"
        f"CREATE TABLE `{hidden_db}`.t (id int PRIMARY KEY);\n"
    )
    try:
        pipeline.sql(
            "CREATE TABLE fine (id int PRIMARY KEY, v text)",
            "CREATE TABLE secret (id int PRIMARY KEY)",
            "CREATE TABLE odd (id int PRIMARY KEY, v text)",
            "INSERT INTO fine VALUES (1, 'a')",
            "INSERT INTO secret VALUES (1)",
            "INSERT INTO odd VALUES (1, '1')",
            f"REVOKE SELECT ON secret FROM {APP_USER}",
            "CREATE SCHEMA hidden",
            "CREATE TABLE hidden.t (id int PRIMARY KEY)",
        )
        pipeline.grant_source("hidden")
        maria_sql(
            pipeline,
            "CREATE TABLE fine (id int PRIMARY KEY, v longtext)",
            "INSERT INTO fine VALUES (1, 'a')",
            "CREATE TABLE secret (id int PRIMARY KEY)",
            "INSERT INTO secret VALUES (1)",
            # A column type verify has no comparison for (text in the source).
            "CREATE TABLE odd (id int PRIMARY KEY, v date)",
            "INSERT INTO odd VALUES (1, '2024-01-01')",
        )

        # The source role may not read one table: that one is not verified, the others are.
        code, out, err = verify(pipeline, "--table", "public.fine", "--table", "public.secret")
        assert code == 3, out + err
        line = one_error_line(out, err, "secret")
        assert "NOT VERIFIED" in line and "permission denied" in line, line
        assert "public.fine -> fine: equal" in out

        # A target column verify cannot compare with its source column.
        code, out, err = verify(pipeline, "--table", "public.odd")
        assert code == 3, out + err
        line = one_error_line(out, err, "odd")
        assert "NOT VERIFIED" in line and "column v" in line, line

        # A table the MariaDB user may not see at all is not "missing": it is not verified.
        code, out, err = verify(
            pipeline, "--table", "hidden.t", CDC_TARGET_SCHEMAS=f"hidden={hidden_db}"
        )
        assert code == 3, out + err
        line = one_error_line(out, err, "hidden")
        assert "NOT VERIFIED" in line and "denied" in line, line

        # A table that does not exist in the source, a partition named on its own.
        code, out, err = verify(pipeline, "--table", "public.nope")
        assert code == 3, out + err
        assert "does not exist in the source" in one_error_line(out, err, "nope")

        # Servers that cannot be reached or refuse the login: one line, exit 3.
        pg, maria = pipeline.stack.postgres, pipeline.stack.mariadb
        for env, needle in (
            ({"CDC_SOURCE_DSN": f"postgresql://cdc:x@127.0.0.1:1/{pipeline.name}"}, "PostgreSQL"),
            ({"CDC_TARGET_URL": f"mariadb+mariadbconnector://cdc:x@127.0.0.1:1/{pipeline.name}"},
             "MariaDB"),
            ({"CDC_TARGET_URL": maria.url(pipeline.name, APP_USER, "wrong")}, "MariaDB"),
            ({"CDC_SOURCE_DSN": pg.dsn(pipeline.name, APP_USER, "wrong")}, "PostgreSQL"),
        ):  # fmt: skip
            code, out, err = verify(pipeline, "--table", "public.fine", **env)
            assert code == 3, (env, out, err)
            assert out == "" and len(err.strip().splitlines()) == 1, (env, out, err)
            assert needle in err and "x@" not in err and "wrong" not in err, err

        # The MariaDB user without SELECT.
        maria.sql(f"REVOKE SELECT ON `{pipeline.name}`.* FROM '{APP_USER}'@'127.0.0.1';")
        code, out, err = verify(pipeline, "--table", "public.fine")
        assert code == 3, out + err
        line = one_error_line(out, err, "fine")
        assert "NOT VERIFIED" in line and "denied" in line, line
    finally:
        pipeline.stack.mariadb.sql(f"DROP DATABASE IF EXISTS `{hidden_db}`;")


# ---------------------------------------------------------------- keys of every stored type

DOMAINS = (
    "CREATE DOMAIN dint AS integer",
    "CREATE DOMAIN dnum AS numeric(30,9)",
    "CREATE DOMAIN dtext AS text",
    "CREATE DOMAIN dtz AS timestamptz",
    "CREATE DOMAIN dbytes AS bytea",
    "CREATE DOMAIN dbool AS boolean",
    "CREATE DOMAIN dday AS date",
    "CREATE DOMAIN duuid AS uuid",
    "CREATE DOMAIN dtime AS time",
    "CREATE DOMAIN dchar AS char(3)",
    "CREATE DOMAIN ddint AS dint",  # a domain over a domain
)
TEXTS = ["a", "B", "b", "é", "Z", "aa", "", " x", "ä", "中", "zz", "A1", "a1", "ß", "ss", "a ",
         "a\t", "🙂", "x\ny", "Ä"]  # fmt: skip
INTS = [str(i) for i in (-5, 0, 7, 9, 10, 11, 99, 100, 101, 2147483647, -2147483648)]
NUMS = ["9.5", "10", "100000000000000000000", "-0.001", "12345678901234567890.123456789",
        "12345678901234567890.123456788", "0", "100", "1.5", "-12345678901234567890"]  # fmt: skip
# Offsets that make the text order differ from the order of the instants.
INSTANTS = ["2024-01-01 10:00+09", "2024-01-01 02:00+00", "2024-01-01 00:30-05",
            "2024-01-01 01:59:59.999999+00", "0001-01-01 00:00+00", "9999-12-31 23:00-00:30",
            "1999-12-31 23:59:59.5-12"]  # fmt: skip
BYTES = ["\\x", "\\x00", "\\x0000", "\\x01", "\\xff", "\\x7f", "\\x80", "\\x00ff", "\\x20"]
DAYS = ["0001-01-01", "0999-12-31", "2024-02-29", "9999-12-31", "1970-01-01", "1000-01-01"]
UUIDS = ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000",
         "ffffffff-ffff-ffff-ffff-ffffffffffff", "9fffffff-0000-0000-0000-000000000000",
         "0a000000-0000-0000-0000-000000000001", "b0000000-0000-0000-0000-000000000000"]  # fmt: skip
TIMES = ["00:00", "24:00:00", "12:00:00.5", "23:59:59.999999", "09:00", "10:00"]
CHARS = ["a", "a\t", "a b", "ab", "B", " ", "é", "a\n", "abc"]
KEYED: dict[str, tuple[str, list[str]]] = {
    "k_int": ("integer", INTS),
    "k_big": ("bigint", ["9223372036854775807", "-9223372036854775808", "9007199254740993",
                         "9007199254740992", "0", "1", "10", "9"]),
    "k_num": ("numeric", NUMS),
    "k_text": ("text", TEXTS),
    "k_vc": ("varchar(8)", TEXTS),
    "k_text_c": ('text COLLATE "C"', TEXTS),  # its index serves the byte order
    "k_char": ("char(3)", CHARS),
    "k_uuid": ("uuid", UUIDS),
    "k_bytea": ("bytea", BYTES),
    "k_bool": ("boolean", ["true", "false"]),
    "k_date": ("date", DAYS),
    "k_ts": ("timestamp", ["2024-01-01 00:00:00", "2024-01-01 00:00:00.000001",
                           "1999-12-31 23:59:59.999999", "0001-01-01", "9999-12-31 23:59:59.999999"]),
    "k_tz": ("timestamptz", INSTANTS),
    "k_time": ("time", TIMES),
    "k_real": ("real", ["0.1", "1e-45", "3.4028235e+38", "-1", "16777216", "0", "0.3"]),
    "k_double": ("double precision", ["0.1", "1e-300", "9007199254740993", "-2.5", "5e-324", "10"]),
    "d_int": ("dint", [str(i) for i in range(1, 25)]),
    "d_num": ("dnum", NUMS[:4] + NUMS[6:]),
    "d_text": ("dtext", TEXTS),
    "d_tz": ("dtz", INSTANTS),
    "d_bytes": ("dbytes", BYTES),
    "d_bool": ("dbool", ["true", "false"]),
    "d_day": ("dday", DAYS),
    "d_uuid": ("duuid", UUIDS),
    "d_time": ("dtime", TIMES),
    "d_char": ("dchar", CHARS),
    "d_dint": ("ddint", INTS),
}  # fmt: skip


def fill_keyed(pipeline: Pipeline, names: list[str]) -> None:
    conn = pipeline.pg()
    try:
        with conn.cursor() as cur:
            for name in names:
                pg_type, keys = KEYED[name]
                cur.execute(f"CREATE TABLE {name} (k {pg_type} PRIMARY KEY, v text)")
                for i, k in enumerate(keys):
                    cur.execute(f"INSERT INTO {name} VALUES (%s, %s)", (k, f"v{i}"))
    finally:
        conn.close()


def test_keys_of_every_stored_type_are_cut_and_matched_alike_in_both_databases(
    pipeline: Pipeline,
) -> None:
    """Chunk boundaries, order and equality of keys agree between PostgreSQL and MariaDB for
    each key type the pipeline stores, domains included, however the target stores them."""
    pipeline.sql(
        *DOMAINS,
        "CREATE TABLE k_mix (a int, b text, c timestamptz, d bytea, e dint, v text,"
        " PRIMARY KEY (b, a, c, d, e))",
        # Domains in other columns than the key, NULL too.
        "CREATE TABLE d_values (id int PRIMARY KEY, b dbool, tz dtz, raw dbytes, n dnum,"
        " day dday, t dtime, c dchar, v text)",
    )
    pipeline.start_pipeline()
    fill_keyed(pipeline, list(KEYED))
    pipeline.sql(
        "INSERT INTO k_mix SELECT a, b, c::timestamptz, d::bytea, e, concat_ws(',', a, b, c, d, e)"
        " FROM unnest(ARRAY[1, 10, 9]) a, unnest(ARRAY['a', 'B', 'é']) b,"
        " unnest(ARRAY['2024-01-01 10:00+09', '2024-01-01 02:00+00']) c,"
        " unnest(ARRAY['\\x00', '\\x']) d, unnest(ARRAY[2, 10]) e"
    )
    pipeline.sql(
        "INSERT INTO d_values VALUES (1, true, '2024-01-01 10:00+09', '\\x00ff', 1.5,"
        " '2024-02-29', '24:00:00', 'a', 'v1'), (2, false, NULL, '\\x', 0, NULL, NULL, NULL, 'v2'),"
        " (3, NULL, '0001-01-01 00:00+00', NULL, NULL, '0001-01-01', '00:00', ' ', 'v3')"
    )
    tables = [*KEYED, "k_mix", "d_values"]
    pipeline.wait_converged(tables)

    code, out, err = verify(pipeline, "--json", "--chunk-rows", "3")
    assert code == 0, out + err
    results = by_table(out)
    for name in tables:
        result = results[f"public.{name}"]
        assert result["equal"], result
        # Several chunks, each found equal by its checksums alone.
        assert result["chunks"] > 1 or name.endswith("bool") or name == "d_values", result
        assert result["read_row_by_row"] == 0, result

    # One row changed and one deleted behind the pipeline's back, in each table: exactly
    # those keys are named.
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        for name in tables:
            cur.execute(f"SELECT v FROM {name} ORDER BY v LIMIT 2")
            (first,), (second,) = cur.fetchall()
            cur.execute(f"UPDATE {name} SET v = 'changed' WHERE v = ?", (first,))
            cur.execute(f"DELETE FROM {name} WHERE v = ?", (second,))
    finally:
        maria.close()
    code, out, err = verify(pipeline, "--json", "--chunk-rows", "3", "--rechecks", "0")
    assert code == 1, out + err
    results = by_table(out)
    for name in tables:
        result = results[f"public.{name}"]
        assert len(result["different"]) == 1 and len(result["missing"]) == 1, result
        assert result["extra"] == [], result
        assert result["rows"] == result["target_rows"] + 1, result


# The same keys, each domain table twice: once stored as the base type (a DATETIME for a
# timestamptz, ...), once as PostgreSQL's text of the value (as a target column widened to text
# holds it), both filled by hand.
STORED: dict[str, tuple[str, Callable[[str], Any]]] = {
    # domain table: (native target column type, converter of PostgreSQL's text to it)
    "d_int": ("int", int),
    "d_dint": ("int", int),
    "d_num": ("decimal(30,9)", str),
    "d_text": ("varchar(255)", str),
    "d_tz": ("datetime(6)", lambda v: v.removesuffix("+00")),
    "d_bytes": ("varbinary(255)", lambda v: bytes.fromhex(v[2:])),
    "d_bool": ("tinyint(1)", lambda v: v == "t"),
    "d_day": ("date", str),
    "d_uuid": ("char(36)", str),
    "d_time": ("time(6)", str),
    "d_char": ("varchar(3)", str),
}


def test_domain_keys_compare_by_how_the_target_stores_them(pipeline: Pipeline) -> None:
    pipeline.sql(*DOMAINS)
    fill_keyed(pipeline, list(STORED))
    for name, (native, convert) in STORED.items():
        pipeline.sql(f"CREATE TABLE {name}_as_text AS TABLE {name}")
        pipeline.sql(f"ALTER TABLE {name}_as_text ADD PRIMARY KEY (k)")
        maria_sql(
            pipeline,
            f"CREATE TABLE {name} (k {native} PRIMARY KEY, v longtext)",
            f"CREATE TABLE {name}_as_text (k varchar(255) PRIMARY KEY, v longtext)",
        )
        copy_rows(pipeline, name, name, convert)
        copy_rows(pipeline, name, f"{name}_as_text")

    code, out, err = verify(pipeline, "--json", "--chunk-rows", "3")
    assert code == 0, out + err
    results = by_table(out)
    assert len(results) == 2 * len(STORED)
    for result in results.values():
        assert result["equal"] and result["read_row_by_row"] == 0, result

    maria_sql(
        pipeline,
        "UPDATE d_int SET v = 'changed' WHERE k = 10",
        "UPDATE d_int_as_text SET v = 'changed' WHERE k = '10'",
        "DELETE FROM d_tz WHERE k = '2024-01-01 01:00:00'",
        "DELETE FROM d_tz_as_text WHERE k = '2024-01-01 01:00:00+00'",
    )
    code, out, err = verify(pipeline, "--json", "--chunk-rows", "3", "--rechecks", "0")
    assert code == 1, out + err
    results = by_table(out)
    assert results["public.d_int"]["different"] == ["10"]
    assert results["public.d_int_as_text"]["different"] == ["'10'"]
    assert results["public.d_tz"]["missing"] == ["datetime.datetime(2024, 1, 1, 1, 0)"]
    assert results["public.d_tz_as_text"]["missing"] == ["'2024-01-01 01:00:00+00'"]
    assert sum(not r["equal"] for r in results.values()) == 4, results


# ---------------------------------------------------------------- partitions and inheritance


def test_a_partitioned_table_is_one_table_and_an_inheritance_parent_only_its_own_rows(
    pipeline: Pipeline,
) -> None:
    """The pipeline's own handling of partitioned tables is not what is tested here: the target
    tables are filled by hand with what they should hold."""
    pipeline.sql(
        "CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region))"
        " PARTITION BY LIST (region)",
        "CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu') PARTITION BY RANGE (id)",
        "CREATE TABLE parted_eu_low PARTITION OF parted_eu FOR VALUES FROM (MINVALUE) TO (50)",
        "CREATE TABLE parted_eu_high PARTITION OF parted_eu FOR VALUES FROM (50) TO (MAXVALUE)",
        "CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us')",
        "CREATE TABLE parted_rest PARTITION OF parted DEFAULT",
        "INSERT INTO parted SELECT g, (ARRAY['eu', 'us', 'asia'])[g % 3 + 1], 'v' || g"
        " FROM generate_series(1, 100) g",
        "CREATE TABLE base (id int PRIMARY KEY, v text)",
        "CREATE TABLE child (extra text) INHERITS (base)",
        "ALTER TABLE child ADD PRIMARY KEY (id)",
        "INSERT INTO base SELECT g, 'base' || g FROM generate_series(1, 10) g",
        "INSERT INTO child SELECT g, 'child' || g, 'x' FROM generate_series(1, 15) g",
    )
    maria_sql(
        pipeline,
        "CREATE TABLE parted (id int, region varchar(255), v longtext, PRIMARY KEY (id, region))",
        "CREATE TABLE base (id int PRIMARY KEY, v longtext)",
        "CREATE TABLE child (id int PRIMARY KEY, v longtext, extra longtext)",
    )
    pg = pipeline.pg()
    try:
        with pg.cursor() as cur:
            copied = {}
            for table in ("parted", "ONLY base", "child"):
                cur.execute(f"SELECT * FROM {table}")
                copied[table.removeprefix("ONLY ")] = cur.fetchall()
    finally:
        pg.close()
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        for table, rows in copied.items():
            marks = ", ".join("?" * len(rows[0]))
            cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    finally:
        maria.close()

    code, out, err = verify(pipeline, "--json", "--chunk-rows", "30")
    assert code == 0, out + err
    results = by_table(out)
    # The root only, not its partitions; the inheritance child is a table of its own.
    assert set(results) == {"public.parted", "public.base", "public.child"}, results
    assert results["public.parted"]["rows"] == 100 and results["public.parted"]["chunks"] == 4
    assert results["public.base"]["rows"] == 10 and results["public.base"]["equal"]
    assert results["public.child"]["rows"] == 15 and results["public.child"]["equal"]

    maria_sql(
        pipeline,
        "DELETE FROM parted WHERE id = 60",  # eu, high
        "UPDATE parted SET v = 'changed' WHERE id = 7",  # us
        "INSERT INTO base VALUES (11, 'child11')",  # a child's row in its parent's copy
    )
    code, out, err = verify(pipeline, "--json", "--chunk-rows", "30", "--rechecks", "0")
    assert code == 1, out + err
    results = by_table(out)
    assert results["public.parted"]["missing"] == ["(60, 'eu')"]
    assert results["public.parted"]["different"] == ["(7, 'us')"]
    assert results["public.base"]["extra"] == ["11"]
    assert results["public.child"]["equal"]

    # A partition on its own is not a table verify compares.
    code, out, err = verify(pipeline, "--table", "public.parted_eu_low")
    assert code == 3, out + err
    assert "partition of public.parted" in one_error_line(out, err, "parted_eu_low")


# ---------------------------------------------------------------- edges


def test_empty_tables_nulls_missing_tables_and_columns(pipeline: Pipeline) -> None:
    other = f"{pipeline.name}_gone"  # target.schemas names a database that does not exist
    pipeline.grant_target(other)
    pipeline.sql(
        "CREATE TABLE empty_both (id int PRIMARY KEY, v text)",
        "CREATE TABLE empty_target (id int PRIMARY KEY)",
        "INSERT INTO empty_target VALUES (1), (2)",
        "CREATE TABLE empty_source (id int PRIMARY KEY)",
        "CREATE TABLE nulls (id int PRIMARY KEY, a int, t text, d date, f float8, b boolean,"
        " by bytea, n numeric)",
        "INSERT INTO nulls VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
        " (2, 0, '', '2024-01-01', 0, false, '', 0), (3, NULL, 'NULL', NULL, 1.5, true, NULL, 1)",
        "CREATE TABLE keyless (a int, t text)",
        "INSERT INTO keyless VALUES (NULL, NULL), (NULL, NULL), (1, NULL), (NULL, ''), (1, 'x')",
        "CREATE TABLE short (id int PRIMARY KEY, v text, w text)",
        "INSERT INTO short VALUES (1, 'a', 'b')",
        "CREATE TABLE lonely (id int PRIMARY KEY)",
        "INSERT INTO lonely VALUES (1)",
        "CREATE TABLE doubled (id int PRIMARY KEY, v text)",
        "INSERT INTO doubled VALUES (1, 'a'), (2, 'b')",
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE elsewhere.t (id int PRIMARY KEY)",
        "INSERT INTO elsewhere.t VALUES (1)",
    )
    pipeline.grant_source("elsewhere")
    maria_sql(
        pipeline,
        "CREATE TABLE empty_both (id int PRIMARY KEY, v longtext)",
        "CREATE TABLE empty_target (id int PRIMARY KEY)",
        "CREATE TABLE empty_source (id int PRIMARY KEY)",
        "INSERT INTO empty_source VALUES (5), (6)",
        "CREATE TABLE nulls (id int PRIMARY KEY, a int, t longtext, d date, f double,"
        " b boolean, `by` longblob, n decimal(65,30))",
        "INSERT INTO nulls VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
        " (2, 0, '', '2024-01-01', 0, false, '', 0), (3, NULL, 'NULL', NULL, 1.5, true, NULL, 1)",
        "CREATE TABLE keyless (a int, t longtext)",
        "INSERT INTO keyless VALUES (NULL, NULL), (NULL, NULL), (1, NULL), (NULL, ''), (1, 'x')",
        "CREATE TABLE short (id int PRIMARY KEY, v longtext)",
        "INSERT INTO short VALUES (1, 'a')",
        # A target table without the primary key, holding one row twice.
        "CREATE TABLE doubled (id int, v longtext)",
        "INSERT INTO doubled VALUES (1, 'a'), (2, 'b'), (2, 'b')",
    )
    env = {"CDC_TARGET_SCHEMAS": f"elsewhere={other}"}
    code, out, err = verify(pipeline, "--json", "--chunk-rows", "2", "--rechecks", "0", **env)
    assert code == 1, out + err
    results = by_table(out)
    assert results["public.empty_both"]["equal"] and results["public.empty_both"]["rows"] == 0
    assert results["public.empty_target"]["missing"] == ["1", "2"]
    assert results["public.empty_source"]["extra"] == ["5", "6"]
    assert results["public.nulls"]["equal"], results["public.nulls"]
    assert results["public.keyless"]["equal"], results["public.keyless"]
    assert results["public.short"]["note"] == "columns missing in the target: w"
    assert results["public.lonely"]["note"] == "missing in the target"
    assert results["public.doubled"]["extra"] == ["2"], results["public.doubled"]
    assert results["elsewhere.t"]["note"] == "missing in the target"
    assert results["elsewhere.t"]["target"] == f"{other}.t"

    # NULL is not '' nor 0 nor the text NULL; a keyless row doubled or turned NULL is seen.
    maria_sql(
        pipeline,
        "UPDATE nulls SET t = '' WHERE id = 1",
        "UPDATE nulls SET a = NULL WHERE id = 2",
        "UPDATE nulls SET t = NULL WHERE id = 3",
        "INSERT INTO keyless VALUES (NULL, NULL)",
        "UPDATE keyless SET t = NULL WHERE t = ''",
    )
    code, out, err = verify(pipeline, "--json", "--table", "public.nulls", "--table",
                            "public.keyless", "--rechecks", "0")  # fmt: skip
    assert code == 1, out + err
    results = by_table(out)
    assert results["public.nulls"]["different"] == ["1", "2", "3"]
    assert results["public.keyless"]["missing"] == ["(None, '')"]
    assert results["public.keyless"]["extra"] == ["(None, None)", "(None, None)"]


def test_key_values_the_target_cannot_hold_sort_before_or_after_all_others(
    pipeline: Pipeline,
) -> None:
    """Chunk boundaries on infinity, BC dates, years after 9999, NaN: the rows of each chunk are
    the same on both sides, and only the rows MariaDB cannot hold are missing."""
    keys = {
        # table: (type, keys MariaDB holds, keys it cannot hold)
        "e_day": ("date", ["0001-01-01", "2024-01-01", "9999-12-31"],
                  ["-infinity", "0044-03-15 BC", "10000-01-01", "infinity"]),
        "e_ts": ("timestamp", ["0001-01-01 00:00", "2024-01-01 12:00", "9999-12-31 23:59:59"],
                 ["-infinity", "0001-12-31 23:59:59 BC", "294276-12-31 23:59:59", "infinity"]),
        # BC and after 9999 only in UTC.
        "e_tz": ("timestamptz", ["0001-01-01 00:30:00-01", "2024-01-01 00:00+00"],
                 ["-infinity", "0001-01-01 00:30:00+01", "9999-12-31 23:30:00-01", "infinity"]),
        "e_num": ("numeric", ["-1", "0", "1.5", "99"], ["NaN"]),
        "e_float": ("double precision", ["-1", "0", "1e308", "5e-324"],
                    ["-Infinity", "Infinity", "NaN"]),
    }  # fmt: skip
    conn = pipeline.pg()
    try:
        with conn.cursor() as cur:
            for table, (pg_type, held, refused) in keys.items():
                cur.execute(f"CREATE TABLE {table} (k {pg_type} PRIMARY KEY, v text)")
                cur.execute(f"CREATE TABLE {table}_held (k {pg_type} PRIMARY KEY, v text)")
                for k in held + refused:
                    cur.execute(f"INSERT INTO {table} VALUES (%s, 'v')", (k,))
                for k in held:
                    cur.execute(f"INSERT INTO {table}_held VALUES (%s, 'v')", (k,))
    finally:
        conn.close()
    native = {"e_day": "date", "e_ts": "datetime(6)", "e_tz": "datetime(6)",
              "e_num": "decimal(65,30)", "e_float": "double"}  # fmt: skip
    for table, column in native.items():
        maria_sql(pipeline, f"CREATE TABLE {table} (k {column} PRIMARY KEY, v longtext)")
        copy_rows(
            pipeline,
            f"{table}_held",
            table,
            lambda v: v.removesuffix("+00"),  # timestamptz, printed in UTC
        )
    code, out, err = verify(
        pipeline, "--json", "--chunk-rows", "2", "--rechecks", "0",
        *(a for t in keys for a in ("--table", f"public.{t}")),
    )  # fmt: skip
    assert code == 1, out + err
    results = by_table(out)
    for table, (_, held, refused) in keys.items():
        result = results[f"public.{table}"]
        assert len(result["missing"]) == len(refused), result
        assert result["extra"] == [] and result["different"] == [], result
        assert result["target_rows"] == len(held), result
