#!/usr/bin/python3
"""Connection budgets: pool_size per (user, database, node) and max_backend_connections per
node, shared by all workers; clients beyond them wait first come first served, up to
query_wait_timeout; idle connections time out (server_idle_timeout), pools are kept warm
(min_pool_size), [[pool.override]] changes a database's pool, SHOW POOLS shows it all.
Every check is what a client (or pg_stat_activity on the real server) sees."""

import re
import resource
import threading
import time

import harness
from harness import Connection, check, check_equal, pgpilot_only, psql_value

TX = {"pool_mode": "transaction"}
PRIMARY_ONLY = {"load_balance": {"enabled": False}}


def backends(env, app):
    """Server connections pgpilot holds on the primary for application_name `app`."""
    return int(psql_value(env.primary_port,
                          f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"))


class Peak:
    """Polls pg_stat_activity on the primary (directly) and keeps the highest count seen."""

    def __init__(self, env, app):
        self.env, self.app, self.peak, self.samples = env, app, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with Connection(self.env.primary_port) as direct:
            sql = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{self.app}'"
            while not self._stop.is_set():
                self.peak = max(self.peak, int(direct.scalar(sql)))
                self.samples += 1
                time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def show_pools(port, database=harness.DATABASE):
    """SHOW POOLS through pgpilot: {node_id: row dict} for `database`."""
    with Connection(port) as c:
        res = c.execute("SHOW POOLS").raise_if_error()
    rows = [dict(zip(res.columns, r)) for r in res.rows]
    return {int(r["node_id"]): r for r in rows if r["database"] == database}


@pgpilot_only
def test_two_thousand_clients_share_ten_connections(env):
    """2,000 concurrent clients, 20 transactions each of BEGIN; INSERT its id; SELECT the
    count of its ids; COMMIT, through transaction pooling with pool_size = 10: each sees
    exactly its own rows, no error, never more than 10 server connections on the primary."""
    clients, rounds, app = 2000, 20, "itest_pool2000"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    with Connection(env.primary_port) as direct:
        direct.query("DROP TABLE IF EXISTS itest_pool2000")
        direct.query("CREATE TABLE itest_pool2000 (client int, round int)")
    config = {"pool": {**TX, "pool_size": 10}, **PRIMARY_ONLY}
    with env.pgpilot(**config) as px, Peak(env, app) as peak:
        errors, done = [], []
        start = threading.Barrier(clients + 1)

        def client(i):
            try:
                with Connection(px.port, application_name=app, connect_timeout=120) as c:
                    start.wait()
                    for r in range(rounds):
                        c.query("BEGIN")
                        c.query(f"INSERT INTO itest_pool2000 VALUES ({i}, {r})")
                        n = c.scalar(f"SELECT count(*) FROM itest_pool2000 WHERE client = {i}")
                        c.query("COMMIT")
                        if n != str(r + 1):
                            errors.append(f"client {i} round {r} saw {n} rows of its own")
                            return
                done.append(i)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                errors.append(f"client {i}: {e}")
                try:
                    start.abort()
                except threading.BrokenBarrierError:
                    pass

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        try:
            start.wait(timeout=300)
        except threading.BrokenBarrierError:
            pass
        connected = time.monotonic() - t0
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        check(not errors, f"{len(errors)} client errors, e.g. {errors[:5]}")
        check_equal(len(done), clients, "clients that completed")
        check(peak.peak <= 10, f"{peak.peak} server connections on the primary (pool_size 10)")
        check(peak.peak >= 5, f"only {peak.peak} server connections seen: was the pool used?")
        rows = psql_value(env.primary_port, "SELECT count(*) FROM itest_pool2000")
        check_equal(rows, str(clients * rounds), "rows committed")
        print(f"{clients} clients connected in {connected:.1f} s, {clients * rounds} transactions "
              f"in {elapsed:.1f} s; peak {peak.peak} server connections "
              f"({peak.samples} samples of pg_stat_activity)")


@pgpilot_only
def test_pgbench_prepared_on_two_connections(env):
    """pgbench -M prepared, 8 clients, pool_size 2, transaction pooling: no failed transaction,
    at most 2 server connections."""
    app = "itest_pool_pgbench"
    with env.pgpilot(pool={**TX, "pool_size": 2}, **PRIMARY_ONLY) as px:
        harness.pgbench(px.port, "-i", "-s", "1", "-q")
        with Peak(env, app) as peak:
            out = harness.pgbench(px.port, "-c", "8", "-j", "2", "-T", "4", "-M", "prepared",
                                  env={"PGAPPNAME": app}).stdout
        failed = re.search(r"number of failed transactions: (\d+)", out)
        check(failed is None or failed.group(1) == "0", f"failures:\n{out}")
        done = int(re.search(r"actually processed: (\d+)", out).group(1))
        check(done > 0, "pgbench processed nothing")
        check(peak.peak <= 2, f"{peak.peak} server connections for pool_size 2")
        print(f"pgbench -M prepared -c 8 on pool_size 2: {done} transactions, none failed, "
              f"peak {peak.peak} server connections")


@pgpilot_only
def test_search_path_follows_the_client_across_connections(env):
    """SET search_path in one transaction is in effect in the next, whichever connection runs
    it (two connections, two clients interleaving)."""
    app = "itest_pool_sp"
    with Connection(env.primary_port) as direct:
        direct.query("CREATE SCHEMA IF NOT EXISTS itest_sp_a")
        direct.query("CREATE TABLE IF NOT EXISTS itest_sp_a.marker (v text)")
        direct.query("TRUNCATE itest_sp_a.marker")
        direct.query("INSERT INTO itest_sp_a.marker VALUES ('schema a')")
    with env.pgpilot(pool={**TX, "pool_size": 2}, **PRIMARY_ONLY) as px, \
            Connection(px.port, application_name=app) as a, \
            Connection(px.port, application_name=app) as b:
        a.query("BEGIN")
        a.query("SET search_path = itest_sp_a, public")
        a.query("COMMIT")
        pids = set()
        for _ in range(10):
            b.query("BEGIN")  # b holds a connection, so a's next may run on the other one
            pids.add(b.scalar("SELECT pg_backend_pid()"))
            check_equal(a.scalar("SELECT v FROM marker"), "schema a", "a's search_path")
            pids.add(a.scalar("SELECT pg_backend_pid()"))
            b.query("COMMIT")
            check_equal(b.scalar("SHOW search_path"), '"$user", public', "b's search_path")
        check_equal(len(pids), 2, "server connections used by the two clients")


@pgpilot_only
def test_query_wait_timeout_then_the_pool_works(env):
    """pool_size 1: while one client holds the connection in a transaction, another waits
    query_wait_timeout and gets FATAL 08P01 naming it; after the first commits, new clients
    are served."""
    app = "itest_pool_qwt"
    pool = {**TX, "pool_size": 1, "query_wait_timeout": 1}
    with env.pgpilot(pool=pool, **PRIMARY_ONLY) as px:
        holder = Connection(px.port, application_name=app)
        holder.query("BEGIN")
        holder.query("SELECT 1")
        waiter = Connection(px.port, application_name=app)
        t0 = time.monotonic()
        res = waiter.execute("SELECT 2")
        waited = time.monotonic() - t0
        check(not res.ok, "the waiting client got an error")
        # libpq keeps a FATAL's text but reports the close that follows it as the result, as
        # for PostgreSQL's own FATALs (idle_in_transaction_session_timeout...).
        message = waiter.error_message()
        check(res.sqlstate in ("08P01", None), f"SQLSTATE {res.sqlstate}")
        check("FATAL" in message and "query_wait_timeout" in message,
              f"error names the timeout: {message!r}")
        check(0.9 <= waited < 5, f"waited {waited:.2f} s for query_wait_timeout = 1")
        waiter.close()
        pools = show_pools(px.port)
        check_equal(pools[0]["total_wait_timeouts"], "1", "SHOW POOLS total_wait_timeouts")
        holder.query("COMMIT")
        with Connection(px.port, application_name=app) as fresh:
            check_equal(fresh.scalar("SELECT 3"), "3", "a new client after the timeout")
        check_equal(holder.scalar("SELECT 4"), "4", "the holder goes on")
        holder.close()
        print(f"waiting client got after {waited:.2f} s: {message.splitlines()[0]}")


@pgpilot_only
def test_waiters_are_served_in_turn(env):
    """pool_size 1, no wait limit: three clients queue behind a transaction and are each served
    once it commits; SHOW POOLS shows them waiting meanwhile."""
    app = "itest_pool_fifo"
    pool = {**TX, "pool_size": 1, "query_wait_timeout": 0}
    with env.pgpilot(pool=pool, **PRIMARY_ONLY) as px:
        holder = Connection(px.port, application_name=app)
        holder.query("BEGIN")
        holder.query("SELECT 1")
        waiters = [Connection(px.port, application_name=app) for _ in range(3)]
        for i, w in enumerate(waiters):
            w.send_query(f"SELECT {i}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if show_pools(px.port)[0]["cl_waiting"] == "3":
                break
            time.sleep(0.05)
        row = show_pools(px.port)[0]
        check_equal(row["cl_waiting"], "3", "clients waiting in SHOW POOLS")
        check_equal(row["sv_active"], "1", "server connections in use")
        check_equal(row["pool_size"], "1", "pool_size shown")
        holder.query("COMMIT")
        for i, w in enumerate(waiters):
            check_equal(w.wait_result(10).rows, [(str(i),)], f"waiter {i}'s answer")
        check_equal(backends(env, app), 1, "server connections after the queue drained")
        for c in [holder, *waiters]:
            c.close()


@pgpilot_only
def test_max_backend_connections_spans_pools(env):
    """max_backend_connections = 2: two users' pools share the node's budget; an idle
    connection of one pool is closed to let the other in."""
    app = "itest_pool_mbc"
    with Connection(env.primary_port) as direct:
        direct.query("DROP ROLE IF EXISTS itest_mbc")
        direct.query("CREATE ROLE itest_mbc LOGIN")
    pool = {**TX, "pool_size": 5, "max_backend_connections": 2, "query_wait_timeout": 5}
    with env.pgpilot(pool=pool, **PRIMARY_ONLY) as px:
        a1 = Connection(px.port, application_name=app)
        a2 = Connection(px.port, application_name=app)
        a1.query("BEGIN")
        a2.query("BEGIN")  # two connections for the superuser's pool
        a1.query("COMMIT")
        a2.query("COMMIT")  # both idle now
        check_equal(backends(env, app), 2, "server connections after the first pool's use")
        with Connection(px.port, user="itest_mbc", application_name=app) as b:
            check_equal(b.scalar("SELECT current_user"), "itest_mbc", "the other pool's client")
            check(backends(env, app) <= 2, "the node's budget holds")
        a1.close()
        a2.close()
        rows = show_pools(px.port)
        check(rows[0]["sv_active"] == "0", f"nothing in use: {rows}")


def no_result_yet(conn, seconds, what):
    """After send_query: no answer within `seconds` (the client waits for a connection)."""
    try:
        conn.wait_result(seconds)
    except harness.TestFailure:
        return
    raise harness.TestFailure(f"{what}: answered without waiting")


@pgpilot_only
def test_a_connection_given_back_goes_to_another_pools_waiter(env):
    """max_backend_connections = 2, both in one pool's transactions: a client of another pool
    waits; when one transaction ends, its connection is closed and the waiter opens its own,
    the node never holding more than 2."""
    app = "itest_pool_give_way"
    with Connection(env.primary_port) as direct:
        direct.query("DROP ROLE IF EXISTS itest_give_way")
        direct.query("CREATE ROLE itest_give_way LOGIN")
    pool = {**TX, "pool_size": 5, "max_backend_connections": 2, "query_wait_timeout": 0}
    with env.pgpilot(pool=pool, **PRIMARY_ONLY) as px, Peak(env, app) as peak:
        # Logged in first: a login to a pool pgpilot has not seen yet needs a connection.
        b = Connection(px.port, user="itest_give_way", application_name=app)
        check_equal(b.scalar("SELECT 1"), "1", "the other pool's first query")
        a1 = Connection(px.port, application_name=app)
        a2 = Connection(px.port, application_name=app)
        for a in (a1, a2):
            a.query("BEGIN")
            a.query("SELECT 1")
        b.send_query("SELECT current_user")
        no_result_yet(b, 0.5, "the other pool's client while the node's budget is used up")
        a1.query("COMMIT")
        check_equal(b.wait_result(5).rows, [("itest_give_way",)], "the waiter's answer")
        check_equal(a2.scalar("SELECT 'a2 fine'"), "a2 fine", "the transaction still open")
        a2.query("COMMIT")
        check_equal(a1.scalar("SELECT 'a1 again'"), "a1 again", "the first pool again")
        for c in (a1, a2, b):
            c.close()
    check(peak.peak <= 2, f"at most 2 server connections on the node, saw {peak.peak}")


@pgpilot_only
def test_a_closed_connection_lets_a_waiter_in(env):
    """pool_size 1, no wait limit: a client waits behind a transaction; the transaction's
    server connection is terminated: that client gets an error, and the waiter gets the
    budget at once and opens a new connection."""
    app = "itest_pool_closed"
    with env.pgpilot(pool={**TX, "pool_size": 1, "query_wait_timeout": 0}, **PRIMARY_ONLY) as px:
        holder = Connection(px.port, application_name=app)
        holder.query("BEGIN")
        pid = holder.scalar("SELECT pg_backend_pid()")
        waiter = Connection(px.port, application_name=app)
        waiter.send_query("SELECT pg_backend_pid()")
        no_result_yet(waiter, 0.5, "the waiter while the only connection is in a transaction")
        psql_value(env.primary_port, f"SELECT pg_terminate_backend({pid})")
        rows = waiter.wait_result(5).rows
        check(rows and rows[0][0] != pid, f"the waiter runs on a new connection: {rows}")
        check(not holder.execute("SELECT 1").ok, "the client whose connection died gets an error")
        holder.close()
        waiter.close()


@pgpilot_only
def test_idle_connections_time_out_and_pools_stay_warm(env):
    """server_idle_timeout closes idle server connections; min_pool_size keeps that many
    open for a pool once it has been used."""
    app_idle, app_warm = "itest_pool_idle", "itest_pool_warm"
    pool = {**TX, "server_idle_timeout": 1}
    with env.pgpilot(pool=pool, **PRIMARY_ONLY) as px:
        with Connection(px.port, application_name=app_idle) as c:
            c.query("SELECT 1")
        check_equal(backends(env, app_idle), 1, "the idle pooled connection")
        harness.wait_until(lambda: backends(env, app_idle) == 0, 5,
                           "the idle connection closed by server_idle_timeout")
    # Warm connections are opened without application_name (transaction pooling SETs it per
    # client): count them by their user.
    with Connection(env.primary_port) as direct:
        direct.query("DROP ROLE IF EXISTS itest_warm")
        direct.query("CREATE ROLE itest_warm LOGIN")

    def warm():
        return int(psql_value(env.primary_port, "SELECT count(*) FROM pg_stat_activity "
                                                "WHERE usename = 'itest_warm'"))

    pool = {**TX, "min_pool_size": 3, "pool_size": 4}
    with env.pgpilot(pool=pool, **PRIMARY_ONLY) as px:
        with Connection(px.port, user="itest_warm", application_name=app_warm) as c:
            c.query("SELECT 1")
        harness.wait_until(lambda: warm() == 3, 5, "min_pool_size connections opened")
        time.sleep(1.5)
        check_equal(warm(), 3, "no more than min_pool_size kept")


@pgpilot_only
def test_override_gives_one_database_session_pooling(env):
    """[[pool.override]]: the database "itest_reporting" keeps session pooling with pool_size 1
    while the others use transaction pooling."""
    with Connection(env.primary_port) as direct:
        if direct.scalar("SELECT count(*) FROM pg_database WHERE datname = 'itest_reporting'") == "0":
            direct.query("CREATE DATABASE itest_reporting")
    config = {"pool": {**TX, "query_wait_timeout": 1,
                       "override": [{"database": "itest_reporting", "pool_mode": "session",
                                     "pool_size": 1}]},
              **PRIMARY_ONLY}
    with env.pgpilot(**config) as px:
        a = Connection(px.port, db="itest_reporting")
        pid = a.scalar("SELECT pg_backend_pid()")
        check_equal(a.scalar("SELECT pg_backend_pid()"), pid, "session pooling keeps it")
        try:
            Connection(px.port, db="itest_reporting").close()
        except harness.PgError as e:
            refused = str(e)
        else:
            refused = ""
        check("query_wait_timeout" in refused,
              f"a second session waits for the one connection, then 08P01: {refused!r}")
        # The default database keeps transaction pooling: two clients share a connection.
        with Connection(px.port) as x, Connection(px.port) as y:
            pid_x = x.scalar("SELECT pg_backend_pid()")
            # pgpilot gives x's connection back right after relaying the answer: a moment
            # later it is idle in the pool for y.
            time.sleep(0.2)
            check_equal(y.scalar("SELECT pg_backend_pid()"), pid_x, "transaction pooling elsewhere")
        rows = show_pools(px.port, "itest_reporting")
        check_equal(rows[0]["pool_mode"], "session", "SHOW POOLS pool_mode of the override")
        check_equal(rows[0]["pool_size"], "1", "SHOW POOLS pool_size of the override")
        check_equal(show_pools(px.port)[0]["pool_mode"], "transaction", "the default pool")
        a.close()


@pgpilot_only
def test_pinned_clients_are_counted(env):
    """A LISTEN in transaction pooling keeps the client's connection (pinned): SHOW POOLS
    counts it until the client leaves."""
    with env.pgpilot(pool=TX, **PRIMARY_ONLY) as px:
        c = Connection(px.port)
        c.query("LISTEN itest_pinned")
        check_equal(show_pools(px.port)[0]["cl_pinned"], "1", "pinned clients")
        c.close()
        harness.wait_until(lambda: show_pools(px.port)[0]["cl_pinned"] == "0", 5,
                           "pinned count back to 0 after the client left")


@pgpilot_only
def test_killed_connections(env):
    """A server connection killed while idle in the pool is replaced unseen; one killed in a
    client's transaction gives that client an error and nobody else one."""
    app = "itest_pool_kill"
    with env.pgpilot(pool={**TX, "pool_size": 2}, **PRIMARY_ONLY) as px:
        a = Connection(px.port, application_name=app)
        b = Connection(px.port, application_name=app)
        pid = a.scalar("SELECT pg_backend_pid()")
        psql_value(env.primary_port, f"SELECT pg_terminate_backend({pid})")
        time.sleep(0.2)
        check(a.scalar("SELECT pg_backend_pid()") != pid, "a fresh connection for a")
        b.query("BEGIN")
        pid_b = b.scalar("SELECT pg_backend_pid()")
        psql_value(env.primary_port, f"SELECT pg_terminate_backend({pid_b})")
        res = b.execute("SELECT 1")
        check(not res.ok, "the client whose transaction's connection was killed gets an error")
        for _ in range(5):
            check_equal(a.scalar("SELECT 'a fine'"), "a fine", "the other client")
        with Connection(px.port, application_name=app) as c:
            check_equal(c.scalar("SELECT 'c fine'"), "c fine", "a new client")
        a.close()
        b.close()


if __name__ == "__main__":
    raise SystemExit(harness.main())
