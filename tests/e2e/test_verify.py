"""``python -m applier verify``: an exact copy passes on checksums alone; rows changed, deleted
or added behind the pipeline's back are found and named, with exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys

from harness.pipeline import ROOT, Pipeline

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


def verify(pipeline: Pipeline, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "applier", "verify", "--chunk-rows", "7", *args],
        env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def by_table(stdout: str) -> dict[str, dict[str, object]]:
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
