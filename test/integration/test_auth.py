#!/usr/bin/python3
"""Client authentication at pgpilot ([auth] method and [[user]]), with psql and raw
connections. The backends ask alice for SCRAM and md5user for md5 (password 'secret'),
so pgpilot must also log in to the backend with the right password."""

import hashlib
import signal

import harness
from harness import RawConnection, check, check_equal, pgpilot_only, psql

PASSWORD = "secret"
USERS = [{"name": "alice", "password": PASSWORD}, {"name": "md5user", "password": PASSWORD}]
INVALID_PASSWORD = "28P01"


def check_login(px, user):
    """Right password: psql works and runs as `user`; wrong password: 28P01."""
    out = psql(px.port, "SELECT current_user", user=user, password=PASSWORD, args=["-A", "-t"])
    check_equal(out.stdout.strip(), user, f"current_user logged in as {user}")

    bad = psql(px.port, "SELECT 1", user=user, password="wrong", check_exit=False)
    check(bad.returncode != 0, f"psql as {user} with a wrong password succeeded")
    check(f'password authentication failed for user "{user}"' in bad.stderr, f"psql stderr: {bad.stderr!r}")

    with RawConnection(px.port) as raw:
        error = raw.error(raw.startup(user=user, password="wrong"))
        check(error is not None, f"no ErrorResponse for {user} with a wrong password")
        check_equal(error.get("C"), INVALID_PASSWORD, f"SQLSTATE for a wrong password ({error})")
    with RawConnection(px.port) as raw:
        received = raw.startup(user=user, password=PASSWORD)
        check_equal(received[-1][0], b"Z", f"raw login as {user} (error: {raw.error(received)})")


def auth_config(method):
    return {"auth": {"method": method, "backend_password": ""}, "user": USERS}


def test_scram_sha_256(env):
    with env.pgpilot(**auth_config("scram-sha-256")) as px:
        check_login(px, "alice")


def test_md5(env):
    with env.pgpilot(**auth_config("md5")) as px:
        check_login(px, "alice")
        check_login(px, "md5user")


def test_password(env):
    with env.pgpilot(**auth_config("password")) as px:
        check_login(px, "alice")


def test_unknown_user_rejected(env):
    with env.pgpilot(**auth_config("scram-sha-256")) as px:
        bad = psql(px.port, "SELECT 1", user="nobody", password=PASSWORD, check_exit=False)
        check(bad.returncode != 0, "psql as an unknown user succeeded")


@pgpilot_only
def test_passwd_file(env):
    """[auth] passwd_file: pool_passwd's users, a TEXT password and an md5 hash (the backend
    asks md5user for md5: pgpilot logs in with the hash)."""
    md5 = "md5" + hashlib.md5(b"secretmd5user").hexdigest()
    passwd = env.write_config(f"alice:TEXTsecret\nmd5user:{md5}\n", "pool_passwd")
    with env.pgpilot(auth={"method": "md5", "passwd_file": passwd}) as px:
        check_login(px, "alice")
        check_login(px, "md5user")


@pgpilot_only
def test_hba_file_decides_per_connection(env):
    """[auth] hba_file: the first line matching connection type, database, user and address
    decides the method; a reject line, or no line, refuses with 28000 in PostgreSQL's words."""
    hba = env.write_config(
        "# TYPE  DATABASE  USER      ADDRESS       METHOD\n"
        "local   all       postgres                trust\n"
        "host    all       md5user   127.0.0.1/32  reject\n"
        "host    postgres  alice     127.0.0.1/32  scram-sha-256\n"
        "host    all       postgres  127.0.0.0 255.0.0.0  trust\n", "pool_hba.conf")
    with env.pgpilot(unix_socket=True, auth={"method": None, "hba_file": hba}, user=USERS) as px:
        out = psql(px.port, "SELECT current_user", user="alice", password=PASSWORD, args=["-At"])
        check_equal(out.stdout.strip(), "alice", "alice over TCP with her password (scram)")
        bad = psql(px.port, "SELECT 1", user="alice", password="wrong", check_exit=False)
        check('password authentication failed for user "alice"' in bad.stderr, bad.stderr)
        out = psql(px.port, "SELECT current_user", args=["-At"])
        check_equal(out.stdout.strip(), "postgres", "postgres over TCP: trust by the mask line")
        out = psql(px.port, "SELECT current_user", host=px.socket_dir, args=["-At"])
        check_equal(out.stdout.strip(), "postgres", "postgres over the Unix socket: trust")
        for user, db, words in (
                ("md5user", "postgres", 'pool_hba.conf rejects connection for host "127.0.0.1", '
                                        'user "md5user", database "postgres"'),
                ("alice", "template1", 'no pool_hba.conf entry for host "127.0.0.1", user '
                                       '"alice", database "template1"')):
            refused = psql(px.port, "SELECT 1", user=user, db=db, password=PASSWORD,
                           check_exit=False)
            check(refused.returncode != 0 and words in refused.stderr, f"{user}: {refused.stderr}")
            with RawConnection(px.port) as raw:
                error = raw.error(raw.startup(user=user, database=db, password=PASSWORD))
                check_equal((error or {}).get("C"), "28000", f"SQLSTATE for {user} ({error})")
        refused = psql(px.port, "SELECT 1", user="alice", host=px.socket_dir, password=PASSWORD,
                       check_exit=False)
        check('no pool_hba.conf entry for host "[local]", user "alice"' in refused.stderr,
              refused.stderr)


@pgpilot_only
def test_reload_changes_users_and_rules(env):
    """SIGHUP: new logins use the users and hba rules of the files as they are now; a session
    logged in before goes on; a file pgpilot cannot take changes nothing."""
    passwd = env.write_config("alice:TEXTsecret\n", "pool_passwd")
    hba_text = "host all all 127.0.0.1/32 scram-sha-256\n"
    hba = env.write_config(hba_text, "pool_hba.conf")
    with env.pgpilot(auth={"method": None, "hba_file": hba, "passwd_file": passwd}) as px:
        def reload(outcome):
            count = px.log().count(outcome)
            px.proc.send_signal(signal.SIGHUP)
            harness.wait_until(lambda: px.log().count(outcome) > count, 10, f"the log says {outcome!r}")

        def login(user):
            return psql(px.port, "SELECT current_user", user=user, password=PASSWORD,
                        args=["-At"], check_exit=False)

        check_equal(login("alice").stdout.strip(), "alice", "alice before the reload")
        check("password authentication failed" in login("md5user").stderr, "md5user unknown")
        with harness.Connection(px.port, user="alice", password=PASSWORD) as kept:
            env.write_config(f"alice:TEXTsecret\nmd5user:TEXT{PASSWORD}\n", "pool_passwd")
            env.write_config("host all alice 127.0.0.1/32 reject\n" + hba_text, "pool_hba.conf")
            reload("new logins use the 2 rules of")
            check_equal(login("md5user").stdout.strip(), "md5user", "md5user after the reload")
            check("pool_hba.conf rejects connection" in login("alice").stderr,
                  "alice refused after the reload")
            check_equal(kept.scalar("SELECT 'still here'"), "still here", "a session from before")

            env.write_config("host all all all pam\n", "pool_hba.conf")
            reload("is not valid; nothing changed")
            check("authentication method \"pam\"" in px.log(), "the log names the bad line")
            check_equal(login("md5user").stdout.strip(), "md5user", "the rules from before")
            check(px.alive(), "pgpilot runs on")


if __name__ == "__main__":
    raise SystemExit(harness.main())
