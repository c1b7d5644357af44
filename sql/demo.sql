-- A small shop, to watch the pipeline copy it to MariaDB.
-- Run against the source database (make demo does it for you); it can run again and again.

CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    email       varchar(120),
    balance     numeric(14, 2) NOT NULL DEFAULT 0,
    vip         boolean NOT NULL DEFAULT false,
    signed_up   timestamptz NOT NULL,
    profile     jsonb
);

CREATE TABLE IF NOT EXISTS order_lines (
    order_id    integer,
    line_no     smallint,
    sku         varchar(32) NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(12, 4) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Start from empty tables; TRUNCATE is replicated too.
TRUNCATE customers, order_lines;

-- Inserts: quotes, backslashes, unicode, emoji, exact numerics, time zones.
INSERT INTO customers (id, name, email, balance, vip, signed_up, profile) VALUES
    (1, 'Ada Lovelace',        'ada@example.org',    1234567890.12, true,  '2024-02-29 07:04:56.123456+00', '{"lang": "en", "tags": ["math", "engines"]}'),
    (2, 'O''Brien, Máire',     'maire@example.ie',   0.10,          false, '2024-03-31 23:59:59+01',        '{"lang": "ga", "note": "fáilte"}'),
    (3, 'Zoë "Z" Ñúñez',       NULL,                 -42.00,        false, '2023-12-31 18:30:00-05:30',     NULL),
    (4, E'back\\slash\ttab',   'weird@example.com',  99999999.99,   true,  '2000-01-01 00:00:00+14',        '{"price": 19.99, "big": 12345678901234567890}'),
    (5, '东京 🍣 Tōkyō',        'tokyo@example.jp',   0.01,          false, now(),                           '{"emoji": "🍣🍜"}');

-- A multi-statement transaction: an order with three lines, and the customer pays.
BEGIN;
INSERT INTO order_lines VALUES
    (1001, 1, 'SKU-A', 2, 19.9900),
    (1001, 2, 'SKU-B', 1, 0.0001),
    (1001, 3, 'SKU-C', 10, 1234.5678);
UPDATE customers SET balance = balance - (2 * 19.99 + 0.0001 * 1 + 10 * 1234.5678)::numeric(14, 2)
    WHERE id = 1;
COMMIT;

-- Updates, including one that changes a primary key (the row moves).
UPDATE customers SET email = 'ada@lovelace.example', vip = false WHERE id = 1;
UPDATE order_lines SET line_no = 4 WHERE order_id = 1001 AND line_no = 3;
UPDATE order_lines SET quantity = quantity + 1 WHERE order_id = 1001;

-- Deletes.
DELETE FROM order_lines WHERE order_id = 1001 AND line_no = 2;
DELETE FROM customers WHERE id = 3;

-- A transaction that rolls back leaves no trace anywhere.
BEGIN;
DELETE FROM customers;
ROLLBACK;

-- A larger transaction: 2,000 lines in one commit.
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price)
SELECT 2000 + g / 100, g % 100, 'BULK-' || g, g % 7 + 1, round((g * 1.0001)::numeric, 4)
FROM generate_series(0, 1999) AS g;
