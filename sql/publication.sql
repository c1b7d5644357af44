-- The publication the extractor streams with source.decoder = pgoutput, made by a role that
-- may: the extractor makes it itself when its role owns the captured tables (CREATE
-- PUBLICATION ... FOR TABLE needs ownership of each table, and CREATE on the database); when it
-- does not, run this once, as a superuser, in the source database, BEFORE the extractor's
-- first start (pgoutput reads the publication as of each change, so a slot made before it
-- cannot stream):
--
--   psql -d <source db> -v publication=cdc_<slot> -f sql/publication.sql
--
-- FOR ALL TABLES covers tables created later too, with nothing more to do; the extractor still
-- captures only what source.tables says. To publish only some tables instead (and add each new
-- one by hand, which the extractor then copies), as their owner:
--
--   CREATE PUBLICATION cdc_<slot> FOR TABLE public.orders, public.lines
--       WITH (publish_via_partition_root = false);
--
-- publish_via_partition_root stays false: with true, PostgreSQL publishes nothing for a
-- TRUNCATE of a single partition (partitions.py renames partitions to their root itself).
\set ON_ERROR_STOP on
\if :{?publication}
\else
\echo 'set the publication name: -v publication=cdc_<slot>'
\quit
\endif
CREATE PUBLICATION :"publication" FOR ALL TABLES WITH (publish_via_partition_root = false);
