# Run by the postgres image at the first start of an empty data directory (mounted into
# /docker-entrypoint-initdb.d by compose.yaml): the extractor's least-privilege role from
# sql/source-role.sql, in POSTGRES_DB, with its name and password from the environment.
# The script is run as POSTGRES_USER, who also runs sql/demo.sql (the demo service), so the
# tables the demo creates are readable by the role (ALTER DEFAULT PRIVILEGES).
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
    --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
    -v role="${EXTRACTOR_ROLE:?}" -v password="${EXTRACTOR_PASSWORD:?}" -v schema=public \
    -f /cdc/sql/source-role.sql
