#!/usr/bin/python3
"""Client-side timeouts: authentication_timeout closes connections that never finish
startup; client_idle_limit ends sessions idle outside a transaction with 57P05."""

import struct
import time

import harness
from harness import Connection, RawConnection, check, check_equal, next_query_error, pgpilot_only

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
                Connection(px.port) as busy:
            in_transaction.execute("BEGIN")
            for _ in range(4):  # busy keeps talking: never idle for a whole second
                busy.scalar("SELECT 1")
                time.sleep(LIMIT_S / 2)
            check_equal(busy.scalar("SELECT 'busy'"), "busy", "a session that never idles")
            check_equal(in_transaction.scalar("SELECT 'in transaction'"), "in transaction",
                        "a session idle inside a transaction")
            in_transaction.execute("COMMIT")
            sqlstate, text = next_query_error(idle)
            check(sqlstate == "57P05" or "idle-session timeout" in text,
                  f"the idle session saw SQLSTATE {sqlstate}: {text!r}")


if __name__ == "__main__":
    raise SystemExit(harness.main())
