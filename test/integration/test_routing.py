#!/usr/bin/python3
"""Read/write splitting, weighted load balancing and read-your-writes consistency, on the real
primary and two standbys (issue 3). Each test says what the client sees; select_cnt comes from
SHOW POOL_NODES on the client port."""

import time

import harness
from harness import Connection, check, check_equal, pgbench, pgpilot_only, psql, psql_value

APPLY_DELAY = "300ms"


def backends(env, weights):
    return [{"host": n["host"], "port": n["port"], "weight": w, "flag": "ALLOW_TO_FAILOVER"}
            for n, w in zip(env.cluster.nodes, weights)]


def pool_nodes(port):
    """SHOW POOL_NODES as a list of dicts."""
    with Connection(port) as c:
        res = c.execute("SHOW POOL_NODES").raise_if_error()
        return [dict(zip(res.columns, row)) for row in res.rows]


def select_counts(port):
    return [int(n["select_cnt"]) for n in pool_nodes(port)]


class delayed_standby:
    """Standby 1 applies WAL `delay` late (recovery_min_apply_delay), restored afterwards."""

    def __init__(self, env, delay=APPLY_DELAY):
        self.port = env.cluster.nodes[1]["port"]
        self.delay = delay

    def _set(self, value):
        psql(self.port, f"ALTER SYSTEM SET recovery_min_apply_delay = '{value}'")
        psql(self.port, "SELECT pg_reload_conf()")

    def __enter__(self):
        self._set(self.delay)
        return self

    def __exit__(self, *exc):
        self._set("0")


def prepare_table(port):
    """Through pgpilot: a write made directly on the primary is one pgpilot cannot know of."""
    psql(port, "DROP TABLE IF EXISTS itest_rw; CREATE TABLE itest_rw (v int PRIMARY KEY)")


def wait_for_table_on_standby(env, node=1, timeout=10):
    """Until standby `node` has replayed prepare_table(): a new session has written nothing, so
    with session or eventual consistency its first read may go to a standby that lags."""
    port = env.cluster.nodes[node]["port"]
    deadline = time.monotonic() + timeout
    while psql_value(port, "SELECT to_regclass('itest_rw') IS NOT NULL") != "t":
        check(time.monotonic() < deadline, f"standby {node} has no itest_rw after {timeout} s")
        time.sleep(0.05)


def missing_reads(port, iterations, *, two_connections):
    """INSERT a unique value, then SELECT it back at once: how many SELECTs missed it."""
    misses = 0
    with Connection(port) as writer, Connection(port) as second:
        reader = second if two_connections else writer
        base = int(writer.scalar("SELECT coalesce(max(v), 0) FROM itest_rw")) + 1
        for i in range(base, base + iterations):
            writer.execute(f"INSERT INTO itest_rw VALUES ({i})").raise_if_error()
            if reader.scalar(f"SELECT count(*) FROM itest_rw WHERE v = {i}") != "1":
                misses += 1
    return misses


@pgpilot_only
def test_show_pool_nodes_has_pgpool_columns(env):
    with env.pgpilot() as px:
        nodes = pool_nodes(px.port)
        check_equal(list(nodes[0].keys()),
                    ["node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role",
                     "pg_role", "select_cnt", "load_balance_node", "replication_delay",
                     "replication_state", "replication_sync_state", "last_status_change"],
                    "SHOW POOL_NODES columns")
        check_equal([n["role"] for n in nodes], ["primary", "standby", "standby"], "roles")
        check_equal([n["status"] for n in nodes], ["up", "up", "up"], "status")


@pgpilot_only
def test_no_stale_reads_with_global_consistency(env):
    # All reads would go to the delayed standby if it were current; consistency sends them to
    # the primary when it is not (consistency_wait_ms = 0: no waiting, to keep the test short).
    config = dict(backend=backends(env, [0, 1, 0]),
                  load_balance={"consistency": "global", "consistency_wait_ms": 0})
    with delayed_standby(env), env.pgpilot(**config) as px:
        prepare_table(px.port)
        for two in (False, True):
            misses = missing_reads(px.port, 2000, two_connections=two)
            print(f"FIGURES global two_connections={two}: {misses} misses in 2000")
            check_equal(misses, 0, f"reads that missed the write (two connections: {two})")


@pgpilot_only
def test_stale_reads_happen_with_eventual_consistency(env):
    config = dict(backend=backends(env, [0, 1, 0]), load_balance={"consistency": "eventual"})
    with delayed_standby(env), env.pgpilot(**config) as px:
        prepare_table(px.port)
        wait_for_table_on_standby(env)  # eventual: the delayed standby must have it itself
        misses = missing_reads(px.port, 200, two_connections=True)
        print(f"FIGURES eventual: {misses} misses in 200")
        check(misses > 100, f"with consistency = eventual a standby 300 ms behind should miss most "
                            f"reads right after the write; missed {misses} of 200")


@pgpilot_only
def test_reads_wait_for_the_standby_to_catch_up(env):
    # With time to wait, the standby itself serves the read once it has replayed the write.
    config = dict(backend=backends(env, [0, 1, 0]),
                  load_balance={"consistency": "session", "consistency_wait_ms": 2000})
    with delayed_standby(env), env.pgpilot(**config) as px:
        prepare_table(px.port)
        wait_for_table_on_standby(env)  # the session's first read may go there
        before = select_counts(px.port)
        misses = missing_reads(px.port, 10, two_connections=False)
        after = select_counts(px.port)
        check_equal(misses, 0, "reads that missed the write")
        check(after[1] - before[1] >= 10, f"the delayed standby served the reads: {before} -> {after}")


@pgpilot_only
def test_read_only_pgbench_spreads_by_weight(env):
    pgbench(env.primary_port, "-i", "-s", "1", "-q")
    weights = [1, 2, 1]
    config = dict(backend=backends(env, weights), load_balance={"statement_level": True})
    with env.pgpilot(**config) as px:
        before = select_counts(px.port)
        out = pgbench(px.port, "-S", "-c", "16", "-j", "2", "-T", "5", "-n").stdout
        check("number of failed transactions: 0" in out, f"pgbench failed:\n{out}")
        after = select_counts(px.port)
        served = [a - b for a, b in zip(after, before)]
        total = sum(served)
        shares = [s / total for s in served]
        print(f"FIGURES spread: select_cnt {served}, shares {[round(s, 3) for s in shares]}")
        for node, (share, w) in enumerate(zip(shares, weights)):
            expected = w / sum(weights)
            check(abs(share - expected) <= 0.1 * expected,
                  f"node {node} served {share:.3f} of the reads, weight says {expected:.3f}")


@pgpilot_only
def test_new_database_is_readable_at_once(env):
    """A database just made exists on the primary but not yet on a standby that is behind
    (pgpool-II's "kind mismatch"). Reads in it that would go to that standby (eventual
    consistency sends them there at once) run on the primary instead: the client sees no
    error, and pgpilot logs that it could not connect to the standby."""
    config = dict(backend=backends(env, [0, 1, 0]), load_balance={"consistency": "eventual"})
    dbs = [f"itest_newdb_{i}" for i in range(3)]
    # Long enough that no read of a session comes after the standby has caught up, even in a
    # sanitizer build.
    with delayed_standby(env, delay="5s"), env.pgpilot(**config) as px:
        try:
            for db in dbs:
                psql(px.port, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                psql(px.port, f"CREATE DATABASE {db} STRATEGY = FILE_COPY")
                with Connection(px.port, db=db) as c:
                    check_equal(c.scalar("SELECT current_database()"), db, "current database")
                    check_equal(c.scalar("SELECT count(*) FROM pg_class "
                                         "WHERE relname = 'pg_class'"),
                                "1", "a read in the new database")
                    check_equal(c.scalar("SELECT pg_is_in_recovery()"), "f",
                                "the read ran on the primary")
            skipped = [line for line in px.log().splitlines()
                       if "cannot connect to node 1" in line and "does not exist" in line]
            check(len(skipped) >= len(dbs),
                  f"pgpilot logged {len(skipped)} failed connections to the delayed standby for "
                  f"{len(dbs)} sessions that each read a database it does not have yet")
        finally:
            for db in dbs:
                psql(px.port, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pgpilot_only
def test_transactions_read_their_writes(env):
    config = dict(backend=backends(env, [0, 1, 1]), load_balance={"consistency_wait_ms": 3000})
    with env.pgpilot(**config) as px, Connection(px.port) as c:
        prepare_table(px.port)
        # A read before the write may run on a standby; after it, the primary answers.
        c.execute("BEGIN").raise_if_error()
        check_equal(c.scalar("SELECT count(*) FROM itest_rw"), "0", "rows before the write")
        c.execute("INSERT INTO itest_rw VALUES (1)").raise_if_error()
        check_equal(c.scalar("SELECT count(*) FROM itest_rw"), "1", "rows after the write")
        check_equal(c.scalar("SELECT pg_is_in_recovery()"), "f", "the transaction is on the primary")
        c.execute("SAVEPOINT a").raise_if_error()
        c.execute("INSERT INTO itest_rw VALUES (2)").raise_if_error()
        c.execute("ROLLBACK TO a").raise_if_error()
        c.execute("COMMIT").raise_if_error()
        check_equal(c.scalar("SELECT count(*) FROM itest_rw"), "1", "rows after COMMIT")
        # A read-only transaction runs on a standby, all of it.
        c.execute("BEGIN READ ONLY").raise_if_error()
        check_equal(c.scalar("SELECT pg_is_in_recovery()"), "t", "BEGIN READ ONLY on a standby")
        check_equal(c.scalar("SELECT count(*) FROM itest_rw"), "1", "the committed row")
        c.execute("COMMIT").raise_if_error()
        # SET reaches whichever node runs the next statement.
        c.execute("SET search_path = itest_nowhere, public").raise_if_error()
        check_equal(c.scalar("SHOW search_path"), "itest_nowhere, public", "search_path on a read node")
        c.execute("INSERT INTO itest_rw VALUES (3)").raise_if_error()
        check_equal(c.scalar("SELECT current_setting('search_path')"), "itest_nowhere, public",
                    "search_path after a write")


@pgpilot_only
def test_temp_tables_pin_the_session_to_the_primary(env):
    config = dict(backend=backends(env, [0, 1, 1]))
    with env.pgpilot(**config) as px, Connection(px.port) as c:
        c.execute("CREATE TEMP TABLE itest_tmp AS SELECT 42 AS v").raise_if_error()
        for _ in range(20):
            check_equal(c.scalar("SELECT v FROM itest_tmp"), "42", "a read of the temp table")
        check_equal(c.scalar("SELECT pg_is_in_recovery()"), "f", "the session stays on the primary")


@pgpilot_only
def test_prepared_statements_follow_the_read_node(env):
    pgbench(env.primary_port, "-i", "-s", "1", "-q")
    with env.pgpilot() as px:
        for mode in ("prepared", "extended"):
            out = pgbench(px.port, "-c", "4", "-j", "2", "-t", "100", "-M", mode, "-n").stdout
            check("number of failed transactions: 0" in out, f"pgbench -M {mode} (TPC-B):\n{out}")
            out = pgbench(px.port, "-S", "-c", "4", "-j", "2", "-t", "500", "-M", mode, "-n").stdout
            check("number of failed transactions: 0" in out, f"pgbench -S -M {mode}:\n{out}")
        served = select_counts(px.port)
        check(served[1] + served[2] > 0, f"standbys served reads: {served}")


if __name__ == "__main__":
    raise SystemExit(harness.main())
