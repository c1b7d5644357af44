# Run by the mariadb image at the first start of an empty data directory (mounted into
# /docker-entrypoint-initdb.d by compose.yaml): the applier's least-privilege user from
# sql/target-user.sql, on MARIADB_DATABASE, with its name and password from the environment.

# A MariaDB string literal: backslashes and quotes doubled.
cdc_sql_literal() {
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

# The image sources this file (it is not executable), so its own client function is at hand;
# executed instead, connect as it does: root, over the temporary server's socket.
cdc_run_sql() {
    if declare -F docker_process_sql >/dev/null; then
        docker_process_sql
    else
        MYSQL_PWD="${MARIADB_ROOT_PASSWORD:?}" mariadb --protocol=socket --user=root
    fi
}

cdc_run_sql <<SQL
SET @db = $(cdc_sql_literal "${MARIADB_DATABASE:?}"),
    @user = $(cdc_sql_literal "${APPLIER_USER:?}"),
    @host = '%',
    @password = $(cdc_sql_literal "${APPLIER_PASSWORD:?}");
SOURCE /cdc/sql/target-user.sql
SQL
