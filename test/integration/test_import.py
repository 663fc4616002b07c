#!/usr/bin/python3
"""pgpilot --import-pgpool: a pgpool.conf and its pool_passwd, written the way the seeds'
write-ups write them, for the test cluster; pgpilot runs on the imported configuration and psql
logs in with the passwords of pool_passwd."""

import hashlib
import os

import harness
from harness import check, check_equal, pgpilot_only, psql, run


def pgpool_conf(cluster, port):
    lines = [
        "#------------------------------------------------------------------------------",
        "# CONNECTIONS",
        "#------------------------------------------------------------------------------",
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        "pcp_listen_addresses = '*'",
        "pcp_port = 9898",
        "num_init_children = 20   # 后台产生等待连接的进程",
        "max_pool = 2",
        "backend_clustering_mode = 'streaming_replication'",
        "load_balance_mode = on",
        "sr_check_period = 1",
        "sr_check_user = 'postgres'",
        "health_check_period = 1",
        "health_check_user = 'postgres'",
        "connect_timeout = 2000",
        "failover_on_backend_error = off",
        "enable_pool_hba = on",
        "pool_passwd = 'pool_passwd'",
        "use_watchdog = on",
        "delegate_IP = '192.168.18.215'",
    ]
    for i, node in enumerate(cluster.nodes):
        lines += [f"backend_hostname{i} = '{node['host']}'",
                  f"backend_port{i} = '{node['port']}'",
                  f"backend_weight{i} = {1 if i == 0 else 2}",
                  f"backend_data_directory{i} = '{node['data_dir']}'",
                  f"backend_flag{i} = 'ALLOW_TO_FAILOVER'"]
    return "\n".join(lines) + "\n"


@pgpilot_only
def test_imported_pgpool_conf_serves_the_cluster(env):
    px = env.pgpilot()  # only its port, config path and log: the config is the imported one
    conf = os.path.join(env.workdir, "pgpool.conf")
    with open(conf, "w") as f:
        f.write(pgpool_conf(env.cluster, px.port))
    md5 = "md5" + hashlib.md5(b"secretmd5user").hexdigest()
    with open(os.path.join(env.workdir, "pool_passwd"), "w") as f:
        f.write(f"alice:TEXTsecret\nmd5user:{md5}\n")
    r = run([env.pgpilot_binary, "--import-pgpool", conf], check_exit=False, timeout=10)
    check_equal(r.returncode, 0, f"import exit code: {r.stderr}")
    for note in (f"{conf}:7: pcp_port: not imported", f"{conf}:20: use_watchdog: not imported",
                 f"{conf}:8: num_init_children: carried over as [pool] max_client_connections = 20",
                 "2 users imported as [[user]]; [auth] method = \"md5\"",
                 "no failover_command: [failover] builtin_promote = false"):
        check(note in r.stderr, f"note {note!r} in: {r.stderr}")
    with open(px.config_path, "w") as f:
        f.write(r.stdout)
    checked = run([env.pgpilot_binary, "--check", "-f", px.config_path], check_exit=False)
    check_equal(checked.returncode, 0, f"--check of the imported file: {checked.stderr}")

    with px:
        for user in ("alice", "md5user"):
            who = psql(px.port, "SELECT current_user", user=user, password="secret",
                       args=["-At"]).stdout.strip()
            check_equal(who, user, f"{user} logs in with the pool_passwd password")
        wrong = psql(px.port, "SELECT 1", user="alice", password="nope", check_exit=False)
        check("password authentication failed" in wrong.stderr, f"wrong password: {wrong.stderr}")
        stranger = psql(px.port, "SELECT 1", user="postgres", password="x", check_exit=False)
        check(stranger.returncode != 0, f"a user not in pool_passwd is refused: {stranger.stderr}")
        nodes = psql(px.port, "SHOW POOL_NODES", user="alice", password="secret",
                     args=["-At", "-F", " "]).stdout.split("\n")
        check_equal([(n.split()[3], n.split()[5]) for n in nodes if n],
                    [("up", "0.200000"), ("up", "0.400000"), ("up", "0.400000")],
                    "statuses and weights from backend_weightN")


@pgpilot_only
def test_import_errors_name_the_file_and_line(env):
    missing = os.path.join(env.workdir, "nope.conf")
    r = run([env.pgpilot_binary, "--import-pgpool", missing], check_exit=False)
    check_equal((r.returncode, r.stdout), (1, ""), "a file that cannot be read")
    check(f'cannot read "{missing}": No such file or directory' in r.stderr, r.stderr)

    conf = os.path.join(env.workdir, "pgpool.conf")
    with open(conf, "w") as f:
        f.write("backend_hostname0 = 'db0'\nport = 70000\nbackend_hostname2 = 'db2'\n"
                "load_balance_mode = sometimes\n")
    r = run([env.pgpilot_binary, "--import-pgpool", conf], check_exit=False)
    check_equal((r.returncode, r.stdout), (1, ""), f"a broken pgpool.conf: {r.stderr}")
    check_equal(r.stderr.splitlines(), [
        f"{conf}:3: backend 2 has settings but there is no backend 1: pgpilot numbers backends "
        "0, 1, 2, ... in order",
        f'{conf}:4: load_balance_mode: expected on or off, got "sometimes"',
        f'pgpilot: "{conf}" was not imported'], "the errors")


if __name__ == "__main__":
    raise SystemExit(harness.main())
