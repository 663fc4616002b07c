#!/usr/bin/python3
"""Node control (what PGPOOL ATTACH/DETACH/PROMOTE NODE call): node_registry::attach_node,
detach_node and promote_node, driven through pgpilot_ha_watch on a private cluster."""

import os
import threading
import time

import harness
from harness import Connection, PgError, check, check_equal, pgpilot_only

FAST = {"period": 0.5, "timeout": 2, "connect_timeout": 1}


def statuses(snap):
    return [n["status"] for n in snap["nodes"]]


def roles(snap):
    return [n["role"] for n in snap["nodes"]]


def status_file(ha):
    with open(os.path.join(os.path.dirname(ha.config_path), "pgpilot_status")) as f:
        return f.read()


def backends(cluster):
    return [{"host": n["host"], "port": n["port"], "data_directory": n["data_dir"]}
            for n in cluster.nodes]


class DirectWriter:
    """Autocommit INSERTs straight into one server in a loop; keeps the ids it saw committed."""

    def __init__(self, port, table, user=harness.SUPERUSER):
        self.port, self.table, self.user = port, table, user
        self.committed, self.errors = [], []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = 0
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = Connection(self.port, user=self.user, connect_timeout=2)
                n += 1
                r = conn.execute(f"INSERT INTO {self.table} VALUES ({n})")
                if r.ok:
                    self.committed.append(n)
                else:
                    self.errors.append(r.sqlstate)
                    if r.sqlstate != "25006":  # the session is gone: a new one
                        conn.close()
                        conn = None
                    time.sleep(0.005)
            except PgError as e:
                self.errors.append(str(e))
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def __enter__(self):
        self.thread.start()
        while not self.committed:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(10)


@pgpilot_only
def test_detach_and_attach(env):
    with env.private_cluster(standbys=1) as cluster:
        with env.ha_watch(cluster=cluster, health_check=FAST, backend=backends(cluster)) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            check_equal(ha.command("attach 7").strip(), "error: there is no node 7", "bad id")
            check_equal(ha.command("attach 1").strip(), "ok: node 1 is already up", "attach up")
            check(ha.command("promote 0").startswith("error: node 0 is not an up standby"),
                  "the primary cannot be promoted")
            check_equal(ha.command("detach 1").strip(), "ok: node 1 detached", "detach")
            snap = ha.snapshot()
            check_equal(statuses(snap), ["up", "down"], "statuses after detach")
            check_equal(snap["nodes"][1]["status_reason"], "detached by request", "reason")
            check_equal(status_file(ha), "up\ndown\n", "status file")
            check(ha.command("detach 0").startswith("error: node 0 is the primary and no standby"),
                  "the last primary is not detached")
            time.sleep(1.1)  # a down node is not checked: it stays down
            check_equal(statuses(ha.snapshot()), ["up", "down"], "still down")
            check_equal(ha.command("attach 1").strip(), "ok: node 1 attached, role standby",
                        "attach")
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses after attach")
            check_equal(status_file(ha), "up\nup\n", "status file after attach")
            cluster.stop_node(cluster.standbys[0])
            ha.wait_for("the stopped standby down", lambda s: statuses(s) == ["up", "down"])
            check(ha.command("attach 1").startswith("error: node 1 does not answer: "),
                  "a stopped node is not attached")


def switchover_under_writes(env, *, check_user=None):
    """`promote 1 switchover` while a client commits autocommit INSERTs on the primary: the
    answer, the new roles, no acknowledged commit missing on node 1, standby2 following it.
    check_user: a role made here for pgpilot's own connections ([health_check] and
    [streaming_replication_check] user), granted what a switchover takes but not
    pg_logical_emit_message, and used by the writer too (a role with pg_signal_backend may end
    only sessions of roles that are not superusers)."""
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        cluster.psql(primary, "CREATE TABLE itest_switchover (i int)")
        health_check = dict(FAST)
        own = {}  # overrides of pgpilot's own logins
        writer_user = harness.SUPERUSER
        if check_user:
            for sql in (f"CREATE ROLE {check_user} LOGIN",
                        f"GRANT pg_monitor, pg_signal_backend TO {check_user}",
                        f"GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only, "
                        f"primary_conninfo TO {check_user}",
                        f"GRANT EXECUTE ON FUNCTION pg_reload_conf(), pg_promote(boolean, integer) "
                        f"TO {check_user}",
                        f"GRANT INSERT, SELECT ON itest_switchover TO {check_user}",
                        "REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) "
                        "FROM PUBLIC"):
                cluster.psql(primary, sql)
            health_check["user"] = check_user
            own["streaming_replication_check"] = {"user": check_user}
            writer_user = check_user
        # The test clusters run with synchronous_commit = off: a commit is acknowledged before
        # its WAL is written. With a WAL writer that writes only every 10 s, the last commits
        # are still unwritten when the switchover reads the old primary's position: it must
        # wait for a position past them, and get there without waiting for the WAL writer
        # (hold_timeout, 5 s here, bounds the whole switchover).
        cluster.psql(primary, "ALTER SYSTEM SET wal_writer_delay = '10s'")
        cluster.psql(primary, "SELECT pg_reload_conf()")
        with env.ha_watch(cluster=cluster, health_check=health_check, backend=backends(cluster),
                          failover={"hold_timeout": 5}, **own) as ha:
            check_equal(roles(ha.snapshot()), ["primary", "standby", "standby"], "roles")
            with DirectWriter(primary["port"], "itest_switchover", writer_user) as writer:
                time.sleep(0.3)
                t0 = time.monotonic()
                answer = ha.command("promote 1 switchover").strip()
                took = time.monotonic() - t0
                time.sleep(0.1)
            check_equal(answer, "ok: node 1 is the primary", "switchover answer")
            print(f"switchover took {took:.3f}s; {len(writer.committed)} commits on the old "
                  f"primary, {len(writer.errors)} refused after it became read-only")
            snap = ha.snapshot()
            check_equal(statuses(snap), ["down", "up", "up"], "statuses")
            check_equal(roles(snap)[1], "primary", "new primary")
            check_equal(snap["failover_in_progress"], False, "failover over")
            # 25006: refused as read-only; 57P01 (or a closed connection, no SQLSTATE): its
            # session ended by the switchover.
            check(all(e in ("25006", "57P01", None) for e in writer.errors),
                  f"the old primary only refused writes as read-only: {set(writer.errors)}")
            rows = cluster.psql(standby1, "SELECT i FROM itest_switchover").split()
            missing = set(writer.committed) - {int(r) for r in rows}
            check(not missing, f"{len(missing)} committed rows missing on the new primary")
            check_equal(cluster.psql(primary, "SHOW default_transaction_read_only").strip(), "on",
                        "the old primary stays read-only")
            deadline = time.monotonic() + 20
            while "standby2" not in cluster.psql(standby1, "SELECT application_name FROM "
                                                           "pg_stat_replication WHERE state = 'streaming'"):
                check(time.monotonic() < deadline, "standby2 does not stream from node 1")
                time.sleep(0.1)
            check_equal(status_file(ha), "down\nup\nup\n", "status file")
        return ha.log()


@pgpilot_only
def test_switchover_loses_no_commit(env):
    log = switchover_under_writes(env)
    check("cannot write a WAL record" not in log, "the switchover wrote its own record")


@pgpilot_only
def test_switchover_without_the_right_to_emit_a_record(env):
    """A user for pgpilot's own connections who may not call pg_logical_emit_message and is no
    superuser: the switchover flushes the old primary's WAL with a temporary table instead, and
    loses no commit."""
    log = switchover_under_writes(env, check_user="itest_checker")
    check("cannot write a WAL record: permission denied for function pg_logical_emit_message"
          in log, "the switchover says why it does not emit a message")


@pgpilot_only
def test_switchover_waits_for_open_transactions(env):
    """A transaction open on the primary when the switchover begins may still commit: the
    switchover waits for it (up to hold_timeout). One that ends in time is on the new primary;
    one that does not makes the switchover refuse, and the old primary takes writes again."""
    with env.private_cluster(standbys=1) as cluster:
        primary, standby = cluster.nodes
        cluster.psql(primary, "CREATE TABLE itest_open_tx (i int)")
        with env.ha_watch(cluster=cluster, health_check=FAST, backend=backends(cluster),
                          failover={"hold_timeout": 2}) as ha:
            check_equal(roles(ha.snapshot()), ["primary", "standby"], "roles")
            with Connection(primary["port"]) as idle_in_tx:
                idle_in_tx.query("BEGIN")
                idle_in_tx.query("INSERT INTO itest_open_tx VALUES (1)")
                t0 = time.monotonic()
                answer = ha.command("promote 1 switchover").strip()
                took = time.monotonic() - t0
                check_equal(answer, "error: cannot stop writes on node 0: 1 transactions still "
                                    "running after hold_timeout", "refused")
                check(took >= 1.9, f"it waited for hold_timeout ({took:.3f}s)")
                check_equal(cluster.psql(primary, "SHOW default_transaction_read_only").strip(),
                            "off", "the old primary takes writes again")
                idle_in_tx.query("COMMIT")
            snap = ha.snapshot()
            check_equal(statuses(snap), ["up", "up"], "statuses after the refusal")
            check_equal(roles(snap), ["primary", "standby"], "roles after the refusal")
            check_equal(snap["failover_in_progress"], False, "no failover in progress")
            cluster.psql(primary, "INSERT INTO itest_open_tx VALUES (2)")

            with Connection(primary["port"]) as slow:
                slow.query("BEGIN")
                slow.query("INSERT INTO itest_open_tx VALUES (3)")
                committed = threading.Event()

                def commit_later():
                    time.sleep(0.7)
                    slow.query("COMMIT")
                    committed.set()

                t = threading.Thread(target=commit_later, daemon=True)
                t.start()
                t0 = time.monotonic()
                answer = ha.command("promote 1 switchover").strip()
                took = time.monotonic() - t0
                t.join(5)
            check_equal(answer, "ok: node 1 is the primary", "switchover after the commit")
            check(committed.is_set() and took >= 0.6,
                  f"the switchover waited for the open transaction ({took:.3f}s)")
            rows = cluster.psql(standby, "SELECT i FROM itest_open_tx ORDER BY i").split()
            check_equal(rows, ["1", "2", "3"], "every commit on the new primary")


@pgpilot_only
def test_auto_failback_attaches_a_streaming_standby(env):
    with env.private_cluster(standbys=1) as cluster:
        primary, standby = cluster.nodes
        out = os.path.join(env.workdir, "failback.args")
        failover = {"auto_failback": True, "auto_failback_interval": 0,
                    "failback_command": f"echo %d %h %p %D %m %H %r %P > {out}"}
        with env.ha_watch(cluster=cluster, health_check=FAST, failover=failover,
                          backend=backends(cluster)) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            ha.wait_for("streaming", lambda s: s["nodes"][1]["replication_state"] == "streaming")
            # Detached, but it still streams from the primary: attached again at once.
            check_equal(ha.command("detach 1").strip(), "ok: node 1 detached", "detach")
            snap = ha.wait_for("attached again", lambda s: statuses(s) == ["up", "up"], timeout=5)
            check_equal(snap["nodes"][1]["status_reason"], "auto failback: streaming from node 0 again",
                        "reason")
            ha.wait_for_log("failback command for node 1 succeeded")
            with open(out) as f:
                check_equal(f.read().split(),
                            ["1", standby["host"], str(standby["port"]), standby["data_dir"],
                             "0", primary["host"], str(primary["port"]), "0"],
                            "failback_command placeholders")
            check_equal(status_file(ha), "up\nup\n", "status file")



@pgpilot_only
def test_node_control_by_sql(env):
    """PGPOOL DETACH/ATTACH/PROMOTE NODE on the client port: refused to a user who is neither a
    backend superuser nor in [auth] admin_users, refused inside a transaction, syntax and node
    id checked; a switchover under autocommit writes and reads through pgpilot loses no
    commit and gives those clients no error."""
    from test_failover import Writer  # autocommit INSERTs through pgpilot, one connection
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=backends(cluster),
                         auth={"admin_users": ["itest_admin"]}) as px:
            with Connection(px.port) as su:
                su.query("CREATE ROLE itest_plain LOGIN")
                su.query("CREATE ROLE itest_admin LOGIN")
                su.query("CREATE TABLE itest_sql_switchover (i int)")
                su.query("GRANT ALL ON itest_sql_switchover TO itest_admin, itest_plain")
                for sql, code in (("PGPOOL ATTACH NODE 7", "22023"),
                                  ("PGPOOL FROB NODE 1", "42601"),
                                  ("PGPOOL PROMOTE NODE 1 GRACEFULLY", "42601")):
                    r = su.execute(sql)
                    check_equal(r.sqlstate, code, f"answer to {sql}")
                su.query("BEGIN")
                check_equal(su.execute("PGPOOL DETACH NODE 2").sqlstate, "25001",
                            "node control inside a transaction")
                su.query("ROLLBACK")
                check_equal(su.scalar("SELECT 'still here'"), "still here", "the session goes on")
            with Connection(px.port, user="itest_plain") as plain:
                r = plain.execute("PGPOOL DETACH NODE 2")
                check_equal(r.sqlstate, "42501", "a plain user may not")
            with Connection(px.port, user="itest_admin") as admin:
                admin.query("PGPOOL DETACH NODE 2")
                check_equal(admin.query("SHOW POOL_NODES")[2][3], "down", "node 2 detached")
                admin.query("PGPOOL ATTACH NODE 2")
                check_equal(admin.query("SHOW POOL_NODES")[2][3], "up", "node 2 attached")

            # Switchover under load, by a superuser.
            with Writer(px.port, "itest_sql_switchover") as writer, Connection(px.port) as reader:
                time.sleep(0.3)
                t0 = time.monotonic()
                with Connection(px.port) as su:
                    su.query("PGPOOL PROMOTE NODE 1 SWITCHOVER")
                took = time.monotonic() - t0
                reads = 0
                for _ in range(50):
                    reader.query("SELECT count(*) FROM itest_sql_switchover")
                    reads += 1
                t_new = writer.wait_commit_on(standby1["port"])
                time.sleep(0.2)
            print(f"PGPOOL PROMOTE NODE 1 SWITCHOVER took {took:.3f}s; first commit on node 1 "
                  f"{t_new - t0:.3f}s after it began; {len(writer.commits)} commits, "
                  f"{len(writer.errors)} errors")
            check_equal(writer.errors, [], "errors seen by the autocommit writer")
            rows = {int(r) for r in cluster.psql(standby1, "SELECT i FROM itest_sql_switchover").split()}
            missing = set(writer.committed_ids) - rows
            check(not missing, f"{len(missing)} committed rows missing on the new primary")
            with Connection(px.port) as c:
                nodes = c.query("SHOW POOL_NODES")
            check_equal([n[3] for n in nodes], ["down", "up", "up"], "statuses after the switchover")
            check_equal(nodes[1][6], "primary", "node 1 is the primary")
            deadline = time.monotonic() + 20
            while "standby2" not in cluster.psql(standby1, "SELECT application_name FROM "
                                                           "pg_stat_replication WHERE state = 'streaming'"):
                check(time.monotonic() < deadline, "standby2 does not stream from node 1")
                time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(harness.main())
