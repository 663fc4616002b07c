#!/usr/bin/python3
"""Client-side timeouts: authentication_timeout closes connections that never finish
startup; client_idle_limit ends sessions idle outside a transaction with 57P05;
idle_in_transaction_timeout ends sessions idle inside one with 25P03 and rolls it back."""

import struct
import time

import harness
from harness import (Connection, RawConnection, check, check_equal, next_query_error,
                     pgpilot_only, psql_value)

LIMIT_S = 1


@pgpilot_only
def test_authentication_timeout_closes_silent_connections(env):
    with env.pgpilot(pool={"authentication_timeout": LIMIT_S}) as px:
        started = time.monotonic()
        with RawConnection(px.port, timeout=LIMIT_S + 4) as silent, \
                RawConnection(px.port, timeout=LIMIT_S + 4) as partial:
            partial.send(struct.pack("!I", 64) + b"\0\3\0\0user\0")  # half a startup packet
            for raw in (silent, partial):
                received = raw.read_until_closed()  # PostgreSQL sends nothing on this timeout
                check_equal(received, [], "messages before the close")
        elapsed = time.monotonic() - started
        check(LIMIT_S * 0.8 <= elapsed < LIMIT_S + 3, f"closed after {elapsed:.1f}s (limit {LIMIT_S}s)")
        with Connection(px.port) as conn:
            check_equal(conn.scalar("SELECT 'ok'"), "ok", "a normal login afterwards")


@pgpilot_only
def test_client_idle_limit_ends_idle_sessions_only(env):
    with env.pgpilot(pool={"client_idle_limit": LIMIT_S}) as px:
        with Connection(px.port) as idle, Connection(px.port) as in_transaction, \
                Connection(px.port) as busy, Connection(px.port) as idle_after_query:
            # Its read of the client begins before the answer is back: tick() ends it.
            check_equal(idle_after_query.scalar("SELECT 'answered'"), "answered", "a query")
            in_transaction.execute("BEGIN")
            for _ in range(4):  # busy keeps talking: never idle for a whole second
                busy.scalar("SELECT 1")
                time.sleep(LIMIT_S / 2)
            check_equal(busy.scalar("SELECT 'busy'"), "busy", "a session that never idles")
            check_equal(in_transaction.scalar("SELECT 'in transaction'"), "in transaction",
                        "a session idle inside a transaction")
            in_transaction.execute("COMMIT")
            for who, conn in (("idle session", idle), ("session idle after a query",
                                                        idle_after_query)):
                sqlstate, text = next_query_error(conn)
                check(sqlstate == "57P05" or "idle-session timeout" in text,
                      f"the {who} saw SQLSTATE {sqlstate}: {text!r}")



@pgpilot_only
def test_idle_in_transaction_timeout_rolls_back_and_frees_the_connection(env):
    """Transaction pooling, pool_size 1: a client that stops talking inside a transaction is
    ended with 25P03 after the limit, its insert rolled back and its server connection closed,
    so that a client waiting for the pool gets in; clients idle outside a transaction, or
    talking inside one, stay."""
    app = "itest_idle_in_tx"
    psql_value(env.primary_port, "CREATE TABLE IF NOT EXISTS itest_idle_in_tx (who text)")
    psql_value(env.primary_port, "TRUNCATE itest_idle_in_tx")
    pool = {"pool_mode": "transaction", "pool_size": 1, "query_wait_timeout": 0,
            "idle_in_transaction_timeout": LIMIT_S}
    with env.pgpilot(pool=pool, load_balance={"enabled": False}) as px:
        with Connection(px.port, application_name=app) as stuck, \
                Connection(px.port, application_name=app) as waiter, \
                Connection(px.port, application_name=app) as idle:
            stuck.query("BEGIN")
            stuck.query("INSERT INTO itest_idle_in_tx VALUES ('stuck')")
            started = time.monotonic()
            waiter.send_query("SELECT 'waiter in'")  # waits for the only server connection
            check_equal(waiter.wait_result(LIMIT_S + 5).rows, [("waiter in",)],
                        "the waiting client's answer once the stuck one is ended")
            elapsed = time.monotonic() - started
            check(LIMIT_S * 0.8 <= elapsed < LIMIT_S + 3,
                  f"the waiter got in after {elapsed:.1f}s (limit {LIMIT_S}s)")
            sqlstate, text = next_query_error(stuck)
            check(sqlstate == "25P03" or "idle-in-transaction timeout" in text,
                  f"the idle-in-transaction client saw SQLSTATE {sqlstate}: {text!r}")
            check_equal(psql_value(env.primary_port, "SELECT count(*) FROM itest_idle_in_tx"),
                        "0", "the stuck transaction's insert is rolled back")
            check_equal(psql_value(env.primary_port,
                                   "SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                   f"= '{app}' AND state LIKE 'idle in transaction%'"),
                        "0", "no server connection left idle in the transaction")
            check_equal(idle.scalar("SELECT 'idle outside'"), "idle outside",
                        "a client idle outside a transaction stays")
            waiter.query("BEGIN")
            for _ in range(4):  # talks every half limit: never idle for a whole one
                waiter.query("INSERT INTO itest_idle_in_tx VALUES ('talker')")
                time.sleep(LIMIT_S / 2)
            waiter.query("COMMIT")
            check_equal(psql_value(env.primary_port, "SELECT count(*) FROM itest_idle_in_tx"),
                        "4", "the talking client's transaction committed")

if __name__ == "__main__":
    raise SystemExit(harness.main())
