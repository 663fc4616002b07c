#!/usr/bin/python3
"""The HTTP admin endpoint ([admin], docs/admin.md): GET /health, /nodes, /pools and /metrics
read with Python's http.client while clients use pgpilot; node control with POST and a bearer
token; malformed and oversized requests; the port taken by another process; pgpilot-ctl."""

import http.client
import json
import os
import re
import socket
import subprocess
import time

import harness
from harness import Connection, check, check_equal, free_port, pgpilot_only

TOKEN = "itest-s3cret"
# One sample of the Prometheus text format: name, optional labels, a number.
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+-]+|NaN|\+Inf|-Inf)$')


class Admin:
    """Requests to pgpilot's admin port, one HTTP/1.1 connection (kept alive)."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)

    def request(self, method, path, token=None, headers=None, body=None):
        """Returns (status, headers as a dict with lower-case names, body text)."""
        h = dict(headers or {})
        if token or self.token:
            h["Authorization"] = f"Bearer {token or self.token}"
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        text = r.read().decode()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text

    def json(self, path, expect=200):
        status, headers, text = self.request("GET", path)
        check_equal(status, expect, f"status of GET {path} ({text})")
        check_equal(headers.get("content-type"), "application/json", f"type of GET {path}")
        return json.loads(text)

    def metrics(self):
        """GET /metrics: {(name, labels text): value}; checks every line's syntax."""
        status, headers, text = self.request("GET", "/metrics")
        check_equal(status, 200, "status of GET /metrics")
        check_equal(headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8",
                    "type of /metrics")
        samples, typed = {}, set()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                name, kind = line.split()[2:4]
                check(kind in ("gauge", "counter"), f"metric type: {line}")
                typed.add(name)
                continue
            if line.startswith("# HELP "):
                continue
            m = SAMPLE.match(line)
            check(m, f"not a Prometheus sample: {line!r}")
            check(m.group(1) in typed, f"sample before its TYPE line: {line!r}")
            samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
        return samples

    def post(self, path, token=None):
        status, headers, text = self.request("POST", path, token=token)
        return status, headers, json.loads(text)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def node_metric(samples, name, node):
    return samples[(name, f'{{node_id="{node}"}}')]


def pool_labels(node, user="postgres", database="postgres", mode="session"):
    return f'{{database="{database}",user="{user}",node_id="{node}",pool_mode="{mode}"}}'


def raw_exchange(port, data, read_timeout=5):
    """Sends bytes on a new connection; returns everything read until pgpilot closes it."""
    with socket.create_connection((harness.HOST, port), timeout=read_timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pgpilot_only
def test_nodes_pools_and_metrics_follow_the_clients(env):
    admin_port = free_port()
    with env.pgpilot(admin={"port": admin_port}) as px, Admin(admin_port) as admin:
        health = admin.json("/health")
        check_equal((health["status"], health["primary_node_id"], health["nodes_up"],
                     health["nodes"]), ("ok", 0, 3, 3), "health")
        index = admin.json("/")
        check("GET /metrics" in index["endpoints"], f"index lists the endpoints: {index}")

        # /nodes says what SHOW POOL_NODES says.
        with Connection(px.port) as c:
            version = harness.run([env.pgpilot_binary, "--version"]).stdout.strip()
            result = c.execute("show pool_version ;")
            check_equal((result.columns, result.rows), (["pool_version"], [(version,)]),
                        "SHOW POOL_VERSION, as pgpool-II names it")
            show = c.query("SHOW POOL_NODES")
            nodes = admin.json("/nodes")["nodes"]
            check_equal([(str(n["node_id"]), n["hostname"], str(n["port"]), n["status"],
                          n["role"], f'{n["lb_weight"]:.6f}') for n in nodes],
                        [tuple(r[0:4]) + (r[6], r[5]) for r in show], "/nodes against SHOW POOL_NODES")
            check_equal([n["role"] for n in nodes], ["primary", "standby", "standby"], "roles")

            # Reads through pgpilot are counted per node, in JSON and metrics alike.
            before = admin.metrics()
            for _ in range(20):
                c.query("SELECT 1")
            after = admin.metrics()
            nodes = admin.json("/nodes")["nodes"]
            selects = [node_metric(after, "pgpilot_node_selects_total", i) -
                       node_metric(before, "pgpilot_node_selects_total", i) for i in range(3)]
            check_equal(sum(selects), 20, f"reads counted per node: {selects}")
            check_equal([n["select_cnt"] for n in nodes],
                        [int(node_metric(after, "pgpilot_node_selects_total", i)) for i in range(3)],
                        "select_cnt in /nodes and /metrics")
            check_equal([node_metric(after, "pgpilot_node_up", i) for i in range(3)], [1, 1, 1],
                        "pgpilot_node_up")
            check_equal([node_metric(after, "pgpilot_node_primary", i) for i in range(3)],
                        [1, 0, 0], "pgpilot_node_primary")
            check(node_metric(after, "pgpilot_node_wal_lsn_bytes", 0) > 0, "the primary's WAL position")
            check_equal(after[("pgpilot_failover_in_progress", "")], 0, "no failover")

            # The session holds its connection to the primary (session pooling): one active
            # server connection, one client.
            c.query("CREATE TEMPORARY TABLE itest_admin_tmp (i int)")  # a write: the primary
            samples = admin.metrics()
            check_equal(samples[("pgpilot_pool_server_active", pool_labels(0))], 1,
                        "server connections in use on the primary")
            check_equal(samples[("pgpilot_clients", "")], 1, "clients")
            pools = admin.json("/pools")
            check_equal(pools["clients"], 1, "clients in /pools")
            primary_pool = [p for p in pools["pools"]
                            if (p["node_id"], p["user"], p["database"]) == (0, "postgres", "postgres")]
            check_equal(len(primary_pool), 1, f"the primary's pool in /pools: {pools}")
            check_equal((primary_pool[0]["sv_active"], primary_pool[0]["pool_mode"]),
                        (1, "session"), "the primary's pool")
        # The client left: once its connection is reset (DISCARD ALL), it is idle in the pool.
        def left(samples):
            return (samples[("pgpilot_clients", "")], samples[("pgpilot_pool_server_active",
                    pool_labels(0))], samples[("pgpilot_pool_server_idle", pool_labels(0))])
        harness.wait_until(lambda: left(admin.metrics()) == (0, 0, 1), 5,
                           "no client, the primary's connection idle in the pool")
        # pgpilot stops with an admin connection open (kept alive, idle).
        check_equal(admin.request("GET", "/health")[0], 200, "a request on the kept connection")


@pgpilot_only
def test_node_control_needs_the_token(env):
    admin_port = free_port()
    with env.pgpilot(admin={"port": admin_port, "token": TOKEN}) as px, Admin(admin_port) as admin:
        for token, status in ((None, 401), ("wrong", 401), (TOKEN + "x", 401)):
            code, headers, body = admin.post("/nodes/2/detach", token=token)
            check_equal(code, status, f"POST with token {token!r}: {body}")
            check_equal(headers.get("www-authenticate"), "Bearer", "the scheme asked for")
        check_equal(admin.json("/nodes")["nodes"][2]["status"], "up", "node 2 untouched")
        status, headers, _ = admin.request("GET", "/nodes/2/detach")
        check_equal((status, headers.get("allow")), (405, "POST"), "GET on a node command")
        check_equal(admin.request("DELETE", "/metrics")[0], 405, "DELETE /metrics")

        admin.token = TOKEN
        code, _, body = admin.post("/nodes/7/attach")
        check_equal((code, body["ok"]), (404, False), f"no node 7: {body}")
        check("there is no node 7" in body["message"], f"message: {body}")
        code, _, body = admin.post("/nodes/x/attach")
        check_equal(code, 404, f"not a node id: {body}")
        code, _, body = admin.post("/nodes/2/detach?frob=1")
        check_equal(code, 400, f"unknown parameter: {body}")
        code, _, body = admin.post("/nodes/0/promote")
        check_equal((code, body["ok"]), (409, False), f"promoting the primary is refused: {body}")

        code, _, body = admin.post("/nodes/2/detach")
        check_equal((code, body["ok"], body["command"]), (200, True, "PGPOOL DETACH NODE 2"),
                    f"detach: {body}")
        check_equal([n["status"] for n in admin.json("/nodes")["nodes"]], ["up", "up", "down"],
                    "statuses after the detach")
        with Connection(px.port) as c:
            check_equal([r[3] for r in c.query("SHOW POOL_NODES")], ["up", "up", "down"],
                        "SHOW POOL_NODES after the detach")
        samples = admin.metrics()
        check_equal(node_metric(samples, "pgpilot_node_up", 2), 0, "pgpilot_node_up of node 2")
        health = admin.json("/health")
        check_equal((health["status"], health["nodes_up"]), ("ok", 2), "health with a standby down")

        code, _, body = admin.post("/nodes/2/attach")
        check_equal((code, body["ok"]), (200, True), f"attach: {body}")
        check_equal(admin.json("/nodes")["nodes"][2]["status"], "up", "node 2 attached")
        log = px.log()
        check(re.search(r"admin HTTP client 127\.0\.0\.1:\d+ runs PGPOOL DETACH NODE 2", log),
              "the detach is logged with the client's address")

    # Without a token in the config, node control over HTTP is off.
    admin_port = free_port()
    with env.pgpilot(admin={"port": admin_port}), Admin(admin_port) as admin:
        code, _, body = admin.post("/nodes/2/detach", token="anything")
        check_equal(code, 403, f"no [admin] token: {body}")
        check("[admin] token" in body["error"], f"says what to set: {body}")
        check_equal(admin.json("/nodes")["nodes"][2]["status"], "up", "node 2 untouched")


@pgpilot_only
def test_bad_requests_get_http_errors_and_sessions_go_on(env):
    admin_port = free_port()
    with env.pgpilot(admin={"port": admin_port}) as px, Connection(px.port) as client:
        client.query("BEGIN")
        client.query("SELECT 1")
        answers = {
            "garbage": raw_exchange(admin_port, b"GARBAGE\r\n\r\n"),
            "header": raw_exchange(admin_port, b"GET /metrics HTTP/1.1\r\nX-Big: " +
                                   b"a" * 20000 + b"\r\n\r\n"),
            "body": raw_exchange(admin_port, b"POST /nodes/1/attach HTTP/1.1\r\nContent-Length: "
                                 b"100000\r\n\r\n" + b"x" * 100000),
            "path": raw_exchange(admin_port, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"),
        }
        for what, status in (("garbage", b"400"), ("header", b"431"), ("body", b"413"),
                             ("path", b"404")):
            check(answers[what].startswith(b"HTTP/1.1 " + status + b" "),
                  f"{what}: {answers[what][:200]!r}")
        check(b'"error":"no such endpoint: /nope"' in answers["path"], f"{answers['path']!r}")

        # More connections than the endpoint serves at once: the extra ones are closed, and the
        # endpoint answers again once they are gone.
        idle = [socket.create_connection((harness.HOST, admin_port)) for _ in range(70)]
        try:
            time.sleep(0.3)
            closed = 0
            for s in idle:
                s.settimeout(0.01)
                try:
                    closed += s.recv(1) == b""
                except socket.timeout:
                    pass
            check_equal(closed, 6, "connections closed beyond the 64 served")
        finally:
            for s in idle:
                s.close()
        with Admin(admin_port) as admin:
            harness.wait_until(lambda: _answers(admin), 5, "the endpoint answers again")
        # A client session of pgpilot went on through all of it.
        check_equal(client.scalar("SELECT 'still in the transaction'"), "still in the transaction",
                    "the client session")
        client.query("COMMIT")


@pgpilot_only
def test_pgpilot_ctl(env):
    """pgpilot-ctl, the endpoint's command-line client, with the address, port and token
    taken from pgpilot's configuration file."""
    ctl = os.path.join(os.path.dirname(env.pgpilot_binary), "pgpilot-ctl")
    admin_port = free_port()
    with env.pgpilot(admin={"port": admin_port, "token": TOKEN}) as px:
        def run_ctl(*args):
            return harness.run([ctl, "-f", px.config_path, *args], check_exit=False, timeout=60)

        r = run_ctl("nodes")
        check_equal(r.returncode, 0, f"pgpilot-ctl nodes: {r.stderr}")
        lines = r.stdout.splitlines()
        check_equal([c.strip() for c in lines[0].split("|")][:5],
                    ["node_id", "hostname", "port", "status", "role"], "the table's header")
        rows = [[c.strip() for c in line.split("|")] for line in lines[2:5]]
        check_equal([(row[0], row[2], row[3], row[4]) for row in rows],
                    [(str(i), str(n["port"]), "up", "primary" if i == 0 else "standby")
                     for i, n in enumerate(env.cluster.nodes)], "the nodes")
        check_equal(lines[5], "(3 rows)", "the row count")
        check_equal(run_ctl("health").returncode, 0, "health with a primary up")
        check("pgpilot_node_up" in run_ctl("metrics").stdout, "metrics")

        r = run_ctl("detach", "2", "--gracefully")
        check_equal((r.returncode, r.stdout.strip()), (0, "node 2 detached"), f"detach: {r.stderr}")
        statuses = [line.split("|")[3].strip() for line in run_ctl("nodes").stdout.splitlines()[2:5]]
        check_equal(statuses, ["up", "up", "down"], "statuses after the detach")
        r = run_ctl("attach", "2")
        check_equal(r.returncode, 0, f"attach: {r.stderr}")
        r = run_ctl("promote", "0")
        check_equal(r.returncode, 1, "promoting the primary is refused")
        check("(HTTP 409)" in r.stderr, f"the refusal: {r.stderr}")
        r = run_ctl("-t", "wrong", "attach", "2")
        check_equal(r.returncode, 1, "a wrong token")
        check("(HTTP 401)" in r.stderr, f"the refusal: {r.stderr}")
        r = run_ctl("frob")
        check_equal(r.returncode, 2, "an unknown command")
        check('unknown command "frob"' in r.stderr, r.stderr)
    r = harness.run([ctl, "-p", str(admin_port), "nodes"], check_exit=False)
    check_equal(r.returncode, 2, "pgpilot stopped: no answer")
    check(f"no answer from 127.0.0.1:{admin_port}: Connection refused" in r.stderr, r.stderr)


def _answers(admin):
    try:
        return admin.request("GET", "/health")[0] == 200
    except (OSError, http.client.HTTPException):
        admin.close()
        admin.conn = http.client.HTTPConnection(harness.HOST, admin.port, timeout=10)
        return False


@pgpilot_only
def test_admin_port_taken(env):
    with socket.socket() as taken:
        taken.bind((harness.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        px = env.pgpilot(admin={"port": port})
        r = subprocess.run([env.pgpilot_binary, "-f", px.config_path], capture_output=True,
                           text=True, timeout=30)
        check_equal(r.returncode, 1, f"exit code with the admin port taken: {r.stderr}")
        check(f"cannot listen: could not bind 127.0.0.1 port {port}: Address already in use" in
              r.stderr, f"says which address: {r.stderr}")


if __name__ == "__main__":
    raise SystemExit(harness.main())
