"""The extractor: PostgreSQL logical replication slot (wal2json or pgoutput) -> RabbitMQ."""
