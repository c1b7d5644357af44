"""The publication pgoutput streams (source.publication): made, or found, and kept in step.

pgoutput sends the changes of the tables in the publications named at START_REPLICATION, and
it reads them as of each change (the historic catalog): the publication must exist before the
slot is made, and a change made before its table joined the publication is never sent. So:

- at each session's start (before the slot is made), ``ensure`` creates the publication for the
  captured tables when it is missing, or adds the captured tables it lacks; when the role may not
  (creating or altering a publication of named tables needs ownership of the tables; FOR ALL
  TABLES and FOR TABLES IN SCHEMA need a superuser), the start fails with one line naming what is
  missing and the statement that adds it (sql/publication.sql);
- every catalog check (catalog.py, every 30 s), the same for tables that came into the filter
  while running (a new table a wildcard matches): each table added is copied at that point of
  the stream, since its changes before it joined were not sent.

A publication FOR ALL TABLES or FOR TABLES IN SCHEMA already covers what it should. Tables in
the publication but not in the filter are left there (the extractor filters exactly anyway).

It is created with ``publish_via_partition_root = false``: a partition's changes then arrive
under the partition's name, which partitions.py renames to its root's, as with wal2json. With
``true``, PostgreSQL 15 publishes nothing at all for a TRUNCATE of one partition (it skips
partitions whose changes go out as the root's), which would leave the target with rows the
source no longer has; an existing publication with ``true`` is used, with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
import psycopg2.errorcodes
from psycopg2 import sql

from shared.errors import SetupError
from shared.postgres import first_line
from shared.tables import TableRef

log = logging.getLogger(__name__)

# Captured tables (roots or plain tables: a filter cannot name a partition) the publication
# does not cover, by table or by schema.
_MISSING_SQL = """
SELECT n.nspname, c.relname, c.relkind = 'p'
  FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(nspname, relname)
  JOIN pg_namespace n ON n.nspname = w.nspname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname
 WHERE NOT EXISTS (SELECT 1 FROM pg_publication_rel r
                    WHERE r.prpubid = %(pub)s AND r.prrelid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_publication_namespace s
                    WHERE s.pnpubid = %(pub)s AND s.pnnspid = c.relnamespace)
 ORDER BY 1, 2
"""


def statement(name: str, tables: list[TableRef], create: bool) -> str:
    """The statement that makes the publication cover ``tables`` (for the error line)."""
    listed = ", ".join(str(t) for t in tables)
    if create:
        what = f" FOR TABLE {listed}" if tables else ""
        return f"CREATE PUBLICATION {name}{what} WITH (publish_via_partition_root = false)"
    return f"ALTER PUBLICATION {name} ADD TABLE {listed}"


class Publication:
    """One extractor process's view of its publication (reported once per problem)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._reported: set[tuple[TableRef, ...]] = set()
        self._warned_root = False

    def ensure(self, conn: Any, tables: list[TableRef], at_start: bool) -> list[TableRef]:
        """Make the publication cover ``tables``; returns those it added (already existing
        tables whose earlier changes were not published). At start, a publication that cannot
        be made to cover them is a SetupError; while running, an ERROR line (once)."""
        try:
            return self._ensure(conn, tables, at_start)
        finally:
            conn.rollback()

    def _ensure(self, conn: Any, tables: list[TableRef], at_start: bool) -> list[TableRef]:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT oid, puballtables, pubviaroot, pubinsert AND pubupdate AND pubdelete"
                " AND pubtruncate, current_user FROM pg_publication WHERE pubname = %s",
                (self.name,),
            )
            found = cur.fetchone()
            if found is None:
                cur.execute("SELECT current_user")
                user = cur.fetchone()[0]
                self._create(conn, tables, user)
                return []
            oid, all_tables, via_root, every_action, user = found
            if not every_action:
                raise SetupError(
                    f"publication {self.name} does not publish every action (insert, update, "
                    f"delete, truncate): ALTER PUBLICATION {self.name} SET (publish = "
                    "'insert, update, delete, truncate')"
                )
            if all_tables:
                return []
            cur.execute(
                _MISSING_SQL,
                {
                    "schemas": [t.schema for t in tables],
                    "tables": [t.table for t in tables],
                    "pub": oid,
                },
            )
            rows = cur.fetchall()
        missing = [TableRef(s, t) for s, t, _ in rows]
        if via_root and not self._warned_root:
            self._warned_root = True
            log.warning(
                "publication_via_root publication=%s: publish_via_partition_root is true, so "
                "PostgreSQL publishes nothing for a TRUNCATE of a single partition; fix: "
                "ALTER PUBLICATION %s SET (publish_via_partition_root = false)",
                self.name,
                self.name,
            )
        if not missing:
            return []
        return self._add(conn, missing, user, at_start)

    def _create(self, conn: Any, tables: list[TableRef], user: str) -> None:
        query = sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(self.name))
        if tables:
            query += sql.SQL(" FOR TABLE ") + sql.SQL(", ").join(
                sql.Identifier(t.schema, t.table) for t in tables
            )
        query += sql.SQL(" WITH (publish_via_partition_root = false)")
        try:
            with conn.cursor() as cur:
                cur.execute(query)
            conn.commit()
        except psycopg2.errors.DuplicateObject:
            conn.rollback()  # another extractor made it meanwhile: the next start checks it
            return
        except psycopg2.Error as e:
            conn.rollback()
            raise SetupError(
                f"publication {self.name} does not exist and role {user} may not create it "
                f"({first_line(e)}): run as a superuser or the tables' owner: "
                f"{statement(self.name, tables, create=True)} (see sql/publication.sql)"
            ) from e
        log.info("publication_created publication=%s tables=%d", self.name, len(tables))

    def _add(self, conn: Any, missing: list[TableRef], user: str, at_start: bool) -> list[TableRef]:
        query = sql.SQL("ALTER PUBLICATION {} ADD TABLE ").format(
            sql.Identifier(self.name)
        ) + sql.SQL(", ").join(sql.Identifier(t.schema, t.table) for t in missing)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
            conn.commit()
        except psycopg2.Error as e:
            conn.rollback()
            fix = statement(self.name, missing, create=False)
            line = (
                f"publication {self.name} lacks the captured tables "
                f"{', '.join(str(t) for t in missing)} and role {user} may not add them "
                f"({first_line(e)}): run as a superuser or the tables' owner: {fix}"
            )
            if at_start:
                raise SetupError(line) from e
            key = tuple(missing)
            if key not in self._reported:
                self._reported.add(key)
                log.error("publication_incomplete %s; their changes are not streamed", line)
            return []
        log.info(
            "publication_tables_added publication=%s tables=%s",
            self.name,
            ",".join(str(t) for t in missing),
        )
        return missing
