# PostgreSQL 15 as a source for the extractor: wal2json installed, logical decoding on.
#   docker build -f docker/postgres.Dockerfile -t pg2maria-cdc-postgres:15 docker
# The settings are the ones devstack/postgres.py writes for the local servers
# (REPLICATION_SETTINGS; tests/integration/test_containers.py keeps the two equal). They are
# arguments of the server command, so a compose `command:` that replaces it must repeat them.
FROM postgres:15-bookworm
# The image's own apt source (PostgreSQL's Debian repository) has wal2json for its server.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15-wal2json \
    && rm -rf /var/lib/apt/lists/*
CMD ["postgres", \
     "-c", "wal_level=logical", \
     "-c", "max_replication_slots=64", \
     "-c", "max_wal_senders=64", \
     "-c", "output_plugin_libraries=pgoutput, test_decoding, wal2json"]
