#!/usr/bin/python3
"""max_client_connections queues the clients beyond it inside pgpilot; with
reserved_connections they are refused at once with 53300."""

import threading
import time

import harness
from harness import Connection, check, check_equal, pgpilot_only, psql_value

MAX_CLIENTS = 50
CLIENTS = 80
RESERVED = 5
# Long enough for the first 50 to overlap even when pgpilot is slow to let them in (a sanitizer
# build on a busy machine: at 0.5 s, a ThreadSanitizer run saw only 22 at once).
HOLD_S = 1.5
# Clients beyond the limit wait for a slot inside their startup, which libpq's connect_timeout
# (10 s in the harness) counts: give them room for a slow build.
CONNECT_TIMEOUT_S = 60
# Queries running for the test's clients (idle pooled backend connections do not count).
RUNNING = ("SELECT count(*) FROM pg_stat_activity "
           "WHERE application_name = 'itest_limits' AND state = 'active'")


@pgpilot_only
def test_clients_beyond_the_limit_wait_their_turn(env):
    with env.pgpilot(pool={"max_client_connections": MAX_CLIENTS, "max_pool": CLIENTS,
                           "pool_size": CLIENTS}) as px:
        errors, done = [], []
        peak = [0]

        def client(i):
            try:
                with Connection(px.port, application_name="itest_limits",
                                connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    check_equal(conn.scalar(f"SELECT {i} FROM pg_sleep({HOLD_S})"), str(i), "result")
                    done.append(i)
            except BaseException as e:  # collected, reported below
                errors.append(f"client {i}: {e}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], int(psql_value(env.primary_port, RUNNING)))
            time.sleep(0.05)
        for t in threads:
            t.join()
        check_equal(errors, [], "client errors")
        check_equal(len(done), CLIENTS, "clients that completed")
        check(peak[0] <= MAX_CLIENTS, f"{peak[0]} queries at once for at most {MAX_CLIENTS} clients")
        check(peak[0] >= MAX_CLIENTS // 2, f"only {peak[0]} queries at once: did clients run at all?")


@pgpilot_only
def test_reserved_connections_refuse_at_once(env):
    pool = {"max_client_connections": MAX_CLIENTS, "reserved_connections": RESERVED,
            "pool_size": MAX_CLIENTS}
    with env.pgpilot(pool=pool) as px:
        held = [Connection(px.port) for _ in range(MAX_CLIENTS - RESERVED)]
        try:
            for conn in held:
                check_equal(conn.scalar("SELECT 1"), "1", "a client within the limit")
            started = time.monotonic()
            try:
                Connection(px.port).close()
            except harness.PgError as e:
                refused = str(e)
            else:
                raise harness.TestFailure(f"client {MAX_CLIENTS - RESERVED + 1} was accepted")
            elapsed = time.monotonic() - started
            check("sorry, too many clients already" in refused, f"the refusal: {refused!r}")
            check(elapsed < 2, f"the refusal took {elapsed:.1f}s")
        finally:
            for conn in held:
                conn.close()
        with Connection(px.port) as conn:  # slots came back
            check_equal(conn.scalar("SELECT 'again'"), "again", "a client after the others left")


if __name__ == "__main__":
    raise SystemExit(harness.main())
