#!/usr/bin/python3
"""Failover: kill -9 of the primary's postmaster on a private cluster, with pgpilot in front.
The built-in promotion and follow, a failover_command that gets pgpool-II's placeholders, a
failover command that fails, and restarts after a failover (status file, -D)."""

import os
import re
import subprocess
import threading
import time

import harness
from harness import Connection, PgError, check, check_equal, pgpilot_only

FAST = {"period": 0.5, "timeout": 2, "connect_timeout": 1}


class Writer:
    """Inserts rows through pgpilot in a loop, reconnecting after errors; records when each
    commit succeeded (monotonic clock) and which server (port) took it."""

    def __init__(self, port, table):
        self.port, self.table = port, table
        self.commits, self.errors = [], []
        self.committed_ids = []  # the values of the rows whose INSERT returned
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = None
        n = 0
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = Connection(self.port, connect_timeout=2)
                n += 1
                port = conn.scalar(f"INSERT INTO {self.table} VALUES ({n}) "
                                   "RETURNING inet_server_port()")
                self.commits.append((time.monotonic(), int(port)))
                self.committed_ids.append(n)
            except PgError as e:
                self.errors.append((time.monotonic(), str(e)))
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.commits:
            check(time.monotonic() < deadline, f"the writer committed nothing: {self.errors}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(10)

    def wait_commit_on(self, port, timeout=15):
        """The time of the first commit on the server at `port`."""
        deadline = time.monotonic() + timeout
        while True:
            later = [t for t, p in self.commits if p == port]
            if later:
                return later[0]
            check(time.monotonic() < deadline, f"no commit within {timeout}s of the kill; errors: "
                                               f"{self.errors[-3:]}")
            time.sleep(0.005)


def backends(cluster, **extra):
    return [{"host": n["host"], "port": n["port"], "data_directory": n["data_dir"], **extra}
            for n in cluster.nodes]


def streaming_from(cluster, node):
    out = cluster.psql(node, "SELECT application_name FROM pg_stat_replication "
                             "WHERE state = 'streaming'")
    return set(out.split())


def wait_until(what, predicate, timeout=15, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        check(time.monotonic() < deadline, f"not within {timeout}s: {what}")
        time.sleep(interval)


def status_file(px):
    with open(os.path.join(os.path.dirname(px.config_path), "pgpilot_status")) as f:
        return f.read()


@pgpilot_only
def test_primary_killed_standby_promoted_other_follows(env):
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=backends(cluster)) as px:
            with Connection(px.port) as c:
                c.query("CREATE TABLE itest_fo (i int)")
            # standby1 stops receiving WAL (its primary_conninfo points nowhere): standby2 has
            # more, so it is the one to promote, and standby1 must still follow it.
            cluster.psql(standby1, "ALTER SYSTEM SET primary_conninfo = "
                                   "'host=127.0.0.1 port=1 user=postgres application_name=standby1'")
            cluster.psql(standby1, "SELECT pg_reload_conf()")
            wait_until("standby1 disconnected", lambda: streaming_from(cluster, primary) == {"standby2"})
            with Writer(px.port, "itest_fo") as writer:
                time.sleep(0.3)
                t_kill = time.monotonic()
                cluster.kill(primary)
                t_resumed = writer.wait_commit_on(standby2["port"])
                time.sleep(0.2)
            # The old primary's backends may take a few more commits after the kill (they only
            # exit when they notice the postmaster is gone); those are not durable.
            last_old = max(t for t, p in writer.commits if p == primary["port"])
            print(f"write outage: {t_resumed - t_kill:.3f}s from the kill to the first commit on "
                  f"the new primary (last commit on the old one {last_old - t_kill:+.3f}s after "
                  f"the kill); {len(writer.errors)} failed attempts meanwhile")
            log = px.log()
            m = re.search(r"failover: node (\d) is the new primary, (\d+) ms after node 0", log)
            check(m, f"the failover is logged:\n{log}")
            check_equal(m.group(1), "2", "new primary (the standby with the most WAL)")
            print(f"pgpilot: new primary {m.group(2)} ms after it found node 0 failed")
            check("failover: promoting node 2 with pg_promote()" in log, "built-in promotion")
            with Connection(px.port) as c:
                check_equal(c.scalar("/*NO LOAD BALANCE*/ SELECT inet_server_port()"), str(standby2["port"]),
                            "writes go to the new primary")
                check_equal(c.scalar("/*NO LOAD BALANCE*/ SELECT pg_is_in_recovery()"), "f", "not in recovery")
                check(int(c.scalar("SELECT count(*) FROM itest_fo")) > 0, "rows are there")
            # standby1 follows the new primary (built-in: primary_conninfo rewritten).
            wait_until("standby1 streaming from the new primary",
                       lambda: streaming_from(cluster, standby2) == {"standby1"}, timeout=20)
            print(f"standby1 streams from the new primary {time.monotonic() - t_kill:.3f}s "
                  f"after the kill")
            check("follow: node 1 now streams from node 2" in px.log(), "follow is logged")
            check_equal(status_file(px), "down\nup\nup\n", "status file")

        # The old primary comes back, as a primary on its old timeline.
        t0 = time.monotonic()
        cluster.start_node(primary)
        print(f"old primary restarted in {time.monotonic() - t0:.3f}s")
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=backends(cluster)) as px:
            with Connection(px.port) as c:
                check_equal(c.scalar("/*NO LOAD BALANCE*/ SELECT inet_server_port()"), str(standby2["port"]),
                            "after a restart: still the new primary")
            check("node 0 (127.0.0.1:" in px.log() and "stays down: so says status file" in px.log(),
                  "the old primary stays down")
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=backends(cluster),
                         args=["-D"]) as px:
            with Connection(px.port) as c:
                check_equal(c.scalar("/*NO LOAD BALANCE*/ SELECT inet_server_port()"), str(standby2["port"]),
                            "after a restart with -D: still the new primary")
            log = px.log()
            check("false primary: not in recovery, but node 2 is the primary" in log,
                  f"the old primary is fenced:\n{log}")
            check_equal(status_file(px), "down\nup\nup\n", "status file after -D")


def active_slots(cluster, node):
    out = cluster.psql(node, "SELECT slot_name FROM pg_replication_slots WHERE active")
    return set(out.split())


def test_standbys_on_replication_slots_follow_the_new_primary(env):
    """Standbys that stream through physical replication slots (primary_slot_name): after the
    primary dies, the one that follows the promoted standby finds its slot there (slots are not
    replicated) and streams through it."""
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        for name, standby in (("standby1", standby1), ("standby2", standby2)):
            cluster.psql(primary, f"SELECT pg_create_physical_replication_slot('{name}_slot')")
            cluster.psql(standby, f"ALTER SYSTEM SET primary_slot_name = '{name}_slot'")
            cluster.psql(standby, "SELECT pg_reload_conf()")
        wait_until("both standbys streaming through their slots",
                   lambda: active_slots(cluster, primary) == {"standby1_slot", "standby2_slot"})
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=backends(cluster)) as px:
            t_kill = time.monotonic()
            cluster.kill(primary)
            promoted = failover_logged(px)
            new_primary = cluster.nodes[promoted]
            follower = "standby2" if promoted == 1 else "standby1"
            wait_until(f"{follower} streaming from the new primary through its slot",
                       lambda: active_slots(cluster, new_primary) == {f"{follower}_slot"},
                       timeout=20)
            print(f"{follower} streams through its slot on node {promoted} "
                  f"{time.monotonic() - t_kill:.3f}s after the kill")
            check_equal(streaming_from(cluster, new_primary), {follower}, "streaming standbys")
            log = px.log()
            check(f"follow: node {3 - promoted} now streams from node {promoted}" in log,
                  "follow is logged")
            check("cannot create replication slot" not in log, "no slot error logged")


def test_failover_command_runs_for_a_failed_standby(env):
    """As pgpool-II does, failover_command runs for a standby that fails too: %d is the
    standby, %P the primary (scripts tell the two cases apart by comparing them); nothing is
    promoted."""
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        out = os.path.join(env.workdir, "failover.args")
        failover = {"command": f"echo %d %h %p %m %P %M >> {out}"}
        with env.pgpilot(cluster=cluster, health_check=FAST, failover=failover,
                         backend=backends(cluster)) as px:
            cluster.kill(standby2)
            wait_until("the failover command ran for node 2",
                       lambda: "failover command for node 2 succeeded" in px.log())
            with open(out) as f:
                args = f.read().split()
            s2 = standby2
            check_equal(args, ["2", s2["host"], str(s2["port"]), "0", "0", "0"],
                        "failover_command placeholders for a failed standby")
            with Connection(px.port) as c:
                check_equal(c.scalar("/*NO LOAD BALANCE*/ SELECT inet_server_port()"),
                            str(primary["port"]), "the primary stays the primary")
                nodes = c.query("SHOW POOL_NODES")
            check_equal([n[3] for n in nodes], ["up", "up", "down"], "node statuses")
            check("is the new primary" not in px.log(), "nothing promoted")


def failover_logged(px, timeout=15):
    """Waits for 'node N is the new primary' in pgpilot's log; returns N."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(r"failover: node (\d) is the new primary", px.log())
        if m:
            return int(m.group(1))
        check(time.monotonic() < deadline, f"no failover within {timeout}s:\n{px.log()}")
        time.sleep(0.02)


@pgpilot_only
def test_sessions_outside_a_transaction_survive_the_failover(env):
    """Clients keep their connections through a primary failover: an idle session's next
    write runs on the new primary, also one whose connection to the old primary nobody was
    reading (its last statement was a read on a standby), and a write sent while the failover
    runs waits for it (hold_timeout) instead of failing. Only the session inside a
    transaction on the old primary loses it, with a 57P01-class error. The failover command
    sleeps a second before it promotes, so that there is a failover to wait for."""
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        nodes = backends(cluster)
        nodes[0]["weight"] = 0  # reads go to the standbys
        script = os.path.join(env.workdir, "slow_failover.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nsleep 1\n"
                    "exec runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl promote -w -D \"$1\"\n")
        os.chmod(script, 0o755)
        # consistency_wait_ms: the read after the write waits for a standby to replay it
        # rather than fall back to the primary (a busy machine replays slowly).
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=nodes,
                         failover={"command": f"{script} %R"},
                         load_balance={"consistency_wait_ms": 5000}) as px:
            with Connection(px.port) as c:
                c.query("CREATE TABLE itest_survive (i int)")
            after_write = Connection(px.port)
            after_read = Connection(px.port)
            in_tx = Connection(px.port)
            held = Connection(px.port)
            try:
                after_write.query("INSERT INTO itest_survive VALUES (1)")
                after_read.query("INSERT INTO itest_survive VALUES (2)")
                port = after_read.scalar("SELECT inet_server_port() FROM itest_survive LIMIT 1")
                check(port != str(primary["port"]), f"the read ran on a standby ({port})")
                in_tx.query("BEGIN")
                in_tx.query("INSERT INTO itest_survive VALUES (3)")
                held.query("SELECT 1")
                cluster.kill(primary)
                wait_until("the failover began", lambda: "failover command for node 0: running"
                                                         in px.log())
                t0 = time.monotonic()
                port = held.scalar("INSERT INTO itest_survive VALUES (4) RETURNING inet_server_port()")
                took = time.monotonic() - t0
                new = failover_logged(px)
                new_port = str(cluster.nodes[new]["port"])
                check_equal(port, new_port, "a write sent during the failover ran on the new primary")
                print(f"a write sent while the failover ran waited {took:.3f}s for the new primary")
                for name, conn in (("idle after a write", after_write),
                                   ("idle after a read", after_read)):
                    port = conn.scalar("INSERT INTO itest_survive VALUES (5) "
                                       "RETURNING inet_server_port()")
                    check_equal(port, new_port, f"session {name}: its next write")
                try:
                    in_tx.query("INSERT INTO itest_survive VALUES (6)")
                except PgError as e:
                    print(f"the session inside a transaction got: {e}")
                    check(e.sqlstate in (None, "57P01", "08006"), f"its error: {e}")
                else:
                    raise harness.TestFailure("the transaction on the dead primary went on")
                log = px.log()
                check("lost its connection to node 0" in log or
                      "closes its connection to node 0" in log, f"links dropped:\n{log}")
            finally:
                for c in (after_write, after_read, in_tx, held):
                    c.close()


def pgbench_processed(output):
    m = re.search(r"number of transactions actually processed: (\d+)", output)
    check(m, f"pgbench output without a transaction count:\n{output}")
    return int(m.group(1))


@pgpilot_only
def test_pgbench_tpcb_failover_keeps_every_commit(env):
    """kill -9 of the primary under pgbench TPC-B (8 clients) with synchronous_commit =
    remote_apply to either standby: the standby with the most WAL is promoted, the other
    follows it, writes resume, and every transaction pgbench saw committed is on the new
    primary (pgbench_history has a row per transaction)."""
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        cluster.psql(primary, "ALTER SYSTEM SET synchronous_standby_names = "
                              "'ANY 1 (standby1, standby2)'")
        cluster.psql(primary, "ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
        cluster.psql(primary, "SELECT pg_reload_conf()")
        with env.pgpilot(cluster=cluster, health_check=FAST, backend=backends(cluster)) as px:
            harness.pgbench(px.port, "-i", "-s", "1", "-q")
            with Connection(px.port) as c:
                c.query("CREATE TABLE itest_tpcb_writer (i int)")
            bench = subprocess.Popen(
                ["pgbench", "-h", harness.HOST, "-p", str(px.port), "-U", harness.SUPERUSER,
                 "-c", "8", "-j", "2", "-T", "8", harness.DATABASE],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            with Writer(px.port, "itest_tpcb_writer") as writer:
                time.sleep(2.5)
                t_kill = time.monotonic()
                cluster.kill(primary)
                new = failover_logged(px)
                new_node = cluster.nodes[new]
                t_resumed = writer.wait_commit_on(new_node["port"])
                out, _ = bench.communicate(timeout=60)
            processed = pgbench_processed(out)
            aborted = len(re.findall(r"client \d+ aborted", out))
            last_old = max(t for t, p in writer.commits if p == primary["port"])
            print(f"write outage: {t_resumed - t_kill:.3f}s from the kill to the first commit on "
                  f"node {new} (last commit on the old primary {last_old - t_kill:+.3f}s after "
                  f"the kill); pgbench: {processed} transactions committed, {aborted} of 8 "
                  f"clients aborted (inside a transaction at the kill), exit {bench.returncode}")
            history = int(cluster.psql(new_node, "SELECT count(*) FROM pgbench_history").strip())
            check(history >= processed, f"pgbench saw {processed} commits; the new primary has "
                                        f"{history} pgbench_history rows")
            # Every row the writer saw committed (on either primary) is on the new one.
            rows = {int(r) for r in cluster.psql(new_node, "SELECT i FROM itest_tpcb_writer").split()}
            missing = set(writer.committed_ids) - rows
            check(not missing, f"{len(missing)} of {len(writer.committed_ids)} committed writer "
                               f"rows missing on the new primary: {sorted(missing)[:10]}")
            other = cluster.nodes[3 - new]
            wait_until(f"{other['name']} streaming from the new primary",
                       lambda: other["name"] in streaming_from(cluster, new_node), timeout=20)
            print(f"history rows {history} >= {processed}; {other['name']} follows node {new}")


@pgpilot_only
def test_standby_killed_under_read_only_pgbench(env):
    """kill -9 of a standby during pgbench -S (8 clients): no client sees an error, the node
    is marked down, and the reads go on on the other nodes. (Longer health-check timeouts
    than FAST: 8 pgbench clients keep this small machine busy, and a check that times out
    on the primary would fail it over.)"""
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        checks = {"period": 0.5, "timeout": 5, "connect_timeout": 3}
        with env.pgpilot(cluster=cluster, health_check=checks, backend=backends(cluster)) as px:
            harness.pgbench(px.port, "-i", "-s", "1", "-q")
            bench = subprocess.Popen(
                ["pgbench", "-h", harness.HOST, "-p", str(px.port), "-U", harness.SUPERUSER,
                 "-S", "-c", "8", "-j", "2", "-T", "6", harness.DATABASE],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(2)
            cluster.kill(standby1)
            t_kill = time.monotonic()
            with Connection(px.port) as c:
                wait_until("node 1 marked down", lambda: c.query("SHOW POOL_NODES")[1][3] == "down")
                print(f"node 1 marked down {time.monotonic() - t_kill:.3f}s after the kill")
            out, _ = bench.communicate(timeout=60)
            check_equal(bench.returncode, 0, f"pgbench exit status:\n{out}")
            processed = pgbench_processed(out)
            failed = re.search(r"number of failed transactions: (\d+)", out)
            check(failed is None or failed.group(1) == "0", f"failed transactions:\n{out}")
            with Connection(px.port) as c:
                nodes = c.query("SHOW POOL_NODES")
            counts = [int(n[8]) for n in nodes]
            print(f"pgbench -S: {processed} transactions, no error; select_cnt per node {counts}")
            check(counts[0] + counts[2] > 0, "reads went to the other nodes")


@pgpilot_only
def test_failover_command_gets_the_placeholders(env):
    with env.private_cluster(standbys=2) as cluster:
        primary, standby1, standby2 = cluster.nodes
        out = os.path.join(env.workdir, "failover.args")
        follow_out = os.path.join(env.workdir, "follow.args")
        script = os.path.join(env.workdir, "failover.sh")
        with open(script, "w") as f:
            f.write(f"""#!/bin/sh
# The seed's style: record the arguments, promote the new main node with pg_ctl.
echo "$@" > {out}
echo "promoting node $5 ($8)"
exec runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl promote -w -D "$8"
""")
        os.chmod(script, 0o755)
        failover = {"command": f"{script} %d %h %p %D %m %H %r %R %M %P %N %S %%",
                    "follow_primary_command": f"echo %d %h %p %D %m %H %r %R %M %P %N %S >> {follow_out}"}
        with env.pgpilot(cluster=cluster, health_check=FAST, failover=failover,
                         backend=backends(cluster)) as px:
            cluster.kill(primary)
            wait_until("pgpilot found the new primary",
                       lambda: "is the new primary" in px.log())
            with open(out) as f:
                args = f.read().split()
            p, s1 = primary, standby1
            check_equal(args, ["0", p["host"], str(p["port"]), p["data_dir"],
                               "1", s1["host"], str(s1["port"]), s1["data_dir"],
                               "0", "0", p["host"], str(p["port"]), "%"], "failover placeholders")
            log = px.log()
            check("failover command for node 0 stdout: promoting node 1" in log, "stdout logged")
            check("failover command for node 0 succeeded" in log, "success logged")
            wait_until("follow command ran", lambda: os.path.exists(follow_out) and
                       "follow primary command for node 2 succeeded" in px.log())
            with open(follow_out) as f:
                follow_args = f.read().split()
            s2 = standby2
            check_equal(follow_args, ["2", s2["host"], str(s2["port"]), s2["data_dir"],
                                      "1", s1["host"], str(s1["port"]), s1["data_dir"],
                                      "0", "0", p["host"], str(p["port"])],
                        "follow_primary_command placeholders")
            with Connection(px.port) as c:
                check_equal(c.scalar("/*NO LOAD BALANCE*/ SELECT inet_server_port()"), str(standby1["port"]),
                            "writes go to the promoted node")


@pgpilot_only
def test_failing_failover_command_leaves_the_node_down(env):
    with env.private_cluster(standbys=1) as cluster:
        primary, standby = cluster.nodes
        failover = {"command": "echo trying %d; echo cannot promote %m >&2; exit 1"}
        with env.pgpilot(cluster=cluster, health_check=FAST, failover=failover,
                         backend=backends(cluster)) as px:
            cluster.kill(primary)
            wait_until("the failover gave up", lambda: "no node is the primary" in px.log())
            log = px.log()
            check("failover command for node 0 failed: exit status 1" in log, f"logged:\n{log}")
            check("failover command for node 0 stdout: trying 0" in log, "stdout logged")
            check("failover command for node 0 stderr: cannot promote 1" in log, "stderr logged")
            check_equal(status_file(px), "down\nup\n", "node 0 stays down")
            # pgpilot is alive and says there is no primary.
            try:
                with Connection(px.port, connect_timeout=5) as c:
                    result = c.execute("SELECT 1")
                    check(not result.ok, "a query without a primary fails")
            except PgError as e:
                check("no primary node is available" in str(e), f"error: {e}")
            check_equal(cluster.psql(standby, "SELECT pg_is_in_recovery()").strip(), "t",
                        "the standby was not promoted")


if __name__ == "__main__":
    raise SystemExit(harness.main())
