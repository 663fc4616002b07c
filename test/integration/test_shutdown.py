#!/usr/bin/python3
"""SIGTERM: idle clients are told FATAL 57P01 and pgpilot exits 0."""

import harness
from harness import Connection, PgError, check, check_equal

ADMIN_SHUTDOWN = "57P01"
ADMIN_SHUTDOWN_TEXT = "terminating connection due to administrator command"


def next_query_error(conn):
    """The error the client's next query meets (libpq reads the pending FATAL)."""
    try:
        result = conn.execute("SELECT 1")
    except PgError as e:  # no PGresult at all: only the connection's error message
        return None, str(e)
    check(not result.ok, "a query after the shutdown succeeded")
    return result.sqlstate, result.error + conn.error_message()


def test_sigterm_with_idle_session(env):
    with env.pgpilot() as px, Connection(px.port) as idle, Connection(px.port) as other:
        check_equal(idle.scalar("SELECT 1"), "1", "query before the shutdown")
        if env.direct:
            # No pgpilot to stop: end the session the way PostgreSQL does on shutdown.
            other.query(f"SELECT pg_terminate_backend({idle.scalar('SELECT pg_backend_pid()')})")
        else:
            check_equal(px.terminate(), 0, "pgpilot exit code after SIGTERM")
        sqlstate, text = next_query_error(idle)
        check(sqlstate == ADMIN_SHUTDOWN or ADMIN_SHUTDOWN_TEXT in text,
              f"the idle client saw SQLSTATE {sqlstate}: {text!r}")


if __name__ == "__main__":
    raise SystemExit(harness.main())
