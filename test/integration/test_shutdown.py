#!/usr/bin/python3
"""SIGTERM: idle clients are told FATAL 57P01 and pgpilot exits 0."""

import harness
from harness import Connection, check, check_equal, next_query_error

ADMIN_SHUTDOWN = "57P01"
ADMIN_SHUTDOWN_TEXT = "terminating connection due to administrator command"


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
