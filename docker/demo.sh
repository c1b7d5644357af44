#!/usr/bin/env bash
# The compose demo service: once the extractor streams its slot, run sql/demo.sql on the source
# (as make demo does), then exit. Again at any time: docker compose run --rm demo
set -euo pipefail

active=""
for _ in $(seq 1 120); do
    active=$(psql -X -A -t -q -v slot="${SLOT:?}" \
        <<<"SELECT active FROM pg_replication_slots WHERE slot_name = :'slot'" || true)
    [ "$active" = t ] && break
    sleep 1
done
if [ "$active" != t ]; then
    echo "demo: the extractor has not started streaming slot ${SLOT} within 120 s" >&2
    exit 1
fi

echo "demo: running sql/demo.sql on the source database ${PGDATABASE}"
psql -X -q -v ON_ERROR_STOP=1 -f /cdc/sql/demo.sql
echo "demo: done; the applier copies the changes to MariaDB within about a second:"
echo "  docker compose exec mariadb mariadb -u${APPLIER_USER:-cdc_applier} -p ${TARGET_DB:-cdc_target} -e 'SELECT * FROM customers'"
