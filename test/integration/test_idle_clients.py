#!/usr/bin/python3
"""Idle clients in transaction pooling. A session idle between transactions without a backend
connection parks: pgpilot frees its coroutines and read buffers and waits for the client with
a plain handler. Parked sessions must cost little memory and come back unchanged: their
settings, prepared statements and own writes, client_idle_limit, shutdown, LISTEN."""

import re
import resource
import struct
import time

import harness
import hostile
from harness import (Connection, RawConnection, check, check_equal, message, next_query_error,
                     pgpilot_only, startup_packet)

TX = {"pool_mode": "transaction"}
DEBUG = {"log_level": "debug"}
PARKED = "parked: idle between transactions"
# pgpilot parks sessions idle for 100 ms (looking every 100 ms) and gives freed heap pages
# back at most once a second. Waiting this long sees both, with room for a busy machine.
PARK_WAIT_S = 3.5
IDLE_CLIENTS = 1000
MAX_BYTES_PER_IDLE_CLIENT = 4096  # issue 4's target


def simple_query(raw, sql):
    """Runs `sql` on a raw connection: its DataRow values (text) up to ReadyForQuery."""
    raw.send(message(b"Q", sql.encode() + b"\0"))
    rows = []
    while True:
        tag, body = raw.read_message()
        if tag == b"E":
            raise harness.TestFailure(f"{sql!r} failed: {harness.error_fields(body)}")
        if tag == b"D":
            (count,) = struct.unpack("!H", body[:2])
            values, pos = [], 2
            for _ in range(count):
                (size,) = struct.unpack("!i", body[pos:pos + 4])
                pos += 4
                values.append(body[pos:pos + size].decode())
                pos += size
            rows.append(values)
        if tag == b"Z":
            return rows


def parked_now(px):
    """Sessions parked now: those whose last line in pgpilot's debug log says it parked. (A
    count of park lines taken after the clients' queries raced with the parks themselves: on a
    slow machine one session parked before the count was taken, and the wait for one more park
    never ended.)"""
    last = {}
    for m in re.finditer(r"^\S+ \S+ UTC \w+ (s\d+) (.*)$", px.log(), re.M):
        last[m.group(1)] = m.group(2)
    return sum(1 for what in last.values() if what.startswith(PARKED))


def wait_parked(px, sessions):
    harness.wait_until(lambda: parked_now(px) >= sessions, 10,
                       f"{sessions} session(s) parked now (log line {PARKED!r})")


@pgpilot_only
def test_a_thousand_idle_clients_cost_under_4_kib_each(env):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    with env.pgpilot(pool=TX) as px:
        pid = px.proc.pid
        with Connection(px.port) as warm:  # one server connection in the pool, as a client left it
            check_equal(warm.scalar("SELECT 1"), "1", "warm-up query")
        time.sleep(PARK_WAIT_S)
        before = hostile.settle_rss(pid)
        clients = []
        try:
            for i in range(IDLE_CLIENTS):
                raw = RawConnection(px.port, timeout=30)
                clients.append(raw)
                last = raw.startup()[-1]
                check_equal(last[0], b"Z", f"client {i}: last message of the login")
            time.sleep(PARK_WAIT_S)
            after = hostile.settle_rss(pid)
            per_client = (after - before) * 1024 / IDLE_CLIENTS
            print(f"VmRSS {before} KiB -> {after} KiB with {IDLE_CLIENTS} idle clients: "
                  f"{per_client:,.0f} bytes per idle client")
            why_not = hostile.sanitizer_build(pid)
            if why_not:
                print(f"not checked against {MAX_BYTES_PER_IDLE_CLIENT} bytes: {why_not}")
            else:
                check(per_client <= MAX_BYTES_PER_IDLE_CLIENT,
                      f"{per_client:,.0f} bytes of pgpilot's memory per idle client "
                      f"(at most {MAX_BYTES_PER_IDLE_CLIENT})")
            # Every one of them is still there and answers.
            for i, raw in enumerate(clients):
                check_equal(simple_query(raw, f"SELECT {i}"), [[str(i)]], f"client {i} after idling")
        finally:
            for raw in clients:
                raw.close()


@pgpilot_only
def test_parked_session_keeps_settings_statements_and_writes(env):
    with Connection(env.primary_port) as direct:
        direct.query("DROP TABLE IF EXISTS itest_parked")
        direct.query("CREATE TABLE itest_parked (id int)")
    with env.pgpilot(pool=TX, server=DEBUG) as px, Connection(px.port) as conn:
        conn.query("SET statement_timeout = '12345ms'")
        conn.prepare("itest_parked_plus_one", "SELECT $1::int + 1")
        conn.query("INSERT INTO itest_parked VALUES (7)")
        wait_parked(px, 1)
        check_equal(conn.scalar("SHOW statement_timeout"), "12345ms", "a SET from before the park")
        check_equal(conn.execute_prepared("itest_parked_plus_one", ["41"]), "42",
                    "a statement prepared before the park")
        check_equal(conn.scalar("SELECT count(*) FROM itest_parked WHERE id = 7"), "1",
                    "the session's own write, read after the park")
        # And once more: the session parks again after running something.
        wait_parked(px, 1)
        check_equal(conn.scalar("SELECT current_setting('statement_timeout')"), "12345ms",
                    "the SET after a second park")


@pgpilot_only
def test_client_idle_limit_ends_parked_sessions(env):
    limit_s = 3  # longer than the time to park
    with env.pgpilot(pool={**TX, "client_idle_limit": limit_s}, server=DEBUG) as px, \
            Connection(px.port) as idle:
        check_equal(idle.scalar("SELECT 1"), "1", "a query before idling")
        wait_parked(px, 1)
        time.sleep(limit_s + 1)
        sqlstate, text = next_query_error(idle)
        check(sqlstate == "57P05" or "idle-session timeout" in text,
              f"the parked session saw SQLSTATE {sqlstate}: {text!r}")


@pgpilot_only
def test_sigterm_reaches_parked_sessions(env):
    px = env.pgpilot(pool=TX, server=DEBUG)
    with px, Connection(px.port) as first, Connection(px.port) as second:
        for conn in (first, second):
            check_equal(conn.scalar("SELECT 1"), "1", "a query before idling")
        wait_parked(px, 2)
        check_equal(px.terminate(), 0, "pgpilot exit code after SIGTERM")
        for conn in (first, second):
            sqlstate, text = next_query_error(conn)
            check(sqlstate == "57P01" or "administrator command" in text,
                  f"the parked client saw SQLSTATE {sqlstate}: {text!r}")


@pgpilot_only
def test_listening_session_is_not_parked(env):
    with env.pgpilot(pool=TX, server=DEBUG) as px, Connection(px.port) as listener, \
            Connection(px.port) as notifier:
        listener.query("LISTEN itest_idle_channel")
        check_equal(notifier.scalar("SELECT 1"), "1", "the notifier's first query")
        wait_parked(px, 1)  # the notifier; the listener is pinned to its connection
        notifier.query("NOTIFY itest_idle_channel, 'after a while'")
        got = listener.notifications(timeout=5)
        check_equal([(channel, payload) for channel, _, payload in got],
                    [("itest_idle_channel", "after a while")], "the idle listener's notifications")


@pgpilot_only
def test_query_in_the_same_packet_as_the_startup(env):
    # Nothing to wait for after the login: the query is already there, so the session does not
    # park before running it.
    with env.pgpilot(pool=TX) as px, RawConnection(px.port) as raw:
        startup = startup_packet({"user": harness.SUPERUSER, "database": harness.DATABASE})
        raw.send(startup + message(b"Q", b"SELECT 'pipelined'\0"))
        tags, rows = [], []
        while tags.count(b"Z") < 2:
            tag, body = raw.read_message()
            tags.append(tag)
            if tag == b"D":
                rows.append(body[6:].decode())
        check_equal(rows, ["pipelined"], "the pipelined query's row")


if __name__ == "__main__":
    raise SystemExit(harness.main())
