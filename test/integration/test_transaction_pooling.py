#!/usr/bin/python3
"""pool_mode = "transaction": a client holds a backend connection only while a transaction
runs; between transactions the connection serves other clients. One worker and one pooled
connection per key make the sharing certain; every check is what the client sees."""

import re
import time

import harness
from harness import Connection, check, check_equal, pgpilot_only, psql_value

# One worker (one idle pool), one idle connection kept per key, the primary only.
SHARED = {"server": {"workers": 1},
          "pool": {"pool_mode": "transaction", "max_pool": 1},
          "load_balance": {"enabled": False}}
APP = "itest_txpool"
BACKENDS = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'"


@pgpilot_only
def test_clients_share_a_backend_connection_between_transactions(env):
    with env.pgpilot(**SHARED) as px:
        clients = [Connection(px.port, application_name=APP) for _ in range(10)]
        try:
            pids = set()
            for _ in range(3):
                for c in clients:
                    pids.add(c.scalar("SELECT pg_backend_pid()"))
            check_equal(len(pids), 1, "backend processes that served 10 clients in turn")
            check_equal(psql_value(env.primary_port, BACKENDS), "1",
                        "backend connections for 10 connected clients")
            # A transaction keeps its connection until it ends; others get another meanwhile.
            a, b = clients[0], clients[1]
            a.query("BEGIN")
            pid_a = a.scalar("SELECT pg_backend_pid()")
            check(b.scalar("SELECT pg_backend_pid()") != pid_a,
                  "a client outside the transaction gets another connection")
            check_equal(a.scalar("SELECT pg_backend_pid()"), pid_a, "the transaction stays")
            a.query("COMMIT")
        finally:
            for c in clients:
                c.close()


# What PostgreSQL 15 reports at startup (its GUC_REPORT settings).
REPORTED = ["application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
            "in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser",
            "server_encoding", "server_version", "session_authorization",
            "standard_conforming_strings", "TimeZone"]


@pgpilot_only
def test_login_is_told_what_the_server_reports(env):
    """A client of a pool whose server parameters pgpilot already knows is greeted without a
    connection: it must be told what the server tells a client that connects directly, with
    its own application_name."""
    with env.pgpilot(**SHARED) as px, Connection(env.primary_port, application_name="x") as direct:
        expected = {name: direct.parameter_status(name) for name in REPORTED}
        for name, value in expected.items():
            check(value is not None, f"PostgreSQL reports {name} at startup")
        with Connection(px.port, application_name=APP) as first:
            first.query("SELECT 1")  # the pool has had a connection: it knows the parameters
        for app in ("itest_greeted", "", None):
            params = {} if app is None else {"application_name": app}
            with Connection(px.port, **params) as c:
                told = {name: c.parameter_status(name) for name in REPORTED}
                for name in REPORTED:
                    want = expected[name] if name != "application_name" else (app or "")
                    check_equal(told[name], want,
                                f"{name} told at login (application_name {app!r})")
                check_equal(c.scalar("SHOW application_name"), app or "",
                            "application_name on the server")


@pgpilot_only
def test_settings_follow_their_client(env):
    with env.pgpilot(**SHARED) as px, Connection(px.port, application_name=APP) as a, \
            Connection(px.port, application_name=APP) as b:
        a.query("SET statement_timeout = '4321ms'")
        b.query("SET search_path = itest_b, public")
        for _ in range(3):
            check_equal(a.scalar("SHOW statement_timeout"), "4321ms", "a's setting")
            check_equal(a.scalar("SHOW search_path"), '"$user", public', "a does not see b's")
            check_equal(b.scalar("SHOW statement_timeout"), "0", "b does not see a's")
            check_equal(b.scalar("SHOW search_path"), "itest_b, public", "b's setting")
        check_equal(a.scalar("SELECT pg_backend_pid()"), b.scalar("SELECT pg_backend_pid()"),
                    "both ran on the one shared connection")
        b.query("RESET search_path")
        check_equal(b.scalar("SHOW search_path"), '"$user", public', "b's RESET")


@pgpilot_only
def test_prepared_statements_with_the_same_name_in_two_clients(env):
    """Two clients prepare a statement under the same name with different texts; each gets
    its own, on a connection they share (pgpilot closes and prepares again as needed)."""
    with env.pgpilot(**SHARED) as px, Connection(px.port, application_name=APP) as a, \
            Connection(px.port, application_name=APP) as b:
        a.prepare("itest_s", "SELECT 'a:' || $1::text")
        b.prepare("itest_s", "SELECT 'b:' || $1::text")
        for i in range(3):
            check_equal(a.execute_prepared("itest_s", [str(i)]), f"a:{i}", "a's statement")
            check_equal(b.execute_prepared("itest_s", [str(i)]), f"b:{i}", "b's statement")
        a.query("DEALLOCATE itest_s")
        r = a.execute("EXECUTE itest_s('x')")
        check_equal(r.sqlstate, "26000", "a's statement is gone after DEALLOCATE")
        check_equal(b.execute_prepared("itest_s", ["z"]), "b:z", "b's is still there")


@pgpilot_only
def test_session_state_keeps_the_connection(env):
    """A temporary table outlives its transaction only on its connection: the client keeps
    that connection (and the table) until it leaves; others get other connections."""
    with env.pgpilot(**SHARED) as px, Connection(px.port, application_name=APP) as a, \
            Connection(px.port, application_name=APP) as b:
        a.query("CREATE TEMP TABLE itest_txpool_temp (i int)")
        a.query("INSERT INTO itest_txpool_temp VALUES (1)")
        pid_a = a.scalar("SELECT pg_backend_pid()")
        check(b.scalar("SELECT pg_backend_pid()") != pid_a, "b gets another connection")
        check_equal(a.scalar("SELECT count(*) FROM itest_txpool_temp"), "1", "the table is there")
        check_equal(a.scalar("SELECT pg_backend_pid()"), pid_a, "a keeps its connection")
    check("keeps its connection to node 0 until it ends" in px.log(), "the pin is logged")


@pgpilot_only
def test_advisory_locks_and_held_cursors_keep_the_connection(env):
    """Session-level advisory locks and cursors WITH HOLD live on their connection: the client
    keeps it until it leaves. A transaction-level lock, or an unlock, keeps nothing."""
    pins = ["SELECT pg_advisory_lock(4201)", "SELECT Pg_Try_Advisory_Lock_Shared(4202)",
            "BEGIN; DECLARE itest_held CURSOR WITH HOLD FOR SELECT 1; COMMIT"]
    for sql in pins:
        with env.pgpilot(**SHARED) as px, Connection(px.port, application_name=APP) as a, \
                Connection(px.port, application_name=APP) as b:
            a.query(sql)
            pid_a = a.scalar("SELECT pg_backend_pid()")
            for _ in range(3):
                check(b.scalar("SELECT pg_backend_pid()") != pid_a, f"b gets another ({sql})")
                check_equal(a.scalar("SELECT pg_backend_pid()"), pid_a, f"a keeps it ({sql})")
            check("keeps its connection to node 0 until it ends" in px.log(), f"pinned: {sql}")
    for sql in ["SELECT pg_advisory_xact_lock(4203)", "SELECT pg_advisory_unlock(4204)"]:
        with env.pgpilot(**SHARED) as px, Connection(px.port, application_name=APP) as a, \
                Connection(px.port, application_name=APP) as b:
            a.query(sql)
            check_equal(a.scalar("SELECT pg_backend_pid()"), b.scalar("SELECT pg_backend_pid()"),
                        f"one shared connection after {sql}")
            check("until it ends" not in px.log(), f"not pinned: {sql}")


@pgpilot_only
def test_cancel_reaches_the_connection_running_the_query(env):
    with env.pgpilot(**SHARED) as px, Connection(px.port, application_name=APP) as a, \
            Connection(px.port, application_name=APP) as b:
        b.scalar("SELECT 1")
        a.send_query("SELECT pg_sleep(30)")
        time.sleep(0.3)
        t0 = time.monotonic()
        a.cancel()
        result = a.wait_result(timeout=10)
        check_equal(result.sqlstate, "57014", "the sleeping query is cancelled")
        check(time.monotonic() - t0 < 2, "within a second or two")
        check_equal(b.scalar("SELECT 'b is fine'"), "b is fine", "the other client is not hit")


@pgpilot_only
def test_pgbench_in_transaction_mode(env):
    """pgbench TPC-B with -M simple, extended and prepared, 8 clients on 2 workers: no failed
    transaction."""
    pool = {"server": {"workers": 2}, "pool": {"pool_mode": "transaction", "max_pool": 4}}
    with env.pgpilot(**pool) as px:
        harness.pgbench(px.port, "-i", "-s", "1", "-q")
        for mode in ("simple", "extended", "prepared"):
            out = harness.pgbench(px.port, "-c", "8", "-j", "2", "-T", "4", "-M", mode).stdout
            failed = re.search(r"number of failed transactions: (\d+)", out)
            check(failed is None or failed.group(1) == "0", f"-M {mode} failures:\n{out}")
            done = int(re.search(r"actually processed: (\d+)", out).group(1))
            check(done > 0, f"-M {mode} processed nothing")
            print(f"pgbench -M {mode}: {done} transactions, none failed")


if __name__ == "__main__":
    raise SystemExit(harness.main())
