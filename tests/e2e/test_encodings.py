"""Source databases whose encoding is not UTF8 replicate exactly, or are refused at start.

wal2json writes in the database's encoding; the target must hold the text as PostgreSQL
converts it to Unicode (what a UTF8 client of the source reads), whether the row came through
the initial copy, the stream or a backfill. The test's own connections to the source ask for
UTF8, so the comparison reads PostgreSQL's conversion too.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg2
import pytest

from devstack.stack import APP_USER
from devstack.system import wait_until
from harness.pipeline import ROOT, Pipeline

# Characters beyond ASCII that each encoding holds. "Ã©" is the UTF-8 bytes of "é" read as
# LATIN1: a pipeline that took the database's bytes for UTF-8 would store "é".
TEXTS = {
    "LATIN1": ["é à ÿ ß × ÷ ¤ «»", "Ã©", "\u00a0nbsp\u00ad", "ÀÉÎÕÜ ñ ç ø å æ ð þ µ ¿¡"],  # noqa: RUF001
    "WIN1252": ["€ ‚ ƒ „ … † ‡ ˆ ‰", "Š ‹ Œ Ž ‘ ’ “ ” • – —", "˜ ™ š › œ ž Ÿ é", "Ã©"],  # noqa: RUF001
    # The second: every character Python's euc_jp reads otherwise than PostgreSQL (0xA1C1 is
    # U+FF5E, not U+301C, ...); then half-width kana (two bytes, 0x8E), JIS X 0212 (three
    # bytes, 0x8F) and a character Python cannot read at all.
    "EUC_JP": ["日本語のテキスト", "～ ∥ － ￠ ￡ ￢ ￤", "ｶﾀｶﾅ", "丂 髙 é ö"],  # noqa: RUF001
}


def recreate_source(pipeline: Pipeline, encoding: str) -> None:
    pg = pipeline.stack.postgres
    pg.psql(
        f"DROP DATABASE {pipeline.name};\n"
        f"CREATE DATABASE {pipeline.name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'"
        " TEMPLATE template0;"
    )
    pg.grant_source(APP_USER, pipeline.stack.app_password, pipeline.name, owner="postgres")
    if pipeline.decoder == "pgoutput":
        pipeline.publish()


@pytest.fixture
def utf8_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's connections to the source read and write UTF8 (the processes are left as
    they are)."""
    plain = Pipeline.pg

    def pg(self: Pipeline) -> Any:
        conn = plain(self)
        conn.set_client_encoding("UTF8")
        return conn

    monkeypatch.setattr(Pipeline, "pg", pg)


def rows(texts: list[str], start: int) -> list[tuple[Any, ...]]:
    out = []
    for i, t in enumerate(texts):
        n = start + i
        out.append(
            (
                f"{t} {n}",  # the text key
                t[:10],  # varchar(10)
                t[:4],  # char(6), padded
                f'{{"{t}": ["{t}", {n}]}}',
                f'{{"k": "{t}"}}',
                [t, None, f"{t},{{}}", ""],
                t,
            )
        )
    return out


def insert(pipeline: Pipeline, values: list[tuple[Any, ...]]) -> None:
    conn = pipeline.pg()
    with conn.cursor() as cur:
        for v in values:
            cur.execute('INSERT INTO "données" VALUES (%s, %s, %s, %s, %s, %s, %s)', v)
    conn.close()


@pytest.mark.decoders
@pytest.mark.parametrize("encoding", sorted(TEXTS))
@pytest.mark.usefixtures("utf8_client")
def test_a_source_that_is_not_utf8_replicates_exactly(pipeline: Pipeline, encoding: str) -> None:
    recreate_source(pipeline, encoding)
    texts = TEXTS[encoding]
    pipeline.sql(
        'CREATE TABLE "données" ("clé" text PRIMARY KEY, vc varchar(10), c char(6), j json,'
        " jb jsonb, ta text[], t text)"
    )
    insert(pipeline, rows(texts, 0))  # copied by the initial snapshot
    pipeline.start("applier")
    extractor = pipeline.start("extractor", CDC_SOURCE_HEARTBEAT_INTERVAL="1")
    extractor.wait_for("streaming slot=")
    insert(pipeline, rows(texts, 100))  # streamed
    pipeline.sql(
        f'UPDATE "données" SET t = t || \'{texts[1]}\', "clé" = "clé" || \'{texts[0]}\''
        " WHERE \"clé\" LIKE '% 1'",
        'DELETE FROM "données" WHERE "clé" LIKE \'% 2\'',
    )
    pipeline.wait_converged(["données"])
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("SELECT t FROM `données` WHERE `clé` = ?", (f"{texts[3]} 103",))
    assert cur.fetchone() == (texts[3],)
    cur.execute("SELECT c FROM `données` WHERE `clé` = ?", (f"{texts[0]} 100",))
    assert cur.fetchone() == (texts[0][:4].ljust(6),)
    maria.close()

    # A backfill (a request written into the WAL, a copy through a temporary slot) too.
    maria = pipeline.maria()
    maria.cursor().execute("UPDATE `données` SET t = 'changed in the target'")
    maria.close()
    subprocess.run(
        [sys.executable, "-m", "extractor", "backfill", "public.données"],
        env=pipeline.env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    pipeline.wait_converged(["données"])
    wait_until(lambda: "copy_done" in extractor.output(), "the backfill")
    assert extractor.alive()
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0


@pytest.mark.parametrize(
    ("encoding", "words"),
    [
        ("SQL_ASCII", ["source database", "has encoding SQL_ASCII", "no declared encoding"]),
        ("EUC_TW", ["source database", "has encoding EUC_TW", "Python has no codec for it"]),
        (
            "EUC_JIS_2004",
            ["source database", "has encoding EUC_JIS_2004", "exactly as PostgreSQL does"],
        ),
        ("MULE_INTERNAL", ["source database cannot be read as Unicode", "MULE_INTERNAL"]),
    ],
)
def test_a_source_that_cannot_be_converted_is_refused_with_one_line(
    pipeline: Pipeline, encoding: str, words: list[str]
) -> None:
    recreate_source(pipeline, encoding)
    proc = subprocess.run(
        [sys.executable, "-m", "extractor"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("extractor: "), line
    for word in [*words, "convert the database to UTF8"]:
        assert word in line, line
    # Refused before anything was created: no slot, nothing published.
    conn = psycopg2.connect(pipeline.stack.postgres.dsn())
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (pipeline.name,)
        )
        assert cur.fetchone() == (0,)
    conn.close()
