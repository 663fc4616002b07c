#!/usr/bin/python3
"""LISTEN/NOTIFY between two sessions through pgpilot."""

import harness
from harness import Connection, check_equal


def test_notify_between_sessions(env):
    with env.pgpilot() as px, Connection(px.port) as listener, Connection(px.port) as notifier:
        listener.query("LISTEN itest_channel")
        # The pid in a notification is the notifying backend's; BackendKeyData through
        # pgpilot carries pgpilot's own pid, so ask the server.
        # pg_backend_pid() is a read: with load balancing it could come from a standby.
        notifier_pid = int(notifier.scalar("/*NO LOAD BALANCE*/ SELECT pg_backend_pid()"))
        notifier.query("NOTIFY itest_channel, 'hello ✓ payload'")
        check_equal(listener.notifications(timeout=5), [("itest_channel", notifier_pid, "hello ✓ payload")],
                    "notifications after NOTIFY")

        notifier.query("SELECT pg_notify('itest_channel', 'from pg_notify'); "
                       "SELECT pg_notify('other_channel', 'not listened to')")
        check_equal(listener.notifications(timeout=5), [("itest_channel", notifier_pid, "from pg_notify")],
                    "notifications after pg_notify")

        # A notification sent inside a transaction arrives at COMMIT, not before.
        notifier.query("BEGIN; NOTIFY itest_channel, 'committed'")
        check_equal(listener.notifications(timeout=0.5), [], "notifications before COMMIT")
        notifier.query("COMMIT")
        check_equal(listener.notifications(timeout=5), [("itest_channel", notifier_pid, "committed")],
                    "notifications after COMMIT")

        listener.query("UNLISTEN itest_channel")
        notifier.query("NOTIFY itest_channel, 'after unlisten'")
        check_equal(listener.notifications(timeout=0.5), [], "notifications after UNLISTEN")


if __name__ == "__main__":
    raise SystemExit(harness.main())
