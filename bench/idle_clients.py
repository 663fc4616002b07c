#!/usr/bin/python3
"""Memory per idle client: 10,000 idle client connections held open through pgpilot and through
PgBouncer (both in transaction mode, all on one database), RSS of the pooler before and after.

Two idle patterns (`--patterns`, default both), each measured on its own:

  fresh    each client does the startup handshake, then stays idle
  queried  each client does the startup handshake, runs `SELECT 1` once (simple Query, read
           up to ReadyForQuery), then stays idle

Starts a throwaway PostgreSQL 15 server (test/integration/pgcluster.py, trust authentication,
no standbys) with an empty database `bench`. Then, in each round, for each pattern and each
target in turn (a fresh pooler process for every (round, target, pattern); the target order
alternates from round to round):

1. Start the pooler: pgpilot with `[pool] pool_mode = "transaction"`, pool_size = 20,
   max_client_connections = clients + 100 (it raises its own RLIMIT_NOFILE), or Debian's
   PgBouncer with pool_mode = transaction, default_pool_size = 20, max_client_conn = clients + 100.
2. Warm up: one client connects, runs `SELECT 1` and disconnects (the pool then holds one
   server connection). Read VmRSS of the pooler process (/proc/PID/status): "before".
3. Open `--clients` connections from this process (asyncio, raw protocol: StartupMessage for
   user postgres, database bench; trust, so AuthenticationOk; wait for ReadyForQuery; with the
   `queried` pattern also `SELECT 1` up to ReadyForQuery), at most `--concurrency` clients
   at a time, and hold them, idle.
4. After `--settle` seconds, read VmRSS again: "after". Bytes per idle client =
   (after - before) / clients held. Also: RssAnon, open descriptors, server connections in
   pg_stat_activity.
5. Check that the clients are really there: `SELECT 1` on `--probe` of them spread over the
   set, and none of the others closed by the pooler. Then close them all, read VmRSS once more
   (informative), stop the pooler.

Writes bench/results/<date>-<name>.md (default name `idle-clients`) and prints it.

    bash bench/idle_clients.sh                  (builds first; arguments pass through)
    /usr/bin/python3 bench/idle_clients.py [--clients 10000] [--targets pgpilot,pgbouncer]
        [--patterns fresh,queried] [--rounds 2] [--max-load 3]
"""

import argparse
import asyncio
import contextlib
import datetime
import os
import resource
import shlex
import signal
import struct
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as T  # noqa: E402
import pgbench_compare as PC  # noqa: E402  (helpers: median, csv_list, summary, write_report)
from pgcluster import Cluster  # noqa: E402

REPO = T.REPO
DB = "bench"
TARGETS = ["pgpilot", "pgbouncer"]
LABELS = {"pgpilot": "pgpilot", "pgbouncer": "PgBouncer"}
# What each client does before it stays idle.
PATTERNS = ["fresh", "queried"]
PATTERN_TEXT = {"fresh": "startup only", "queried": "startup, then `SELECT 1` once"}
GOAL_BYTES = 4096  # issue 4: at most 4 KiB per idle client for pgpilot
POOL_SIZE = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pgpilot", default=os.path.join(REPO, "build", "proxy", "pgpilot"))
    parser.add_argument("--targets", type=PC.csv_list(TARGETS), default=",".join(TARGETS),
                        help="comma-separated, from " + ",".join(TARGETS))
    parser.add_argument("--clients", type=int, default=10000, help="idle client connections to hold")
    parser.add_argument("--patterns", type=PC.csv_list(PATTERNS), default=",".join(PATTERNS),
                        help="comma-separated, from " + ",".join(PATTERNS) + ": what each client does "
                             "before it stays idle (fresh: the startup handshake only; queried: the "
                             "handshake, then SELECT 1 once); each pattern is measured with a fresh pooler")
    parser.add_argument("--rounds", type=int, default=2,
                        help="a fresh pooler of each target per pattern per round")
    parser.add_argument("--concurrency", type=int, default=200,
                        help="clients in flight at once (handshake, and SELECT 1 with the queried pattern)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between the last client going idle and the RSS reading; enough for "
                             "pgpilot to park the idle transaction-mode sessions (every 100 ms it parks "
                             "sessions idle for at least 100 ms, freeing their coroutines) and give the "
                             "freed heap pages back (malloc_trim, at most once a second)")
    parser.add_argument("--probe", type=int, default=20, help="held clients that run SELECT 1 afterwards")
    parser.add_argument("--workers", type=int, default=2, help="pgpilot [server] workers")
    parser.add_argument("--connect-timeout", type=float, default=60,
                        help="seconds for one client's handshake (and its SELECT 1 with the queried pattern)")
    parser.add_argument("--max-load", type=float, default=0,
                        help="before the runs, wait while the 1-minute load average is above this (0: do not wait)")
    parser.add_argument("--load-interval", type=float, default=120, help="seconds between load checks")
    parser.add_argument("--max-wait", type=float, default=1500, help="give up waiting for the load after this")
    parser.add_argument("--name", default="idle-clients", help="report file: <results-dir>/<date>-<name>.md")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    args = parser.parse_args(argv)
    if min(args.clients, args.rounds, args.concurrency) < 1:
        parser.error("--clients, --rounds and --concurrency must be positive")
    return args


# --------------------------------------------------------------------------- the client side

class ClientError(RuntimeError):
    pass


def startup_message(user, database):
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                      (("user", user), ("database", database))) + b"\0"
    return struct.pack("!ii", 8 + len(params), 196608) + params


def error_text(body):
    """ErrorResponse fields -> 'SEVERITY CODE: message'."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '?')}"


async def read_until_ready(reader):
    """Read backend messages up to ReadyForQuery; ClientError on ErrorResponse or an
    authentication request other than AuthenticationOk."""
    error = None
    while True:
        header = await reader.readexactly(5)
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        body = await reader.readexactly(length - 4)
        if kind == b"R":
            code = struct.unpack("!i", body[:4])[0]
            if code != 0:
                raise ClientError(f"authentication request {code} (the benchmark expects trust)")
        elif kind == b"E":
            error = error_text(body)
        elif kind == b"Z":
            if error:
                raise ClientError(error)
            return


class QueryError(ClientError):
    pass


async def open_client(port, timeout, query=None):
    """Handshake (and then `query`, a simple Query read up to ReadyForQuery, if given) within
    `timeout` seconds; returns (reader, writer). A failure of the query is a QueryError."""
    async def handshake():
        reader, writer = await asyncio.open_connection(T.HOST, port)
        try:
            writer.write(startup_message(T.SUPERUSER, DB))
            await writer.drain()
            await read_until_ready(reader)
            if query is not None:
                try:
                    await send_query(reader, writer, query)
                except (OSError, asyncio.IncompleteReadError, ClientError) as e:
                    raise QueryError(f"{query}: {type(e).__name__}: {e}") from e
        except BaseException:
            writer.close()
            raise
        return reader, writer
    return await asyncio.wait_for(handshake(), timeout)


async def send_query(reader, writer, sql):
    payload = sql.encode() + b"\0"
    writer.write(b"Q" + struct.pack("!i", 4 + len(payload)) + payload)
    await writer.drain()
    await read_until_ready(reader)


async def simple_query(conn, sql, timeout=30):
    reader, writer = conn
    await asyncio.wait_for(send_query(reader, writer, sql), timeout)


async def open_many(port, count, concurrency, timeout, query=None):
    """Open `count` clients (each running `query` once after its handshake, if given);
    returns (connections, {error text: count}, seconds)."""
    sem = asyncio.Semaphore(concurrency)
    errors = {}

    async def one():
        async with sem:
            try:
                return await open_client(port, timeout, query)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ClientError) as e:
                text = (f"timeout after {timeout:g} s" if isinstance(e, asyncio.TimeoutError)
                        else str(e) if isinstance(e, QueryError)
                        else f"{type(e).__name__}: {e}")
                errors[text] = errors.get(text, 0) + 1
                return None

    start = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(count)))
    return [c for c in results if c is not None], errors, time.monotonic() - start


def close_all(conns):
    for _, writer in conns:
        with contextlib.suppress(Exception):
            writer.write(b"X\0\0\0\4")
            writer.close()


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < need:
        raise T.BenchError(f"RLIMIT_NOFILE is {soft} (hard {hard}): {need} descriptors needed for the clients")
    return soft


# --------------------------------------------------------------------------- targets

def start_target(name, args, cluster, work):
    limit = args.clients + 100
    if name == "pgpilot":
        pool = {"pool_mode": "transaction", "pool_size": POOL_SIZE, "max_client_connections": limit}
        target = T.PgpilotTarget(args.pgpilot, cluster, work, primary_only=True, workers=args.workers,
                                 max_pool=POOL_SIZE, pool=pool)
    elif name == "pgbouncer":
        target = T.Pgbouncer(work, cluster, pool_mode="transaction", pool_size=POOL_SIZE, max_client_conn=limit)
    else:
        raise ValueError(name)
    return target


def rss(pid):
    return T.proc_status(pid)


def measure_one(name, pattern, rnd, args, cluster, work):
    """One fresh pooler, warm-up, N idle clients of one pattern; returns a dict of figures."""
    out = {"target": name, "pattern": pattern, "round": rnd, "errors": {}, "log": [], "failed": None}
    target = start_target(name, args, cluster, work)
    with target:
        pid = target.pid
        out["description"] = target.description
        loop = asyncio.new_event_loop()
        conns = []
        try:
            warm = loop.run_until_complete(open_client(target.port, args.connect_timeout))
            loop.run_until_complete(simple_query(warm, "SELECT 1"))
            close_all([warm])
            loop.run_until_complete(asyncio.sleep(1.0))
            out["before"] = rss(pid)
            out["fds_before"] = T.open_fds(pid)
            out["load"] = os.getloadavg()[0]
            query = "SELECT 1" if pattern == "queried" else None
            conns, errors, seconds = loop.run_until_complete(
                open_many(target.port, args.clients, args.concurrency, args.connect_timeout, query))
            out["opened"], out["errors"], out["open_seconds"] = len(conns), errors, seconds
            loop.run_until_complete(asyncio.sleep(args.settle))
            out["after"] = rss(pid)
            out["fds_after"] = T.open_fds(pid)
            out["servers"] = T.connections_to(pid, cluster.primary["port"])
            # Are they really there? SELECT 1 on some, spread over the set; none closed by the pooler.
            step = max(1, len(conns) // max(1, args.probe))
            probes = conns[::step][:args.probe]
            probe_errors = []
            for c in probes:
                try:
                    loop.run_until_complete(simple_query(c, "SELECT 1"))
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ClientError) as e:
                    probe_errors.append(f"{type(e).__name__}: {e}")
            loop.run_until_complete(asyncio.sleep(0.5))
            out["probes"], out["probe_errors"] = len(probes), probe_errors
            out["closed_by_pooler"] = sum(1 for r, _ in conns if r.at_eof())
            close_all(conns)
            conns = []
            loop.run_until_complete(asyncio.sleep(2.0))
            out["after_close"] = rss(pid)
            out["fds_after_close"] = T.open_fds(pid)
            out["alive"] = target.alive()
        except Exception as e:  # noqa: BLE001 - reported
            out["failed"] = f"{type(e).__name__}: {e}"
            out["alive"] = target.alive()
        finally:
            close_all(conns)
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0.2))
            loop.close()
        if out["failed"] or out["errors"] or not out["alive"]:
            out["log"] = target.log().splitlines()[-40:]
    return out


def per_client(r, key="VmRSS"):
    if r.get("failed") or not r.get("opened"):
        return None
    return (r["after"][key] - r["before"][key]) / r["opened"]


# --------------------------------------------------------------------------- report

def kib(b):
    return f"{b / 1024:,.0f} KiB"


def report(args, results, meta):
    m = meta["machine"]
    lines = [f"# Idle clients: RSS per idle client connection, pgpilot vs PgBouncer, {meta['date']}", "",
             T.describe_load_wait(meta["load_wait"], args.max_load), ""]
    loads = [r["load"] for r in results if "load" in r]
    if loads:
        lines += [f"**1-minute load average at the start of each measurement: {min(loads):.2f} to "
                  f"{max(loads):.2f}** (start {meta['load_start'][0]:.2f}, end {meta['load_end'][0]:.2f}).", ""]
    names = [n for n in TARGETS if n in args.targets]
    patterns = [p for p in PATTERNS if p in args.patterns]
    med = {(n, pat): PC.median([per_client(r) for r in results if (r["target"], r["pattern"]) == (n, pat)])
           for pat in patterns for n in names}
    lines += ["## Summary", "",
              "| target | pattern | bytes per idle client (VmRSS, median over rounds) | RssAnon per client | rounds |",
              "|---|---|---:|---:|---:|"]
    for pat in patterns:
        for n in names:
            rs = [r for r in results if (r["target"], r["pattern"]) == (n, pat)]
            anon = PC.median([per_client(r, "RssAnon") for r in rs])
            per = [per_client(r) for r in rs]
            value = med[n, pat]
            lines.append(f"| {LABELS[n]} | {pat} | {'–' if value is None else f'**{value:,.0f}**'} | "
                         f"{'–' if anon is None else f'{anon:,.0f}'} | "
                         f"{', '.join('failed' if p is None else f'{p:,.0f}' for p in per)} |")
    lines.append("")
    for pat in patterns:
        pilot, bouncer = med.get(("pgpilot", pat)), med.get(("pgbouncer", pat))
        if pilot is not None:
            verdict = "**met**" if pilot <= GOAL_BYTES else "**not met**"
            lines.append(f"- Target of issue 4: at most {GOAL_BYTES:,} bytes (4 KiB) per idle client for pgpilot, "
                         f"pattern {pat}: {pilot:,.0f}: {verdict}.")
        if pilot and bouncer:
            lines.append(f"- pgpilot/PgBouncer, pattern {pat}: {pilot / bouncer:.2f}.")
    lines.append("")
    lines += ["## Each measurement", "",
              "| round | target | pattern | clients held | failed clients | open time | VmRSS before | VmRSS after | "
              "per client | RssAnon per client | fds before / after | server connections | probes | "
              "VmRSS after closing (fds) |",
              "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.get("failed") and "after" not in r:
            lines.append(f"| {r['round'] + 1} | {r['target']} | {r['pattern']} | **failed: {r['failed']}** |"
                         + " |" * 10)
            continue
        p, a = per_client(r), per_client(r, "RssAnon")
        after_close = (f"{kib(r['after_close']['VmRSS'])} ({r['fds_after_close']})" if "after_close" in r
                       else "–")
        probes = f"{r['probes'] - len(r['probe_errors'])}/{r['probes']} ok"
        closed = f", {r['closed_by_pooler']} closed by the pooler" if r.get("closed_by_pooler") else ""
        lines.append(
            f"| {r['round'] + 1} | {r['target']} | {r['pattern']} | {r['opened']:,} | {sum(r['errors'].values()):,} | "
            f"{r['open_seconds']:.1f} s | {kib(r['before']['VmRSS'])} | {kib(r['after']['VmRSS'])} | "
            f"{'–' if p is None else f'{p:,.0f} B'} | {'–' if a is None else f'{a:,.0f} B'} | "
            f"{r['fds_before']} / {r['fds_after']} | {r['servers']} | {probes}{closed} | "
            f"{after_close} |")
    lines += ["", "## How this was measured", "",
              f"- Command: `{meta['command']}`",
              f"- Machine: {T.machine_text(m)}.",
              f"- Revision: {meta['revision']}; pgpilot binary {meta['pgpilot']}.",
              f"- Packages (Debian 12): {T.packages_text(meta['packages'])}.",
              "- Server: test/integration/pgcluster.py, one PostgreSQL 15 on 127.0.0.1 (trust "
              f"authentication), database `{DB}` (empty).",
              "- Targets (a fresh process for each measurement, that is for each round, target and "
              "pattern; in a round the patterns one after the other, the target order alternating from "
              "round to round):"]
    for n in names:
        desc = next((r["description"] for r in results if r["target"] == n and "description" in r), "")
        lines.append(f"  - `{n}`: {desc}")
    lines += [
        f"- Clients: this script, one process, asyncio over TCP to 127.0.0.1, RLIMIT_NOFILE raised to "
        f"{meta['nofile']}; each sends a StartupMessage (user postgres, database {DB}), gets "
        "AuthenticationOk (trust) and reads up to ReadyForQuery. Then, by pattern:",
        *(f"  - `{pat}`: " + ("stays idle: the pooler holds a session that has never run a query."
                              if pat == "fresh" else
                              "sends `SELECT 1` once (simple Query) and reads up to ReadyForQuery, then "
                              "stays idle: in transaction mode the pooler lent it a server connection "
                              "for that one transaction and took it back, so what stays is a session "
                              "that has served a query, idle between transactions.")
          for pat in patterns),
        f"- At most {args.concurrency} clients in flight (handshake, and the query with `queried`); a "
        "client whose handshake or query fails counts as failed and is not held.",
        "- Before: VmRSS (/proc/PID/status) of the pooler after one warm-up client connected, ran "
        "`SELECT 1` and left (so one server connection is open and the process has served a "
        f"client), 1 s later. After: {args.settle:g} s after the last client went idle (its handshake, "
        "or its `SELECT 1`, done), with every client still connected: pgpilot parks a "
        "transaction-mode session idle for at least 100 ms (looking every 100 ms; parking frees "
        "the session's coroutines) and gives freed heap pages back with malloc_trim at most once a "
        "second, so the reading comes after that. Per client = (after - before) / clients held. RssAnon is the "
        "anonymous (heap, stacks) part of VmRSS.",
        f"- Probes: `SELECT 1` on {args.probe} held clients spread over the set after the reading; "
        "\"closed by the pooler\" counts held clients whose connection the pooler had closed.",
        "- VmRSS after closing: 2 s after every client sent Terminate and closed, with the pooler's "
        "open descriptors then (informative: what the allocator gives back, and whether the "
        "sessions are gone).",
        "",
    ]
    failures = [r for r in results if r.get("failed") or r.get("errors") or r.get("probe_errors")
                or not r.get("alive", True)]
    if failures:
        lines += ["## Failures", ""]
        for r in failures:
            lines += [f"### {r['target']}, {r['pattern']}, round {r['round'] + 1}", ""]
            if r.get("failed"):
                lines.append(f"- measurement failed: `{r['failed']}`")
            for text, count in r.get("errors", {}).items():
                lines.append(f"- {count} client(s): `{text}`")
            for text in r.get("probe_errors", []):
                lines.append(f"- probe: `{text}`")
            if not r.get("alive", True):
                lines.append("- the pooler was no longer running")
            lines += ["", "Last log lines:", "", "```", *(r.get("log") or ["(none)"]), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def print_measurement(r):
    head = f"round {r['round'] + 1} {r['target']:10} {r['pattern']:8}"
    p = per_client(r)
    if p is None:
        print(f"{head}: FAILED: {r.get('failed')} {r.get('errors')}", flush=True)
        return
    print(f"{head} {r['opened']:,} clients held in {r['open_seconds']:.1f} s, "
          f"VmRSS {kib(r['before']['VmRSS'])} -> {kib(r['after']['VmRSS'])}: "
          f"{p:,.0f} bytes per idle client (load {r['load']:.2f}, "
          f"{sum(r['errors'].values())} failed clients, server connections {r['servers']})", flush=True)


def main(argv=None):
    args = parse_args(argv)
    if "pgpilot" in args.targets and not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")
    args.pgpilot = os.path.abspath(args.pgpilot)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, PC._raise_interrupt)
    T.ensure_packages([p for t in args.targets for p in T.PACKAGES.get(t, [])])
    nofile = raise_nofile(args.clients + 200)
    load_wait = T.wait_for_load(args.max_load, args.load_interval, args.max_wait,
                                log=lambda s: print(s, flush=True))
    meta = {"date": datetime.date.today().isoformat(), "machine": T.machine_info(), "load_wait": load_wait,
            "revision": T.git_revision(), "packages": T.package_versions(), "nofile": nofile,
            "pgpilot": os.path.relpath(args.pgpilot, REPO) if args.pgpilot.startswith(REPO) else args.pgpilot,
            "command": " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/idle_clients.py"]
                                + (sys.argv[1:] if argv is None else argv))}
    names = [n for n in TARGETS if n in args.targets]
    patterns = [p for p in PATTERNS if p in args.patterns]
    results = []
    with tempfile.TemporaryDirectory(prefix="pgpilot-idle-") as work:
        os.chmod(work, 0o755)
        with Cluster.start(os.path.join(work, "cluster"), standbys=0) as cluster:
            cluster.psql(cluster.primary, f"CREATE DATABASE {DB}")
            meta["load_start"] = os.getloadavg()
            for rnd in range(args.rounds):
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for pattern in patterns:
                    for name in order:
                        try:
                            r = measure_one(name, pattern, rnd, args, cluster, work)
                        except Exception as e:  # noqa: BLE001 - a pooler that did not start
                            traceback.print_exc()
                            r = {"target": name, "pattern": pattern, "round": rnd, "failed": PC.summary(e),
                                 "errors": {}, "log": []}
                        results.append(r)
                        print_measurement(r)
            meta["load_end"] = os.getloadavg()
    text = report(args, results, meta)
    PC.write_report(args, meta["date"], text)


if __name__ == "__main__":
    T.run_main(main)
