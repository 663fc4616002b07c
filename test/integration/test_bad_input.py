#!/usr/bin/python3
"""Malformed client input: each bad connection gets an ErrorResponse (08P01) or a close
within 5 s, while a healthy session next to it sees nothing, and pgpilot stays up."""

import random
import socket
import struct

import harness
from harness import Connection, QueryLoop, RawConnection, check, check_equal, message

BAD_CONNECTION_TIMEOUT_S = 5
PROTOCOL_VIOLATION = "08P01"
# PostgreSQL itself answers a startup packet with an unknown protocol version with
# 0A000 (feature_not_supported); either is a fine answer to garbage.
UNSUPPORTED_PROTOCOL = "0A000"
SPECIAL_STARTUP_CODES = {80877102, 80877103, 80877104}  # CancelRequest, SSLRequest, GSSENCRequest


def garbage_startup_packet(rng, length=64):
    """Random bytes behind a plausible length word (and no accidental special request code)."""
    while True:
        body = rng.randbytes(length - 4)
        (code,) = struct.unpack("!I", body[:4])
        if code not in SPECIAL_STARTUP_CODES and code >> 16 != 3:
            return struct.pack("!I", length) + body


def logged_in(px):
    """A raw connection past startup (ReadyForQuery received)."""
    raw = RawConnection(px.port, timeout=BAD_CONNECTION_TIMEOUT_S)
    received = raw.startup()
    check_equal(received[-1][0], b"Z", f"last startup message (error: {raw.error(received)})")
    return raw


def check_pgpilot_alive(px):
    check(px.alive(), "pgpilot exited")
    with Connection(px.port) as conn:
        check_equal(conn.scalar("SELECT 'alive'"), "alive", "a new session after the bad input")


def test_garbage_startup_packet(env):
    rng = random.Random(20240229)
    with env.pgpilot() as px, QueryLoop(px.port) as healthy:
        for _ in range(5):
            with RawConnection(px.port, timeout=BAD_CONNECTION_TIMEOUT_S) as raw:
                raw.send(garbage_startup_packet(rng))
                raw.expect_closed({PROTOCOL_VIOLATION, UNSUPPORTED_PROTOCOL})
        # A length word alone, then nothing: the server may wait, but must not break.
        with RawConnection(px.port, timeout=BAD_CONNECTION_TIMEOUT_S) as raw:
            raw.send(struct.pack("!I", 3))  # shorter than the length word itself
            raw.expect_closed({PROTOCOL_VIOLATION})
        healthy.check_healthy()
        check_pgpilot_alive(px)


def test_truncated_message_then_close(env):
    with env.pgpilot() as px, QueryLoop(px.port) as healthy:
        for tag in (b"Q", b"P", b"B"):
            with logged_in(px) as raw:
                raw.send(message(tag, b"SELECT 1\0" * 10)[:30])  # length says 94, 30 bytes sent
                raw.sock.shutdown(socket.SHUT_WR)
                raw.expect_closed({PROTOCOL_VIOLATION})
        healthy.check_healthy()
        check_pgpilot_alive(px)


def test_huge_message_length(env):
    with env.pgpilot() as px, QueryLoop(px.port) as healthy:
        for tag in (b"Q", b"d"):
            with logged_in(px) as raw:
                raw.send(tag + struct.pack("!I", 2**31 - 1) + b"SELECT 1")
                raw.expect_closed({PROTOCOL_VIOLATION})
        healthy.check_healthy()
        check_pgpilot_alive(px)


if __name__ == "__main__":
    raise SystemExit(harness.main())
