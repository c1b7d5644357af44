"""A complete, valid set of CDC_* settings for unit tests, with recognisable passwords (so a
test can check none of them reaches a log or a repr)."""

from __future__ import annotations

SOURCE_DSN = "postgresql://rep:pg-s3cret@pg.example:5432/app"
BROKER_URL = "amqp://cdc:rabbit-s3cret@rabbit.example:5672/%2F"
TARGET_URL = "mariadb+mariadbconnector://app:maria-s3cret@maria.example:3306/target"
PASSWORDS = ("pg-s3cret", "rabbit-s3cret", "maria-s3cret")


def full_env(**overrides: str) -> dict[str, str]:
    env = {
        "CDC_SOURCE_DSN": SOURCE_DSN,
        "CDC_SLOT": "cdc_main",
        "CDC_TABLES": 'public.orders, "Mixed Case".items, lines',
        "CDC_BROKER_URL": BROKER_URL,
        "CDC_TARGET_URL": TARGET_URL,
        "CDC_LOG_LEVEL": "debug",
        "CDC_METRICS_PORT": "9100",
    }
    env.update(overrides)
    return env
