#!/usr/bin/python3
"""Startup: config validation (--check), protocol version negotiation, missing user."""

import re
import struct

import harness
from harness import RawConnection, check, check_equal, error_fields, pgpilot_only, run, to_toml


def pgpilot_check(env, config_text, name):
    path = env.write_config(config_text, name)
    return path, run([env.pgpilot_binary, "--check", "-f", path], check_exit=False, timeout=10)


def good_config(env):
    return to_toml(harness.default_config(env.cluster, port=harness.free_port()))


def check_rejected(env, config_text, name, bad_line):
    """--check exits 1 with a message that names the file and the offending line."""
    path, proc = pgpilot_check(env, config_text, name)
    output = proc.stdout + proc.stderr
    check_equal(proc.returncode, 1, f"pgpilot --check exit code for {name}; output: {output!r}")
    check(path in output or name in output, f"the message does not name the file {path}: {output!r}")
    check(re.search(rf"\b{bad_line}\b", output), f"the message does not name line {bad_line}: {output!r}")


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pgpilot_only
def test_check_good_config(env):
    path, proc = pgpilot_check(env, good_config(env), "good.toml")
    check_equal(proc.returncode, 0, f"pgpilot --check exit code; output: {proc.stdout + proc.stderr!r}")


@pgpilot_only
def test_check_invalid_value(env):
    text = re.sub(r"^port = \d+$", "port = 70000", good_config(env), count=1, flags=re.M)
    check_rejected(env, text, "bad_port.toml", line_of(text, "port = 70000"))
    text = good_config(env).replace('method = "trust"', 'method = "kerberos-maybe"')
    check_rejected(env, text, "bad_method.toml", line_of(text, "kerberos-maybe"))


@pgpilot_only
def test_check_toml_syntax_error(env):
    text = good_config(env).replace("workers = 2", "workers = = 2")
    check_rejected(env, text, "syntax.toml", line_of(text, "workers = = 2"))


def test_protocol_3_1_negotiated_down(env):
    with env.pgpilot() as px, RawConnection(px.port) as raw:
        received = raw.startup(version=(3, 1))
        tags = [tag for tag, _ in received]
        check_equal(tags[0], b"v", f"first message (all: {tags})")
        newest, unrecognized = struct.unpack("!II", received[0][1][:8])
        # The protocol docs say "newest minor version"; PostgreSQL 15 sends the whole
        # version number (3 << 16 | 0). Both mean 3.0.
        check(newest in (0, 3 << 16), f"NegotiateProtocolVersion offers {newest:#x}, expected 3.0")
        check_equal(unrecognized, 0, "NegotiateProtocolVersion: number of unrecognized options")
        check_equal(received[1], (b"R", struct.pack("!I", 0)), "AuthenticationOk after NegotiateProtocolVersion")
        check_equal(tags[-1], b"Z", f"ReadyForQuery at the end (all: {tags})")


def test_protocol_2_rejected(env):
    with env.pgpilot() as px, RawConnection(px.port) as raw:
        received = raw.startup(version=(2, 0))
        tag, body = received[-1]
        if tag == b"E2":
            # PostgreSQL answers in protocol 2's own error format: text only, no SQLSTATE.
            check(b"unsupported frontend protocol" in body, f"protocol-2 error text: {body!r}")
        else:
            check_equal(tag, b"E", f"reply to a protocol 2.0 startup (messages: {received})")
            check_equal(error_fields(body).get("C"), "0A000", f"SQLSTATE ({error_fields(body)})")
        raw.read_until_closed()


def test_no_user_rejected(env):
    with env.pgpilot() as px, RawConnection(px.port) as raw:
        error = raw.error(raw.startup(user=None))
        check(error is not None, "no ErrorResponse for a startup without user")
        check_equal(error.get("C"), "28000", f"SQLSTATE ({error})")
        raw.read_until_closed()


if __name__ == "__main__":
    raise SystemExit(harness.main())
