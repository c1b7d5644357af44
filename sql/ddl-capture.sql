-- Schema changes into the replication stream, at their exact position (pg2maria-cdc).
--
-- Event triggers that write a transactional logical message (pg_logical_emit_message, prefix
-- pg2maria.ddl) describing each schema change of a table, inside the transaction that makes
-- it: the extractor reads it at that very point of the stream, between the row changes before
-- and after it, and the applier mirrors it in MariaDB (see the README, "Schema changes").
--
--   ddl_command_end   CREATE TABLE, CREATE TABLE AS, SELECT INTO, ALTER TABLE: the table's
--                     shape after the command (columns by attnum, types, the value rows that
--                     existed before an ADD COLUMN hold, primary key; tables by OID), and for
--                     a partitioned table the partitions attached and detached by it;
--   sql_drop          DROP TABLE (and DROP SCHEMA/OWNED ... CASCADE): the tables dropped;
--   table_rewrite     a command that rewrites a table's rows (a volatile default, a type
--                     change, USING, timestamp <-> timestamptz outside UTC): the table is
--                     copied again at that point;
--   ddl_command_start ALTER TABLE and DROP: which partitions belong to which root before the
--                     command (a transaction-local setting), to tell attached and detached
--                     partitions apart, and the root of a partition that is dropped.
--
-- Run once per source database, as a superuser (creating an event trigger needs one), with
-- psql; running it again replaces what it made:
--
--   psql -d <source db> -f sql/ddl-capture.sql
--
-- The triggers run as whoever runs the DDL. Their functions are SECURITY DEFINER (they run as
-- the superuser who installed them, who may call pg_logical_emit_message and read
-- pg_attribute.attmissingval), with a fixed search_path (pg_catalog, then pg_temp, which is
-- never searched for functions or operators), every name schema-qualified, EXECUTE revoked from
-- PUBLIC, in a schema nobody else may use. They print values with the settings the extractor's
-- session has (UTC, ISO dates, all float digits, hex bytea), whatever the DDL session's are.
-- An error in them makes the DDL fail: a schema change is never left out silently. To stop
-- the capture: DROP SCHEMA pg2maria CASCADE (the triggers go with their functions).
\set ON_ERROR_STOP on
BEGIN;

CREATE SCHEMA IF NOT EXISTS pg2maria;
REVOKE ALL ON SCHEMA pg2maria FROM PUBLIC;

-- A type as wal2json prints it (format_type, with the default search_path: a type of public
-- is not qualified, as in the stream).
CREATE OR REPLACE FUNCTION pg2maria.ddl_type(typ oid, typmod integer) RETURNS text
LANGUAGE sql STABLE
SET search_path = public
AS $$ SELECT pg_catalog.format_type(typ, typmod) $$;

-- The one element of attmissingval's array literal (array_out quotes and backslash-escapes
-- an element as needed): the text PostgreSQL's output function gives the value.
CREATE OR REPLACE FUNCTION pg2maria.ddl_missing(literal text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
    SELECT CASE
        WHEN e LIKE '"%' THEN regexp_replace(substr(e, 2, length(e) - 2), '\\(.)', '\1', 'g')
        WHEN e = 'NULL' THEN NULL
        ELSE e
    END
    FROM (SELECT substr(literal, 2, length(literal) - 2) AS e) AS element
$$;

-- A table's shape as of now (inside the command's transaction: its place in the stream).
-- columns: [attnum, name, type, the value rows added before the column hold (atthasmissing:
-- a constant default of ADD COLUMN) or null], generated columns too (wal2json carries them).
-- root: for a partition, its partitioned root.
CREATE OR REPLACE FUNCTION pg2maria.ddl_shape(rel oid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'oid', c.oid,
        'schema', n.nspname,
        'name', c.relname,
        'kind', c.relkind,
        'persistence', c.relpersistence,
        'root', CASE WHEN c.relispartition THEN (
            SELECT pg_catalog.jsonb_build_array(rn.nspname, r.relname)
              FROM pg_catalog.pg_class r
              JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
             WHERE r.oid = pg_catalog.pg_partition_root(c.oid)) END,
        'columns', COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
                       a.attnum, a.attname, pg2maria.ddl_type(a.atttypid, a.atttypmod),
                       CASE WHEN a.atthasmissing
                            THEN pg2maria.ddl_missing(a.attmissingval::text)
                            -- A partitioned table holds no rows: its partitions have the
                            -- value (one ADD COLUMN gave them all the same).
                            WHEN c.relkind = 'p' THEN (
                                SELECT pg2maria.ddl_missing(l.attmissingval::text)
                                  FROM pg_catalog.pg_partition_tree(c.oid) t
                                  JOIN pg_catalog.pg_attribute l
                                    ON l.attrelid = t.relid AND l.attname = a.attname
                                 WHERE t.isleaf AND l.atthasmissing
                                 LIMIT 1) END)
                   ORDER BY a.attnum)
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'),
        'key', COALESCE((
            SELECT pg_catalog.jsonb_agg(a.attname ORDER BY k.n)
              FROM pg_catalog.pg_index i
              JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary AND i.indimmediate), '[]'))
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = rel
$$;

-- Every partition (any level) and its root, as a JSON object {"partition oid": root oid}.
CREATE OR REPLACE FUNCTION pg2maria.ddl_partitions() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(c.oid::text, pg_catalog.pg_partition_root(c.oid)::oid),
                    '{}')
      FROM pg_catalog.pg_class c
     WHERE c.relispartition
$$;

-- Whether a table holds rows of its own (a leaf partition that was attached or detached).
CREATE OR REPLACE FUNCTION pg2maria.ddl_holds_rows(rel oid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) IS DISTINCT FROM 'r' THEN
        RETURN false;  -- partitioned (its leaves are listed too), or foreign: no rows here
    END IF;
    EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', rel::pg_catalog.regclass)
       INTO found;
    RETURN found;
END
$$;

CREATE OR REPLACE FUNCTION pg2maria.ddl_emit(body jsonb) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT NULL::void FROM pg_catalog.pg_logical_emit_message(true, 'pg2maria.ddl', body::text) $$;

CREATE OR REPLACE FUNCTION pg2maria.ddl_start() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.set_config('pg2maria.partitions', pg2maria.ddl_partitions()::text, true);
END
$$;

CREATE OR REPLACE FUNCTION pg2maria.ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 3
SET bytea_output = 'hex'
AS $$
DECLARE
    before jsonb := NULLIF(pg_catalog.current_setting('pg2maria.partitions', true), '')::jsonb;
    now_ jsonb;
    tables jsonb := '[]';
    shape jsonb;
    rel oid;
BEGIN
    -- The tables the command names, and their inheritance children (an ALTER TABLE of a
    -- parent changes them too, and they are tables of their own in the target).
    FOR rel IN
        WITH RECURSIVE touched(oid) AS (
            SELECT d.objid
              FROM pg_catalog.pg_event_trigger_ddl_commands() d
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.object_type IN ('table', 'table column')
            UNION
            SELECT i.inhrelid
              FROM touched t
              JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid
              JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid AND NOT c.relispartition
        )
        SELECT touched.oid FROM touched
    LOOP
        shape := pg2maria.ddl_shape(rel);
        CONTINUE WHEN shape IS NULL OR shape->>'kind' NOT IN ('r', 'p');
        IF shape->>'kind' = 'p' AND before IS NOT NULL THEN
            now_ := COALESCE(now_, pg2maria.ddl_partitions());
            -- Partitions that came or went with this command, and whether they hold rows.
            shape := shape || pg_catalog.jsonb_build_object(
                'attached', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
                               p.key, pg2maria.ddl_holds_rows(p.key::oid)))
                      FROM pg_catalog.jsonb_each_text(now_) p
                     WHERE p.value = rel::text AND before->>p.key IS DISTINCT FROM rel::text),
                    '[]'),
                'detached', COALESCE((
                    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
                               p.key, pg2maria.ddl_holds_rows(p.key::oid)))
                      FROM pg_catalog.jsonb_each_text(before) p
                     WHERE p.value = rel::text AND now_->>p.key IS DISTINCT FROM rel::text),
                    '[]'));
        END IF;
        tables := tables || pg_catalog.jsonb_build_array(shape);
    END LOOP;
    IF pg_catalog.jsonb_array_length(tables) > 0 THEN
        PERFORM pg2maria.ddl_emit(pg_catalog.jsonb_build_object(
            'v', 1, 'event', 'ddl', 'tag', tg_tag, 'tables', tables));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pg2maria.ddl_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before jsonb := NULLIF(pg_catalog.current_setting('pg2maria.partitions', true), '')::jsonb;
    tables jsonb;
BEGIN
    WITH dropped AS (
        SELECT d.objid, d.schema_name, d.object_name
          FROM pg_catalog.pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'table'
    )
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'oid', d.objid, 'schema', d.schema_name, 'name', d.object_name,
               -- The root of a dropped partition: still there, or dropped by the same command.
               'root', COALESCE(
                   (SELECT pg_catalog.jsonb_build_array(rn.nspname, r.relname)
                      FROM pg_catalog.pg_class r
                      JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
                     WHERE r.oid = (before->>d.objid::text)::oid),
                   (SELECT pg_catalog.jsonb_build_array(o.schema_name, o.object_name)
                      FROM dropped o WHERE o.objid = (before->>d.objid::text)::oid)))
           ORDER BY d.objid)
      INTO tables
      FROM dropped d;
    IF tables IS NOT NULL THEN
        PERFORM pg2maria.ddl_emit(pg_catalog.jsonb_build_object(
            'v', 1, 'event', 'drop', 'tag', tg_tag, 'tables', tables));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pg2maria.ddl_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shape jsonb := pg2maria.ddl_shape(pg_catalog.pg_event_trigger_table_rewrite_oid());
BEGIN
    IF shape IS NOT NULL THEN
        PERFORM pg2maria.ddl_emit(pg_catalog.jsonb_build_object(
            'v', 1, 'event', 'rewrite', 'tag', tg_tag,
            'reason', pg_catalog.pg_event_trigger_table_rewrite_reason(),
            'tables', pg_catalog.jsonb_build_array(shape)));
    END IF;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pg2maria FROM PUBLIC;

DROP EVENT TRIGGER IF EXISTS pg2maria_ddl_start;
DROP EVENT TRIGGER IF EXISTS pg2maria_ddl_end;
DROP EVENT TRIGGER IF EXISTS pg2maria_ddl_drop;
DROP EVENT TRIGGER IF EXISTS pg2maria_ddl_rewrite;
CREATE EVENT TRIGGER pg2maria_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION pg2maria.ddl_start();
CREATE EVENT TRIGGER pg2maria_ddl_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
    EXECUTE FUNCTION pg2maria.ddl_end();
CREATE EVENT TRIGGER pg2maria_ddl_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED', 'ALTER TABLE')
    EXECUTE FUNCTION pg2maria.ddl_drop();
CREATE EVENT TRIGGER pg2maria_ddl_rewrite ON table_rewrite
    EXECUTE FUNCTION pg2maria.ddl_rewrite();

COMMIT;
