-- The publication the extractor streams with source.decoder = pgoutput, made by a role that
-- may: the extractor makes it itself when its role owns the captured tables (CREATE
-- PUBLICATION ... FOR TABLE needs ownership of each table, and CREATE on the database); when it
-- does not, run this once, as a superuser, in the source database, BEFORE the extractor's
-- first start (pgoutput reads the publication as of each change, so a slot made before it
-- cannot stream):
--
--   psql -d <source db> -v publication=cdc_<slot> -f sql/publication.sql
--
-- With -v tables='public.orders, public.lines' it publishes those tables (add each new one
-- later with ALTER PUBLICATION cdc_<slot> ADD TABLE ...; the extractor then copies it). Without,
-- FOR ALL TABLES: tables created later are covered with nothing more to do (the extractor still
-- captures only what source.tables says), BUT PostgreSQL then refuses every UPDATE and DELETE
-- on any table of the database that has neither a primary key nor a replica identity ("cannot
-- update table ... because it does not have a replica identity and publishes updates"): give
-- such tables REPLICA IDENTITY FULL first, or list the captured tables.
--
-- publish_via_partition_root stays false: with true, PostgreSQL publishes nothing for a
-- TRUNCATE of a single partition (partitions.py renames partitions to their root itself).
\set ON_ERROR_STOP on
\if :{?publication}
\else
\echo 'set the publication name: -v publication=cdc_<slot>'
\quit
\endif
\if :{?tables}
CREATE PUBLICATION :"publication" FOR TABLE :tables WITH (publish_via_partition_root = false);
\else
CREATE PUBLICATION :"publication" FOR ALL TABLES WITH (publish_via_partition_root = false);
\endif
