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



def test_a_second_pgpilot_on_the_same_addresses_exits(env):
    """A second pgpilot on the same port (the same config: the TCP address), or on another
    address with the same port and socket directory (the Unix socket), exits 1 with a message
    naming what is taken, instead of sharing the port (SO_REUSEPORT) or replacing the live
    socket file; the first one goes on serving both."""
    with env.pgpilot(unix_socket=True) as px:
        socket_path = os.path.join(px.socket_dir, f".s.PGSQL.{px.port}")
        second = harness.run([env.pgpilot_binary, "-f", px.config_path], check_exit=False,
                             timeout=20)
        check_equal(second.returncode, 1, f"exit code; output: {second.stderr!r}")
        check(f"cannot listen: could not bind 127.0.0.1 port {px.port}: Address already in use"
              in second.stderr, f"the message names the address: {second.stderr!r}")
        with open(px.config_path) as f:
            config = f.read()
        check('listen_addresses = "127.0.0.1"' in config, f"config as expected:\n{config}")
        other = env.write_config(config.replace('listen_addresses = "127.0.0.1"',
                                                'listen_addresses = "127.0.0.2"'), "second.toml")
        third = harness.run([env.pgpilot_binary, "-f", other], check_exit=False, timeout=20)
        check_equal(third.returncode, 1, f"exit code; output: {third.stderr!r}")
        check(f"cannot listen: another pgpilot or server is listening on {socket_path}"
              in third.stderr, f"the message names the socket: {third.stderr!r}")
        check_equal(psql_value(px.port, "SELECT 'tcp'"), "tcp", "the first still serves TCP")
        check_equal(psql_value(px.port, "SELECT 'socket'", host=px.socket_dir), "socket",
                    "the first still serves its socket")

if __name__ == "__main__":
    raise SystemExit(harness.main())
