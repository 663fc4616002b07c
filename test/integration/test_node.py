#!/usr/bin/python3
"""node-postgres (the `pg` npm package) through pgpilot: node/pg_client.js."""

import os

import harness
from harness import client_env, run

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def install_node_modules():
    """scripts/test.sh runs `npm ci` up front; this covers running the test on its own."""
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "pg")):
        run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, timeout=300)


def test_node_postgres(env):
    install_node_modules()
    with env.pgpilot() as px:
        out = run(["node", "pg_client.js"], cwd=NODE_DIR,
                  env=client_env(PGHOST=px.host, PGPORT=str(px.port), PGUSER="postgres", PGDATABASE="postgres"))
        print(out.stdout, end="")


if __name__ == "__main__":
    raise SystemExit(harness.main())
