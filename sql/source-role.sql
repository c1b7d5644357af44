-- The extractor's PostgreSQL role: LOGIN and REPLICATION, and SELECT on the captured tables
-- (for the initial copy and backfills). Nothing else: it owns nothing, writes no table (its
-- heartbeats and backfill requests are WAL messages, pg_logical_emit_message), and needs no
-- superuser. Run as a superuser (or a role with CREATEROLE that owns the tables), once per
-- schema whose tables are captured, in the source database:
--
--   psql -d <source db> -v role=cdc_extractor -v password='...' -v schema=public \
--        -v owner=app -f sql/source-role.sql
--
-- role, password and schema default to cdc_extractor, change-me and public. owner is the
-- role that creates the application's tables (default: the role running this script): tables
-- it creates later are readable by the extractor too (ALTER DEFAULT PRIVILEGES).
\set ON_ERROR_STOP on
\if :{?role}
\else
\set role cdc_extractor
\endif
\if :{?password}
\else
\set password change-me
\endif
\if :{?schema}
\else
\set schema public
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS create_role \gset
\if :create_role
CREATE ROLE :"role" LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
\else
ALTER ROLE :"role" LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
\endif
GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"role";
\if :{?owner}
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"role";
\else
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"role";
\endif
