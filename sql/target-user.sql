-- The applier's MariaDB user: what it needs in the target database and nothing more.
--   SELECT, INSERT, UPDATE, DELETE  the rows (a TRUNCATE in the source is a DELETE here)
--   CREATE                          tables for new source tables, _cdc_checkpoint, _cdc_columns,
--                                   _cdc_tables, _cdc_relations
--   ALTER                           columns added, renamed, dropped or changing type in the
--                                   source, a key it gains (RENAME TABLE needs ALTER and DROP
--                                   on the old name)
--   CREATE TEMPORARY TABLES         the staging table of the bulk path: a large batch for one
--                                   table is loaded (LOAD DATA LOCAL INFILE) into a temporary
--                                   table of the session, then upserted or deleted from there
--   DROP                            schema changes the DDL capture reports (sql/ddl-capture.sql):
--                                   a table renamed or dropped in the source, a table created
--                                   again under a name the target still holds
-- No GRANT, no global privilege. Run as an administrator:
--
--   mariadb -e "SET @db='cdc_target', @user='cdc_applier', @host='%', @password='...';
--               SOURCE sql/target-user.sql"
--
-- Unset variables default to cdc_target, cdc_applier, % and change-me. For tables mapped to
-- other databases (target.schemas), run it once more with @db set to each of them.
SET @db = COALESCE(@db, 'cdc_target');
SET @user = COALESCE(@user, 'cdc_applier');
SET @host = COALESCE(@host, '%');
SET @password = COALESCE(@password, 'change-me');

SET @account = CONCAT(QUOTE(@user), '@', QUOTE(@host));
SET @sql = CONCAT('CREATE USER IF NOT EXISTS ', @account, ' IDENTIFIED BY ', QUOTE(@password));
PREPARE stmt FROM @sql;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;
SET @sql = CONCAT(
    'GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, CREATE TEMPORARY TABLES ON `', REPLACE(@db, '`', '``'),
    '`.* TO ', @account
);
PREPARE stmt FROM @sql;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;
