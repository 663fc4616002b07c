#!/usr/bin/python3
"""psql through pgpilot: results identical to a direct connection, COPY, errors, multi-statement queries."""

import filecmp
import os

import harness
from harness import Connection, check, check_equal, psql

# Queries whose psql output (aligned, with headers) must be byte-identical through pgpilot.
QUERIES = [
    "SELECT 1 AS one, 'two' AS two, NULL::int AS nothing, 3.5::numeric AS num, true AS yes",
    "SELECT g AS n, md5(g::text) AS hash FROM generate_series(1, 20) g",
    "SELECT 'héllo wörld ✓' AS unicode, E'tab\\there' AS escaped, ''::text AS empty",
    "SELECT ARRAY[1,2,3] AS arr, '{\"a\": [1, 2]}'::jsonb AS doc, '2024-02-29'::date AS day",
    "SELECT repeat('x', 100000) AS wide",
    "SELECT count(*), sum(g), md5(string_agg(g::text, ',')) FROM generate_series(1, 200000) g",
    "SELECT g, g * 2 AS doubled FROM generate_series(1, 5000) g",
    "SHOW server_encoding",
]


def test_results_identical_to_direct(env):
    with env.pgpilot() as px:
        for sql in QUERIES:
            through = psql(px.port, sql).stdout
            direct = psql(env.primary_port, sql).stdout
            check_equal(through, direct, f"psql output of {sql!r}")


def test_copy_in_and_out(env):
    rows = 10_000
    source = os.path.join(env.workdir, "copy_in.tsv")
    with open(source, "w") as f:
        for i in range(1, rows + 1):
            f.write(f"{i}\tname {i}\t{'NULL' if i % 7 == 0 else i * 1.5}\n")
    through, direct = (os.path.join(env.workdir, f"copy_out_{n}.tsv") for n in ("pgpilot", "direct"))
    with env.pgpilot() as px:
        psql(px.port, "DROP TABLE IF EXISTS itest_copy; "
                      "CREATE TABLE itest_copy (id int PRIMARY KEY, name text, value numeric)")
        try:
            out = psql(px.port, f"\\copy itest_copy FROM '{source}' WITH (NULL 'NULL')").stdout
            check_equal(out.strip(), f"COPY {rows}", "\\copy in")
            check_equal(harness.psql_value(px.port, "SELECT count(*) FROM itest_copy"), str(rows),
                        "rows after \\copy in")
            copy_out = "\\copy (SELECT * FROM itest_copy ORDER BY id) TO '{}' WITH (NULL 'NULL')"
            psql(px.port, copy_out.format(through))
            psql(env.primary_port, copy_out.format(direct))
        finally:
            psql(px.port, "DROP TABLE IF EXISTS itest_copy")
    check(filecmp.cmp(source, through, shallow=False), "\\copy out through pgpilot differs from the input file")
    check(filecmp.cmp(through, direct, shallow=False), "\\copy out through pgpilot differs from direct")


def test_error_then_session_continues(env):
    script = "\\set VERBOSITY verbose\nSELECT 1/0;\nSELECT 'still here' AS after_error;\n"
    with env.pgpilot() as px:
        out = psql(px.port, args=["-v", "ON_ERROR_STOP=0"], input=script)
        check("ERROR:  22012: division by zero" in out.stderr, f"psql stderr: {out.stderr!r}")
        check("still here" in out.stdout, f"the session did not continue: {out.stdout!r}")
        with Connection(px.port) as conn:
            harness.expect_error(conn, "SELECT 1/0", "22012")
            check_equal(conn.scalar("SELECT 'still here'"), "still here", "query after the error")


def test_multi_statement_query(env):
    # One simple Query message holding several statements; psql 15 prints every result.
    sql = ("CREATE TEMP TABLE itest_multi (a int); INSERT INTO itest_multi VALUES (1), (2), (3); "
           "SELECT sum(a) AS total FROM itest_multi; SELECT 'last' AS last")
    with env.pgpilot() as px:
        through = psql(px.port, sql).stdout
        direct = psql(env.primary_port, sql).stdout
        check_equal(through, direct, "psql output of a multi-statement query")
        check("6" in through and "last" in through, f"unexpected output: {through!r}")
        with Connection(px.port) as conn:
            # PQexec returns the last statement's result; an error stops the rest.
            check_equal(conn.query("SELECT 1; SELECT 2, 'b'"), [("2", "b")], "PQexec of two SELECTs")
            harness.expect_error(conn, "SELECT 1; SELECT 1/0; SELECT 3", "22012")
            check_equal(conn.scalar("SELECT 4"), "4", "query after a failed multi-statement query")


if __name__ == "__main__":
    raise SystemExit(harness.main())
