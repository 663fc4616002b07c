#!/usr/bin/python3
"""pgpilot's unix socket ([server] unix_socket_dir): psql -h DIR -p PORT."""

import os

import harness
from harness import Connection, check, check_equal, psql_value


def test_psql_over_unix_socket(env):
    with env.pgpilot(unix_socket=True) as px:
        socket_path = os.path.join(px.socket_dir, f".s.PGSQL.{px.port}")
        check(os.path.exists(socket_path), f"no socket file {socket_path}")
        check_equal(psql_value(px.port, "SELECT 'over the socket'", host=px.socket_dir), "over the socket",
                    "psql over the unix socket")
        with Connection(px.port, host=px.socket_dir) as conn:
            check_equal(conn.scalar("SELECT count(*) FROM generate_series(1, 1000)"), "1000", "libpq query")


if __name__ == "__main__":
    raise SystemExit(harness.main())
