#!/usr/bin/python3
"""Query cancellation through pgpilot, with libpq's PQcancel and with a wrong key."""

import random
import time

import harness
from harness import Connection, RawConnection, cancel_request, check, check_equal

CANCEL_AFTER_S = 0.5
RESULT_WITHIN_S = 1.0  # after the cancel


def cancel_and_time(conn):
    """Cancel the running query; returns (result, seconds from the cancel to the result)."""
    conn.cancel()
    sent = time.monotonic()
    result = conn.wait_result(timeout=10)
    return result, time.monotonic() - sent


def test_cancel_running_query(env):
    with env.pgpilot() as px, Connection(px.port) as conn:
        conn.send_query("SELECT pg_sleep(30)")
        time.sleep(CANCEL_AFTER_S)
        result, elapsed = cancel_and_time(conn)
        check_equal(result.sqlstate, "57014", f"SQLSTATE after the cancel ({result.error.strip()})")
        check(elapsed < RESULT_WITHIN_S, f"the canceled result took {elapsed:.2f}s after the cancel")
        check_equal(conn.scalar("SELECT 'works again'"), "works again", "query after the cancel")


def test_cancel_with_wrong_key_does_nothing(env):
    with env.pgpilot() as px, Connection(px.port) as conn:
        conn.send_query("SELECT pg_sleep(30)")
        time.sleep(CANCEL_AFTER_S)
        # The right pid with a wrong key, as a CancelRequest on its own connection.
        with RawConnection(px.port) as raw:
            raw.send(cancel_request(conn.backend_pid, random.Random(7).getrandbits(32)))
            raw.read_until_closed()
        try:
            conn.wait_result(timeout=1.5)
        except harness.TestFailure:
            pass  # still running: what we want
        else:
            raise harness.TestFailure("the query ended after a cancel with a wrong key")
        result, elapsed = cancel_and_time(conn)
        check_equal(result.sqlstate, "57014", "SQLSTATE after the proper cancel")
        check(elapsed < RESULT_WITHIN_S, f"the canceled result took {elapsed:.2f}s after the cancel")
        check_equal(conn.scalar("SELECT 1"), "1", "query after the cancel")


def test_cancel_handled_by_another_worker(env):
    """The CancelRequest is looked up and forwarded on another worker thread than the session's.

    Over the unix socket, worker 0 accepts every connection and hands them to the workers in
    turn (2 workers in the harness's config, nothing else connects to that socket), so the
    connection PQcancel opens right after the session's lands on the other worker. Over TCP the
    kernel picks the worker (SO_REUSEPORT), which may be the session's own."""
    with env.pgpilot(unix_socket=True) as px, Connection(px.port, host=px.socket_dir) as conn:
        check_equal(px.config["server"]["workers"], 2, "workers")
        conn.send_query("SELECT pg_sleep(30)")
        time.sleep(CANCEL_AFTER_S)
        result, elapsed = cancel_and_time(conn)
        check_equal(result.sqlstate, "57014", f"SQLSTATE after the cancel ({result.error.strip()})")
        check(elapsed < RESULT_WITHIN_S, f"the canceled result took {elapsed:.2f}s after the cancel")
        check_equal(conn.scalar("SELECT 'works again'"), "works again", "query after the cancel")


if __name__ == "__main__":
    raise SystemExit(harness.main())
