#!/usr/bin/python3
"""Session pooling: the next client with the same user/database/startup parameters
reuses the backend connection, reset (DISCARD ALL) so that it sees none of the
previous client's session state."""

import time

import harness
from harness import Connection, check, check_equal, pgpilot_only

# Each worker thread keeps its own idle backend connections: with one worker,
# the second client is sure to find the first one's backend.
ONE_WORKER = {"workers": 1}
# These tests look at one backend connection: keep reads on the primary too (load balancing
# and pooled standby connections are covered by test_routing.py).
NO_LB = {"enabled": False}
RETURN_TO_POOL_S = 0.3  # time for pgpilot to see the close and reset the backend


@pgpilot_only
def test_backend_reused_and_reset(env):
    with env.pgpilot(server=ONE_WORKER, load_balance=NO_LB) as px:
        with Connection(px.port) as first:
            first_pid = first.scalar("SELECT pg_backend_pid()")
            default_search_path = first.scalar("SHOW search_path")
            first.query("SET search_path = foo; SET application_name = 'itest_pooling'; "
                        "CREATE TEMP TABLE itest_pool_tmp (a int); PREPARE itest_stmt AS SELECT 1")
            check_equal(first.scalar("SHOW search_path"), "foo", "search_path after SET")
        time.sleep(RETURN_TO_POOL_S)
        with Connection(px.port) as second:
            check_equal(second.scalar("SELECT pg_backend_pid()"), first_pid, "backend pid of the second client")
            check_equal(second.scalar("SHOW search_path"), default_search_path, "search_path")
            check_equal(second.scalar("SHOW application_name"), "", "application_name")
            check_equal(second.scalar("SELECT to_regclass('pg_temp.itest_pool_tmp')"), None, "the temp table")
            check_equal(second.scalar("SELECT count(*) FROM pg_prepared_statements"), "0", "prepared statements")


@pgpilot_only
def test_different_user_gets_another_backend(env):
    with env.pgpilot(server=ONE_WORKER, load_balance=NO_LB, auth={"method": "trust", "backend_password": "secret"}) as px:
        with Connection(px.port) as first:
            first_pid = first.scalar("SELECT pg_backend_pid()")
        time.sleep(RETURN_TO_POOL_S)
        with Connection(px.port, user="alice") as other:
            check_equal(other.scalar("SELECT current_user"), "alice", "current_user")
            check(other.scalar("SELECT pg_backend_pid()") != first_pid,
                  "a client of another user got the postgres user's backend")


if __name__ == "__main__":
    raise SystemExit(harness.main())
