"""The applier: RabbitMQ -> idempotent upserts and deletes in MariaDB."""
