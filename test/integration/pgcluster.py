#!/usr/bin/python3
"""A throwaway PostgreSQL 15 cluster: one primary and N streaming hot standbys.

    pgcluster.py start --dir DIR [--standbys N]   start, then write DIR/cluster.json
    pgcluster.py stop  --dir DIR                  stop every server (-m immediate), remove everything
    pgcluster.py env   --dir DIR                  print shell variables (eval "$(pgcluster.py env ...)")
    pgcluster.py gc                               stop clusters whose DIR is gone (left by a killed run)

The servers run as the `postgres` OS user (PostgreSQL refuses root) in a
temporary directory under /tmp owned by that user, so any checkout location
works. DIR only holds cluster.json, which is written before the first server
starts: `stop` can clean up after a `start` that was killed halfway.

Authentication: trust for everything, except TCP logins of two roles made for
the authentication tests: `alice` (password 'secret', SCRAM) and `md5user`
(password 'secret', stored as md5 and checked with md5).

Used as a module: `with Cluster.start(dir, standbys=0) as cluster: ...`
"""

import argparse
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
ROOT_PREFIX = "pgpilot-pg-"
OWNER_FILE = "owner"  # in the temporary root: the DIR whose cluster.json refers to it
START_TIMEOUT_S = 60
STREAMING_TIMEOUT_S = 60

# Roles for the authentication tests: name -> (password, how the backend checks it).
AUTH_ROLES = {
    "alice": ("secret", "scram-sha-256"),
    "md5user": ("secret", "md5"),
}

SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "max_connections": "200",
    "shared_buffers": "'16MB'",
    "fsync": "off",
    "synchronous_commit": "off",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_keep_size": "'512MB'",  # no slots: keep enough WAL for a slow standby
    "hot_standby": "on",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


class ClusterError(RuntimeError):
    pass


def free_port(_handed_out=set()):
    """A loopback port nobody listens on now (the kernel picks it when binding port 0)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _as_os_user(cmd):
    """PostgreSQL programs must not run as root: run them as the postgres OS user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", OS_USER, "--"] + cmd
    return cmd


def _run(cmd, *, cwd, what, timeout=120):
    proc = subprocess.run(_as_os_user(cmd), cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ClusterError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc.stdout


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


class Cluster:
    """A running cluster, as described by DIR/cluster.json."""

    def __init__(self, info):
        self.info = info
        self.dir = info["dir"]
        self.root = info["root"]
        self.host = info["host"]
        self.socket_dir = info["socket_dir"]
        self.superuser = info["superuser"]
        self.primary = info.get("primary")
        self.standbys = info.get("standbys", [])

    @property
    def nodes(self):
        return ([self.primary] if self.primary else []) + self.standbys

    @classmethod
    def load(cls, dir):
        info = _read_json(os.path.join(dir, "cluster.json"))
        if info is None:
            raise ClusterError(f"no cluster in {dir} (missing cluster.json)")
        return cls(info)

    @classmethod
    def start(cls, dir, standbys=2):
        """Start a cluster, or clean up whatever got started and re-raise."""
        dir = os.path.abspath(dir)
        stop(dir)  # a stale cluster from an interrupted run
        gc()
        os.makedirs(dir, exist_ok=True)
        root = tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/tmp")
        socket_dir = os.path.join(root, "sock")
        info = {"dir": dir, "root": root, "host": HOST, "socket_dir": socket_dir,
                "superuser": SUPERUSER, "state": "starting", "primary": None,
                "standbys": [],
                "auth_roles": {n: {"password": p, "method": m} for n, (p, m) in AUTH_ROLES.items()}}
        _write_json(os.path.join(dir, "cluster.json"), info)
        with _interrupts_as_exceptions():
            try:
                with open(os.path.join(root, OWNER_FILE), "w") as f:
                    f.write(dir + "\n")
                os.mkdir(socket_dir)
                if os.geteuid() == 0:
                    pw = pwd.getpwnam(OS_USER)
                    for path in (root, socket_dir):
                        os.chown(path, pw.pw_uid, pw.pw_gid)
                cluster = cls(info)
                cluster._start_primary()
                for i in range(1, standbys + 1):
                    cluster._start_standby(f"standby{i}")
                cluster._wait_streaming()
                info["state"] = "running"
                cluster._save()
                return cluster
            except BaseException:
                stop(dir)
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        stop(self.dir)

    def _save(self):
        _write_json(os.path.join(self.dir, "cluster.json"), self.info)

    def _node(self, name, role):
        return {"name": name, "role": role, "host": HOST, "port": free_port(),
                "data_dir": os.path.join(self.root, name),
                "log": os.path.join(self.root, name + ".log")}

    def _start_server(self, node):
        _run([f"{PG_BIN}/pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S),
              "-D", node["data_dir"], "-l", node["log"]],
             cwd=self.root, what=f"starting {node['name']}\n{_tail(node['log'])}")

    def _settings(self, port):
        lines = [f"{k} = {v}" for k, v in SERVER_SETTINGS.items()]
        lines += [f"port = {port}", f"unix_socket_directories = '{self.socket_dir}'"]
        return "\n# pgcluster.py\n" + "\n".join(lines) + "\n"

    def _start_primary(self):
        node = self._node("primary", "primary")
        self.info["primary"] = self.primary = node
        self._save()
        _run([f"{PG_BIN}/initdb", "-D", node["data_dir"], "-U", SUPERUSER, "--auth=trust",
              "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
             cwd=self.root, what="initdb")
        _append(os.path.join(node["data_dir"], "postgresql.conf"), self._settings(node["port"]))
        self._require_passwords_over_tcp(os.path.join(node["data_dir"], "pg_hba.conf"))
        self._start_server(node)
        sql = []
        for name, (password, method) in AUTH_ROLES.items():
            sql.append(f"SET password_encryption = '{method}';")
            sql.append(f"CREATE ROLE {name} LOGIN PASSWORD '{password}';")
        self.psql(node, "".join(sql))

    @staticmethod
    def _require_passwords_over_tcp(hba_path):
        """Put password rules for the auth roles before initdb's trust rules (first match wins)."""
        with open(hba_path) as f:
            lines = f.readlines()
        rules = [f"host all {name} {HOST}/32 {method}\n" for name, (_, method) in AUTH_ROLES.items()]
        first_rule = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
        with open(hba_path, "w") as f:
            f.writelines(lines[:first_rule] + ["# pgpilot auth tests\n"] + rules + lines[first_rule:])

    def _start_standby(self, name):
        node = self._node(name, "standby")
        self.standbys.append(node)
        self.info["standbys"] = self.standbys
        self._save()
        _run([f"{PG_BIN}/pg_basebackup", "-h", HOST, "-p", str(self.primary["port"]),
              "-U", SUPERUSER, "-D", node["data_dir"], "-R", "-X", "stream",
              "--checkpoint=fast", "--no-sync"],
             cwd=self.root, what=f"pg_basebackup for {name}")
        _append(os.path.join(node["data_dir"], "postgresql.conf"), self._settings(node["port"]))
        # -R wrote a primary_conninfo; this one (later in the file wins) names the standby
        # so that pg_stat_replication shows it.
        _append(os.path.join(node["data_dir"], "postgresql.auto.conf"),
                f"primary_conninfo = 'host={HOST} port={self.primary['port']} "
                f"user={SUPERUSER} application_name={name}'\n")
        self._start_server(node)

    def _wait_streaming(self):
        want = {n["name"] for n in self.standbys}
        deadline = time.monotonic() + STREAMING_TIMEOUT_S
        while True:
            out = self.psql(self.primary, "SELECT application_name FROM pg_stat_replication "
                                          "WHERE state = 'streaming'")
            if want <= set(out.split()):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"standbys not streaming after {STREAMING_TIMEOUT_S}s: "
                                   f"want {sorted(want)}, streaming: {out.split()}")
            time.sleep(0.2)

    # Node control, for tests that take nodes down (on a private cluster: Cluster.start).

    def postmaster_pid(self, node):
        with open(os.path.join(node["data_dir"], "postmaster.pid")) as f:
            return int(f.readline())

    def kill(self, node):
        """kill -9 of the node's postmaster (its children notice and exit by themselves)."""
        pid = self.postmaster_pid(node)
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop_node(self, node, mode="fast"):
        _run([f"{PG_BIN}/pg_ctl", "stop", "-m", mode, "-w", "-t", "30", "-D", node["data_dir"]],
             cwd=self.root, what=f"stopping {node['name']}")

    def start_node(self, node, timeout=20):
        """Start a stopped or killed node again. After a kill -9 the old postmaster's children
        may hold its shared memory for a moment: retry until they are gone."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._start_server(node)
                return
            except ClusterError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def psql(self, node, sql, db="postgres"):
        """Run SQL on a node through its unix socket; returns unaligned, tuples-only output."""
        return _run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                     "-p", str(node["port"]), "-U", SUPERUSER, "-d", db, "-c", sql],
                    cwd=self.root, what=f"psql on {node['name']}")

    def env(self):
        """Shell variables describing the cluster."""
        return {
            "PGC_HOST": self.host,
            "PGC_SOCKET_DIR": self.socket_dir,
            "PGC_PRIMARY_PORT": str(self.primary["port"]),
            "PGC_STANDBY_PORTS": " ".join(str(n["port"]) for n in self.standbys),
            "PGC_ROOT": self.root,
        }


def _tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _stop_root(root, nodes):
    """Immediate shutdown of every server under root, then delete root."""
    for data_dir in nodes:
        pid_file = os.path.join(data_dir, "postmaster.pid")
        if not os.path.exists(pid_file):
            continue
        proc = subprocess.run(_as_os_user([f"{PG_BIN}/pg_ctl", "stop", "-m", "immediate", "-w",
                                           "-t", "30", "-D", data_dir]),
                              cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0 and os.path.exists(pid_file):
            _kill_postmaster(pid_file)
    shutil.rmtree(root, ignore_errors=True)


def _kill_postmaster(pid_file):
    """Last resort when pg_ctl could not stop a server: SIGKILL the postmaster
    (its children exit when they notice it is gone)."""
    try:
        with open(pid_file) as f:
            pid = int(f.readline())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def stop(dir):
    """Stop the cluster described by DIR/cluster.json (if any) and remove it. Idempotent."""
    dir = os.path.abspath(dir)
    info = _read_json(os.path.join(dir, "cluster.json"))
    if info is not None:
        root = info["root"]
        # Every data dir under root, not only the ones in cluster.json: a start may
        # have been killed between creating a node and recording it.
        _stop_root(root, sorted(glob.glob(os.path.join(root, "*/"))))
    shutil.rmtree(dir, ignore_errors=True)


def gc():
    """Stop clusters whose DIR no longer refers to them (e.g. the build dir was deleted)."""
    for root in glob.glob(f"/tmp/{ROOT_PREFIX}*"):
        try:
            with open(os.path.join(root, OWNER_FILE)) as f:
                owner = f.read().strip()
        except OSError:
            continue
        info = _read_json(os.path.join(owner, "cluster.json"))
        if info is None or info.get("root") != root:
            _stop_root(root, sorted(glob.glob(os.path.join(root, "*/"))))


class _interrupts_as_exceptions:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (like SIGINT) so cleanup code runs."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.saved = {}
        for sig in self.SIGNALS:
            try:
                self.saved[sig] = signal.signal(sig, self._raise)
            except ValueError:  # not the main thread
                pass

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start_p = sub.add_parser("start", help="start a primary and N standbys")
    start_p.add_argument("--dir", required=True)
    start_p.add_argument("--standbys", type=int, default=2)
    for name, text in (("stop", "stop and remove"), ("env", "print shell variables")):
        sub.add_parser(name, help=text).add_argument("--dir", required=True)
    sub.add_parser("gc", help="stop clusters left behind by killed runs")
    args = parser.parse_args(argv)

    if args.command == "start":
        t0 = time.monotonic()
        try:
            cluster = Cluster.start(args.dir, standbys=args.standbys)
        except ClusterError as e:
            print(f"pgcluster: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("pgcluster: interrupted, cluster stopped", file=sys.stderr)
            return 130
        ports = ", ".join(f"{n['name']}={n['port']}" for n in cluster.nodes)
        print(f"pgcluster: started in {time.monotonic() - t0:.1f}s: {ports}; "
              f"sockets in {cluster.socket_dir}; {os.path.join(cluster.dir, 'cluster.json')}")
    elif args.command == "stop":
        stop(args.dir)
    elif args.command == "gc":
        gc()
    elif args.command == "env":
        for k, v in Cluster.load(args.dir).env().items():
            print(f"{k}='{v}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
