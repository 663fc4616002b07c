#!/usr/bin/env python3
"""Regenerates the seed corpora in test/fuzz/corpus/ from real PostgreSQL sessions.

Starts a throwaway PostgreSQL cluster (as the `postgres` OS user when run as root), puts a
recording TCP relay in front of it and runs real libpq clients (psql, pgbench) through the relay:
trust, cleartext password, md5 and SCRAM-SHA-256 logins, simple and extended queries, an error,
a notice, LISTEN/NOTIFY, an SSLRequest refused with 'N', a CancelRequest. The recorded byte
streams become seed inputs in the formats the targets expect (see the comment at the top of each
fuzz_*.cpp). Every role's password is "pencil", the password the SCRAM/md5 targets know.

    python3 test/fuzz/make_corpus.py            # rewrites test/fuzz/corpus/*/capture-*
    PG_BIN=/usr/lib/postgresql/15/bin python3 test/fuzz/make_corpus.py

Only standard-library Python. The checked-in corpus files were made with PostgreSQL 15 and
Debian 12's libpq; the hand-written seeds (non-capture-* files) are left alone.
"""

import glob
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
PG_BIN = os.environ.get("PG_BIN") or sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
PASSWORD = "pencil"


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """Accepts connections on a local port, forwards them to PostgreSQL and records both
    directions of each connection."""

    def __init__(self, pg_port):
        self.pg_port = pg_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sessions = []  # [client_bytes, server_bytes, done_event]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.pg_port))
            rec = [bytearray(), bytearray(), threading.Event(), threading.Event()]
            with self.lock:
                self.sessions.append(rec)
            threading.Thread(target=self._pump, args=(c, s, rec[0], rec[2]), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, rec[1], rec[3]), daemon=True).start()

    @staticmethod
    def _pump(src, dst, buf, done):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            done.set()

    def take(self):
        """Waits for the recorded connections to end and returns [(client, server)]."""
        with self.lock:
            sessions, self.sessions = self.sessions, []
        for rec in sessions:
            rec[2].wait(10)
            rec[3].wait(10)
        return [(bytes(r[0]), bytes(r[1])) for r in sessions]


def frames(data):
    """Splits a tagged stream into (tag, body); stops at an incomplete frame."""
    out, pos = [], 0
    while pos + 5 <= len(data):
        (length,) = struct.unpack("!I", data[pos + 1:pos + 5])
        if pos + 1 + length > len(data):
            break
        out.append((data[pos:pos + 1], data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return out


def frame(tag, body):
    return tag + struct.pack("!I", 4 + len(body)) + body


def skip_startup(client, server):
    """The client stream after its untagged packets, and the server stream after any 'N'."""
    pos = 0
    while pos + 8 <= len(client):
        (length,) = struct.unpack("!I", client[pos:pos + 4])
        (code,) = struct.unpack("!I", client[pos + 4:pos + 8])
        pos += length
        if code not in (80877103, 80877104):  # SSLRequest, GSSENCRequest: another packet follows
            break
    if server[:1] == b"N":
        server = server[1:]
    return client[pos:], server


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "capture-" + name), "wb") as f:
        f.write(data)


def main():
    tmp = tempfile.mkdtemp(prefix="pgpilot-corpus-")
    os.chmod(tmp, 0o777)
    data_dir = os.path.join(tmp, "data")
    pg_port = free_port()
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGSSLMODE="disable", PGGSSENCMODE="disable",
               PGCONNECT_TIMEOUT="10")
    env.pop("PGSERVICE", None)
    proc = None
    try:
        subprocess.run(as_postgres([f"{PG_BIN}/initdb", "-D", data_dir, "-U", "postgres",
                                    "--auth=trust", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, cwd=tmp)
        with open(os.path.join(data_dir, "pg_hba.conf"), "w") as f:
            f.write("host all scram_user 127.0.0.1/32 scram-sha-256\n"
                    "host all md5_user 127.0.0.1/32 md5\n"
                    "host all pw_user 127.0.0.1/32 password\n"
                    "host all all 127.0.0.1/32 trust\n"
                    "local all all trust\n")
        proc = subprocess.Popen(as_postgres([f"{PG_BIN}/postgres", "-D", data_dir, "-p",
                                             str(pg_port), "-k", tmp, "-c",
                                             "listen_addresses=127.0.0.1"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        for _ in range(100):
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port)],
                              stdout=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        admin = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres",
                 "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]
        for sql in ("SET password_encryption = 'scram-sha-256'; "
                    f"CREATE ROLE scram_user LOGIN PASSWORD '{PASSWORD}'",
                    f"SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD '{PASSWORD}'",
                    f"CREATE ROLE pw_user LOGIN PASSWORD '{PASSWORD}'",
                    "CREATE ROLE trust_user LOGIN"):
            subprocess.run(admin + [sql], check=True, env=env)

        relay = Relay(pg_port)

        def psql(user, sql, extra_env=None, dbname="postgres"):
            e = dict(env, **(extra_env or {}))
            subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(relay.port), "-U", user,
                            "-d", dbname, "-c", sql], env=e, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            return relay.take()

        def pgbench(user, mode):
            script = os.path.join(tmp, "bench.sql")
            with open(script, "w") as f:
                f.write("\\set x random(1, 10)\nSELECT :x::int AS v, 'abc' AS s;\n")
            subprocess.run(["pgbench", "-n", "-t", "2", "-M", mode, "-f", script, "-h",
                            "127.0.0.1", "-p", str(relay.port), "-U", user, "postgres"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return relay.take()

        captures = {}
        captures["trust"] = psql("trust_user", "SELECT 1 AS one, 'two' AS two")
        captures["scram"] = psql("scram_user", "SELECT current_user")
        captures["md5"] = psql("md5_user", "SELECT current_user")
        captures["password"] = psql("pw_user", "SELECT current_user")
        captures["error"] = psql("trust_user", "SELECT 1/0")
        captures["notice"] = psql("trust_user",
                                  "DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$; SELECT 2")
        captures["notify"] = psql("trust_user", "LISTEN ch; NOTIFY ch, 'payload'; SELECT 3")
        captures["copy"] = psql("trust_user", "COPY (SELECT g FROM generate_series(1,3) g) TO STDOUT")
        captures["ssl-refused"] = psql("trust_user", "SELECT 4", {"PGSSLMODE": "prefer"})
        captures["options"] = psql("trust_user", "SELECT 5",
                                   {"PGAPPNAME": "corpus", "PGOPTIONS": "-c search_path=public",
                                    "PGCLIENTENCODING": "LATIN1"})
        captures["extended"] = pgbench("trust_user", "extended")
        captures["prepared"] = pgbench("scram_user", "prepared")

        # A CancelRequest: interrupt a running query.
        p = subprocess.Popen(["psql", "-X", "-h", "127.0.0.1", "-p", str(relay.port), "-U",
                              "trust_user", "-d", "postgres", "-c", "SELECT pg_sleep(5)"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        p.wait(10)
        captures["cancel"] = relay.take()
    finally:
        if proc:
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)

    for d in glob.glob(os.path.join(CORPUS, "*", "capture-*")):
        os.remove(d)

    for name, sessions in captures.items():
        for i, (client, server) in enumerate(sessions):
            tag = name if i == 0 else f"{name}-{i}"
            if not client:
                continue
            write("fuzz_startup", tag, client)
            c, s = skip_startup(client, server)
            if c:
                write("fuzz_frame", tag + "-frontend", b"\x00" + c)
            if s:
                write("fuzz_frame", tag + "-backend", b"\x01" + s)
            # Authentication: the flags byte picks the method and the stored secret that match
            # the captured exchange (see fuzz_scram_server.cpp / fuzz_scram_client.cpp).
            if name in ("scram", "prepared") and i == 0:
                for variant in (2, 4):  # plain and SCRAM secret; fix nonce and proof
                    write("fuzz_scram_server", f"{tag}-secret{variant}",
                          bytes([3 | variant << 2 | 0x60]) + c)
                write("fuzz_scram_server", f"{tag}-md5-upgrade", bytes([2 | 4 << 2 | 0x60]) + c)
                write("fuzz_scram_client", tag, bytes([2 | 0x18]) + s)
                cf = [b for t, b in frames(c) if t == b"p"]
                sf = [b[4:] for t, b in frames(s) if t == b"R" and b[:4] in
                      (b"\0\0\0\x0b", b"\0\0\0\x0c")]
                if len(cf) >= 2:
                    first = cf[0][cf[0].index(b"\0") + 5:]
                    write("fuzz_scram_server", tag + "-direct",
                          bytes([0x80 | 2 << 2 | 0x60]) + frame(b"p", first) + frame(b"p", cf[1]))
                if len(sf) >= 2:
                    write("fuzz_scram_client", tag + "-direct",
                          bytes([0x20 | 0x18 | 2]) + frame(b"R", sf[0]) + frame(b"R", sf[1]))
                    # The same with one PBKDF2 iteration instead of 4096: 1000 times cheaper to
                    # run, so the fuzzer explores more (the fix bits re-sign the exchange).
                    fast = sf[0].replace(b",i=4096", b",i=1")
                    write("fuzz_scram_client", tag + "-direct-i1",
                          bytes([0x20 | 0x18 | 2]) + frame(b"R", fast) + frame(b"R", sf[1]))
                    write("fuzz_scram_client", tag + "-i1", bytes([2 | 0x18]) + b"".join(
                        frame(t, b.replace(b",i=4096", b",i=1")) for t, b in frames(s)))
            if name == "md5":
                write("fuzz_scram_server", tag + "-plain", bytes([2 | 2 << 2 | 0x40]) + c)
                write("fuzz_scram_server", tag + "-md5", bytes([2 | 3 << 2 | 0x40]) + c)
                write("fuzz_scram_client", tag + "-plain", bytes([2]) + s)
                write("fuzz_scram_client", tag + "-md5", bytes([3]) + s)
            if name == "password":
                write("fuzz_scram_server", tag, bytes([1 | 2 << 2]) + c)
                write("fuzz_scram_server", tag + "-scram-secret", bytes([1 | 4 << 2]) + c)
                write("fuzz_scram_client", tag, bytes([2]) + s)
            if name == "trust":
                write("fuzz_scram_server", tag, bytes([0]) + c)
                write("fuzz_scram_client", tag, bytes([2]) + s)

    for target in sorted(os.listdir(CORPUS)):
        files = glob.glob(os.path.join(CORPUS, target, "capture-*"))
        print(f"{target}: {len(files)} captured seeds")


if __name__ == "__main__":
    sys.exit(main())
