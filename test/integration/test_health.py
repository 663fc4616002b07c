#!/usr/bin/python3
"""Health checks: node status and role, the status file, failed and quarantined nodes, as ha/'s
node registry publishes them (read through pgpilot_ha_watch). Tests that take nodes down use a
private cluster."""

import os
import signal
import time

import harness
from harness import check, check_equal, free_port, pgpilot_only

# Fast checks so that the tests stay short.
FAST = {"period": 0.5, "timeout": 2, "connect_timeout": 1}


def statuses(snap):
    return [n["status"] for n in snap["nodes"]]


def status_file(ha):
    path = os.path.join(os.path.dirname(ha.config_path), "pgpilot_status")
    with open(path) as f:
        return f.read()


@pgpilot_only
def test_nodes_are_up_with_their_roles(env):
    with env.ha_watch(health_check=FAST) as ha:
        snap = ha.snapshot()  # detect() ran before the first command is read
        check_equal(statuses(snap), ["up", "up", "up"], "statuses")
        check_equal([n["role"] for n in snap["nodes"]], ["primary", "standby", "standby"], "roles")
        check_equal(snap["nodes"][0]["status_reason"], "health check passed", "reason")
        check(snap["nodes"][0]["last_status_change"] > time.time() - 60, "last_status_change set")
        check_equal(status_file(ha), "up\nup\nup\n", "status file")
    log = ha.log()
    check("node 0 (127.0.0.1:" in log and "waiting -> up: health check passed" in log,
          f"status changes are logged with their reason:\n{log}")


@pgpilot_only
def test_unreachable_node_stays_waiting(env):
    nodes = [{"host": n["host"], "port": n["port"]} for n in env.cluster.nodes]
    nodes.append({"host": "127.0.0.1", "port": free_port()})
    with env.ha_watch(health_check=FAST, backend=nodes) as ha:
        snap = ha.snapshot()
        check_equal(statuses(snap), ["up", "up", "up", "waiting"], "statuses")
        check("could not connect" in snap["nodes"][3]["status_reason"],
              f"reason: {snap['nodes'][3]['status_reason']}")
        time.sleep(1.2)  # a few more checks: still waiting, nothing failed over
        snap = ha.snapshot()
        check_equal(statuses(snap), ["up", "up", "up", "waiting"], "statuses later")
        check_equal(snap["nodes"][0]["role"], "primary", "primary")
        check_equal(status_file(ha), "up\nup\nup\nup\n", "status file")
    check_equal(ha.log().count("not reachable"), 1, "the unreachable node is reported once")


@pgpilot_only
def test_per_backend_health_check_user(env):
    nodes = [{"host": n["host"], "port": n["port"]} for n in env.cluster.nodes]
    nodes[2]["health_check_user"] = "itest_no_such_role"
    with env.ha_watch(health_check=FAST, backend=nodes) as ha:
        snap = ha.snapshot()
        check_equal(statuses(snap), ["up", "up", "waiting"], "statuses")
        check('role "itest_no_such_role" does not exist' in snap["nodes"][2]["status_reason"],
              f"reason: {snap['nodes'][2]['status_reason']}")


@pgpilot_only
def test_a_session_report_on_a_healthy_node_changes_nothing(env):
    with env.ha_watch(health_check={"period": 0}) as ha:
        check_equal(statuses(ha.snapshot()), ["up", "up", "up"], "statuses")
        ha.command("fail 0")
        ha.wait_for_log("node 0: a session reports: reported by pgpilot_ha_watch; checking the "
                        "node now")
        time.sleep(0.3)
        check_equal(statuses(ha.snapshot()), ["up", "up", "up"], "statuses after the report")


@pgpilot_only
def test_killed_standby_is_down_and_stays_down(env):
    with env.private_cluster(standbys=1) as cluster:
        standby = cluster.standbys[0]
        with env.ha_watch(cluster=cluster, health_check=FAST) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            t0 = time.monotonic()
            cluster.kill(standby)
            snap = ha.wait_for("the standby down", lambda s: statuses(s) == ["up", "down"])
            print(f"standby marked down {time.monotonic() - t0:.3f}s after kill -9")
            check(snap["nodes"][1]["status_reason"].startswith("health check failed: "),
                  f"reason: {snap['nodes'][1]['status_reason']}")
            check_equal(snap["failover_in_progress"], False, "no failover for a standby")
            check_equal(status_file(ha), "up\ndown\n", "status file")
            cluster.start_node(standby)
            time.sleep(1.2)
            check_equal(statuses(ha.snapshot()), ["up", "down"], "down is sticky")
        workdir_status = status_file(ha)
        # A restart keeps it down; -D probes it afresh.
        with env.ha_watch(cluster=cluster, health_check=FAST) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "down"], "after a restart")
            check("down in status file" in ha.snapshot()["nodes"][1]["status_reason"], "reason")
        with env.ha_watch(cluster=cluster, health_check=FAST, args=["-D"]) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "after a restart with -D")
            check_equal(status_file(ha), "up\nup\n", "status file rewritten")
        check_equal(workdir_status, "up\ndown\n", "status file before -D")


@pgpilot_only
def test_a_node_out_of_connection_slots_is_not_failed(env):
    """A primary that answers "sorry, too many clients already" (53300) to the health check is
    alive: it stays up (the check is inconclusive, and logged), and nothing fails over."""
    with env.private_cluster(standbys=1) as cluster:
        primary = cluster.primary
        cluster.psql(primary, "ALTER SYSTEM SET max_connections = 10")
        cluster.stop_node(primary)
        cluster.start_node(primary)
        with env.ha_watch(cluster=cluster, health_check=FAST) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            hogs = []
            try:
                while True:  # every slot, the superuser-reserved ones too
                    try:
                        hogs.append(harness.Connection(primary["port"], connect_timeout=2))
                    except harness.PgError as e:
                        check("too many clients" in str(e), f"the slots ran out: {e}")
                        break
                    check(len(hogs) <= 12, "more connections than max_connections")
                ha.wait_for_log("health check inconclusive", timeout=10)
                time.sleep(1.5)  # three more periods
                snap = ha.snapshot()
                check_equal(statuses(snap), ["up", "up"], "statuses while the primary is full")
                check_equal(snap["failover_in_progress"], False, "no failover")
            finally:
                for h in hogs:
                    h.close()


@pgpilot_only
def test_disallow_to_failover_node_is_quarantined(env):
    with env.private_cluster(standbys=1) as cluster:
        nodes = [{"host": n["host"], "port": n["port"]} for n in cluster.nodes]
        nodes[1]["flag"] = "DISALLOW_TO_FAILOVER"
        with env.ha_watch(cluster=cluster, health_check=FAST, backend=nodes) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            cluster.stop_node(cluster.standbys[0])
            snap = ha.wait_for("quarantined", lambda s: statuses(s) == ["up", "quarantine"])
            check("DISALLOW_TO_FAILOVER" in snap["nodes"][1]["status_reason"], "reason")
            check_equal(status_file(ha), "up\nup\n", "a quarantined node is not down on file")
            cluster.start_node(cluster.standbys[0])
            ha.wait_for("back up by itself", lambda s: statuses(s) == ["up", "up"])


@pgpilot_only
def test_primary_without_standby_is_quarantined_not_detached(env):
    with env.private_cluster(standbys=0) as cluster:
        with env.ha_watch(cluster=cluster, health_check=FAST) as ha:
            check_equal(statuses(ha.snapshot()), ["up"], "statuses")
            cluster.stop_node(cluster.primary)
            snap = ha.wait_for("quarantined", lambda s: statuses(s) == ["quarantine"])
            check("no standby to fail over to" in snap["nodes"][0]["status_reason"], "reason")
            check_equal(snap["failover_in_progress"], False, "no failover")
            cluster.start_node(cluster.primary)
            snap = ha.wait_for("back up by itself", lambda s: statuses(s) == ["up"])
            check_equal(snap["nodes"][0]["role"], "primary", "role")


@pgpilot_only
def test_timeouts_on_every_node_fail_nothing(env):
    """When every node's health check times out at once (here: their postmasters stopped with
    SIGSTOP, so connections hang), pgpilot cannot tell dead nodes from its own starvation (an
    overloaded host, a cut network) and there is nothing to fail over to: the checks are
    inconclusive and every node stays up."""
    with env.private_cluster(standbys=1) as cluster:
        pids = [cluster.postmaster_pid(n) for n in cluster.nodes]
        with env.ha_watch(cluster=cluster, health_check=FAST) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            try:
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                ha.wait_for_log("no other node answered a health check in time either", timeout=15)
                time.sleep(2 * FAST["connect_timeout"] + 1)  # more rounds of timeouts
                snap = ha.snapshot()
                check_equal(statuses(snap), ["up", "up"], "statuses while every node hangs")
                check_equal(snap["failover_in_progress"], False, "no failover")
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            time.sleep(1)
            snap = ha.snapshot()
            check_equal(statuses(snap), ["up", "up"], "statuses after SIGCONT")
            check_equal([n["role"] for n in snap["nodes"]], ["primary", "standby"], "roles")


@pgpilot_only
def test_a_primary_that_stops_answering_is_failed(env):
    """A timeout on one node while another answers is the node's: the primary, stopped with
    SIGSTOP, is failed and its standby promoted."""
    with env.private_cluster(standbys=1) as cluster:
        pid = cluster.postmaster_pid(cluster.primary)
        with env.ha_watch(cluster=cluster, health_check=FAST) as ha:
            check_equal(statuses(ha.snapshot()), ["up", "up"], "statuses")
            os.kill(pid, signal.SIGSTOP)
            try:
                snap = ha.wait_for("the primary down and the standby promoted",
                                   lambda s: statuses(s) == ["down", "up"]
                                   and s["nodes"][1]["role"] == "primary", timeout=30)
                check("timeout" in snap["nodes"][0]["status_reason"],
                      f"reason: {snap['nodes'][0]['status_reason']}")
            finally:
                os.kill(pid, signal.SIGCONT)


if __name__ == "__main__":
    raise SystemExit(harness.main())
