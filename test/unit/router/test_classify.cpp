#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "router/classify.hpp"

using namespace pgpilot::router;

namespace {

constexpr auto R = statement_class::read;
constexpr auto W = statement_class::write;
constexpr auto S = statement_class::session_state;
constexpr auto P = statement_class::primary_only;
constexpr auto U = statement_class::unknown;

/// One statement, its expected class and flags: space-separated words among temp, listen,
/// begin, ro, pin, end, prepare=NAME, execute=NAME, dealloc=NAME. Unlisted flags must be off.
struct row {
    const char* sql;
    statement_class cls;
    const char* flags = "";
};

// clang-format off
const row table[] = {
    // --- reads: comments, strings, quoting --------------------------------------------------
    {"SELECT 1", R},
    {"select 1", R},
    {"-- c\nSELECT 1", R},
    {"/* a /* nested */ b */ SELECT 1", R},
    {"SELECT 1 -- trailing comment", R},
    {"SELECT 1 /* trailing */", R},
    {"SELECT $$; UPDATE t SET a=1$$", R},
    {"SELECT $fn$ DELETE FROM t; $$ nextval('s') $$ $fn$", R},
    {R"(SELECT E'\';UPDATE t SET a=1')", R},
    {"SELECT 'FOR UPDATE', 'INTO x', 'nextval(1)'", R},
    {"SELECT \"update\" FROM t", R},
    {"SELECT * FROM \"delete\" WHERE \"insert\" = 1", R},
    {"SELECT 1 AS \"for\", 2 AS update", R},
    {"SELECT update FROM t", R},
    {R"(SELECT U&'d\0061t\+000061' UESCAPE '\')", R},
    {"SELECT B'1010', X'FF', N'abc'", R},
    {"SELECT $1::int", R},
    {"SELECT * FROM t WHERE a = $1 AND b = $2", R},
    {"SELECT 'a' || 'b'", R},
    {"SELECT \"NEXTVAL\"('s')", R},  // a different (case-sensitive) function
    // --- reads: query shapes ----------------------------------------------------------------
    {"WITH x AS (SELECT 1) SELECT * FROM x", R},
    {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", R},
    {"WITH a(x) AS (SELECT 1), b(y) AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b", R},
    {"VALUES (1),(2)", R},
    {"TABLE t", R},
    {"(SELECT 1) UNION (SELECT 2)", R},
    {"((VALUES (1)))", R},
    {"SELECT count(*) FROM t", R},
    {"SELECT coalesce(a, 0), nullif(b, 1), greatest(1, 2), least(1, 2) FROM t", R},
    {"SELECT CAST(a AS numeric(10,2)), a::varchar(10) FROM t", R},
    {"SELECT x::character varying(10), y::interval second(3) FROM t", R},
    {"SELECT EXISTS (SELECT 1 FROM t)", R},
    {"SELECT * FROM t WHERE a IN (1, 2) AND b = ANY(ARRAY[1, 2]) AND c <> ALL('{1}')", R},
    {"SELECT extract(epoch FROM now())", R},
    {"SELECT substring('abc' FROM 1 FOR 2), overlay('abc' PLACING 'x' FROM 1 FOR 1)", R},
    {"SELECT trim(BOTH 'x' FROM 'xax'), position('a' IN 'abc')", R},
    {"SELECT * FROM generate_series(1, 3) AS g(i)", R},
    {"SELECT * FROM t tt(a, b)", R},
    {"SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(x, n)", R},
    {"SELECT a FROM t ORDER BY a DESC NULLS LAST LIMIT 10 OFFSET 5", R},
    {"SELECT a FROM t FETCH FIRST 3 ROWS ONLY", R},
    {"SELECT now(), random(), pg_sleep(0)", R},
    {"SELECT pg_backend_pid()", R},
    {"SELECT pg_is_in_recovery()", R},
    {"SELECT pg_last_wal_replay_lsn()", R},
    {"SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)", R},
    {"SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", R},
    {"SELECT count(*) FILTER (WHERE a > 1) FROM t", R},
    {"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t", R},
    {"SELECT a FROM t GROUP BY GROUPING SETS ((a), ())", R},
    {"SELECT a FROM t GROUP BY CUBE (a, b)", R},
    {"SELECT ARRAY(SELECT 1), ROW(1, 2)", R},
    {"SELECT * FROM t1 JOIN t2 USING (id)", R},
    {"SELECT * FROM t1 LEFT JOIN LATERAL f(t1.a) x ON true", R},
    {"SELECT left('abc', 1), right('abc', 1)", R},
    {"SELECT interval '1' day", R},
    {"SELECT * FROM t WHERE ts AT TIME ZONE 'UTC' > now()", R},
    {"SELECT * FROM t WHERE a IS DISTINCT FROM b", R},
    {"SELECT x FROM t WHERE y LIKE 'a%' ESCAPE '!'", R},
    {"SELECT json_object('{a,1}')", R},
    {"SELECT 'x'::pg_catalog.text, a::pg_catalog.int4 FROM t", R},
    {"SELECT pg_catalog.now(), pg_catalog.pg_get_userbyid(10)", R},
    {"SELECT * FROM pg_ls_dir('.')", R},  // a function, not a relation
    {"SELECT pg_size_pretty(pg_database_size('x'))", R},
    {"SELECT * FROM t WHERE a OPERATOR(pg_catalog.=) 1", R},
    {"SELECT /*NO LOAD BALANCE*/ 1", R},  // the hint must come first
    {"SHOW search_path", R},
    {"SHOW ALL", R},
    {"EXPLAIN SELECT 1", R},
    {"EXPLAIN DELETE FROM t", R},
    {"EXPLAIN (FORMAT JSON) UPDATE t SET a = 1", R},
    {"EXPLAIN (ANALYZE false) DELETE FROM t", R},
    {"EXPLAIN (ANALYZE off, COSTS) DELETE FROM t", R},
    {"EXPLAIN VERBOSE INSERT INTO t VALUES (1)", R},
    {"EXPLAIN (SELECT 1)", R},
    {"EXPLAIN ANALYZE SELECT 1", R},
    {"EXPLAIN SELECT nextval('s')", R},
    {"COPY t TO STDOUT", R},
    {"COPY (SELECT 1) TO STDOUT WITH CSV", R},
    {"COPY t (a, b) TO STDOUT (FORMAT csv)", R},
    {"copy public.t to stdout", R},
    // --- writes -------------------------------------------------------------------------------
    {"INSERT INTO t VALUES (1)", W},
    {"insert into t select * from u", W},
    {"UPDATE t SET a = 1", W},
    {"DELETE FROM t", W},
    {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", W},
    {"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", W},
    {"WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", W},
    {"WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", W},
    {"WITH x AS (UPDATE ONLY t AS tt SET a = 1 RETURNING *) SELECT 1", W},
    {"WITH y AS (WITH z AS (SELECT 1) DELETE FROM t RETURNING *) SELECT * FROM y", W},
    {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", W},
    {"WITH x AS (SELECT 1) UPDATE t SET a = x.a FROM x", W},
    {"SELECT delete FROM t", R},  // a column named delete
    {"SELECT a, insert INTO x FROM t", W, ""},  // SELECT INTO (of a column named insert)
    {"SELECT a AS merge INTO TEMP x FROM t", W, "temp"},
    {"SELECT x AS delete FROM t", R},
    {"SELECT * FROM t FOR UPDATE", W},
    {"SELECT * FROM t FOR SHARE", W},
    {"SELECT * FROM t FOR NO KEY UPDATE", W},
    {"SELECT * FROM t FOR KEY SHARE", W},
    {"SELECT * FROM t FOR UPDATE OF t SKIP LOCKED", W},
    {"select * from t for update nowait", W},
    {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W},
    {"SELECT * FROM t WHERE a IN (SELECT a FROM u FOR SHARE)", W},
    {"SELECT nextval('s')", W},
    {"select NEXTVAL('s')", W},
    {"SELECT pg_catalog.nextval('s')", W},
    {"SELECT \"nextval\"('s')", W},
    {"SELECT setval('s', 1)", W},
    {"SELECT pg_advisory_lock(1)", W},
    {"SELECT pg_advisory_xact_lock_shared(1)", W},
    {"SELECT pg_try_advisory_lock(1)", W},
    {"SELECT pg_advisory_unlock_all()", W},
    {"SELECT lo_import('/tmp/x')", W},
    {"SELECT lo_unlink(1234)", W},
    {"SELECT pg_notify('c','p')", W},
    {"SELECT set_config('a.b', 'c', false)", W},
    {"SELECT txid_current()", W},
    {"SELECT pg_current_xact_id()", W},
    {"SELECT pg_promote()", W},
    {"SELECT pg_switch_wal()", W},
    {"SELECT pg_create_restore_point('x')", W},
    {"SELECT pg_backup_start('l')", W},
    {"SELECT pg_start_backup('l')", W},
    {"SELECT pg_terminate_backend(123)", W},
    {"SELECT a, (SELECT nextval('s')) FROM t", W},
    {"SELECT * FROM t WHERE id = nextval ('s')", W},
    {"VALUES (nextval('s'))", W},
    {"SELECT * FROM pg_stat_activity, nextval('s')", W},  // write beats primary_only
    {"SELECT * INTO newt FROM t", W},
    {"SELECT * INTO TEMP newt FROM t", W, "temp"},
    {"SELECT * INTO TEMPORARY TABLE newt FROM t", W, "temp"},
    {"SELECT * INTO LOCAL TEMP newt FROM t", W, "temp"},
    {"SELECT * INTO UNLOGGED newt FROM t", W},
    {"SELECT * INTO pg_temp.newt FROM t", W, "temp"},
    {"EXPLAIN ANALYZE DELETE FROM t", W},
    {"EXPLAIN ANALYSE UPDATE t SET a = 1", W},
    {"EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a=1", W},
    {"EXPLAIN (ANALYZE true, FORMAT JSON) INSERT INTO t VALUES (1)", W},
    {"EXPLAIN (BUFFERS, ANALYZE) DELETE FROM t", W},
    {"EXPLAIN ANALYZE VERBOSE SELECT nextval('s')", W},
    {"EXPLAIN ANALYZE SELECT * INTO TEMP x FROM t", W, "temp"},
    {"CREATE TABLE t (a int)", W},
    {"CREATE TEMP TABLE t (a int)", W, "temp"},
    {"CREATE TEMPORARY TABLE t (a int)", W, "temp"},
    {"CREATE LOCAL TEMPORARY TABLE t (a int)", W, "temp"},
    {"CREATE GLOBAL TEMP TABLE t (a int)", W, "temp"},
    {"create temp view v as select 1", W, "temp"},
    {"CREATE TEMP SEQUENCE s", W, "temp"},
    {"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", W, "temp"},
    {"CREATE TEMP TABLE t AS SELECT 1", W, "temp"},
    {"CREATE TABLE t() ON COMMIT DROP", W, "temp"},
    {"CREATE TABLE t (a int) ON COMMIT DELETE ROWS", W, "temp"},
    {"CREATE TABLE pg_temp.t (a int)", W, "temp"},
    {"CREATE UNLOGGED TABLE t (a int)", W},
    {"CREATE TABLE temp (a int)", W},
    {"CREATE INDEX i ON t (a)", W},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", W},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", W},
    {"CREATE MATERIALIZED VIEW mv AS SELECT 1", W},
    {"ALTER TABLE t ADD COLUMN b int", W},
    {"ALTER SYSTEM SET work_mem = '1MB'", W},
    {"DROP TABLE t", W},
    {"TRUNCATE t", W},
    {"COMMENT ON TABLE t IS 'x'", W},
    {"GRANT SELECT ON t TO u", W},
    {"REVOKE ALL ON t FROM u", W},
    {"REINDEX TABLE t", W},
    {"CLUSTER t USING i", W},
    {"VACUUM ANALYZE t", W},
    {"ANALYZE t", W},
    {"REFRESH MATERIALIZED VIEW mv", W},
    {"SECURITY LABEL ON TABLE t IS 'x'", W},
    {"IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public", W},
    {"COPY t FROM STDIN", W},
    {"COPY t (a) FROM '/tmp/x'", W},
    {"COPY (DELETE FROM t RETURNING *) TO STDOUT", W},
    {"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", W},
    {"LISTEN ch", W, "listen"},
    {"NOTIFY ch, 'x'", W},
    {"UNLISTEN *", W},
    {"DECLARE c CURSOR FOR SELECT 1", W},
    {"FETCH 10 FROM c", W},
    {"MOVE NEXT IN c", W},
    {"CLOSE c", W},
    {"PREPARE TRANSACTION 'x'", W, "end"},
    {"COMMIT PREPARED 'x'", W},
    {"ROLLBACK PREPARED 'x'", W},
    {"CALL p(1)", W},
    {"DO $$BEGIN PERFORM 1; END$$", W},
    {"CHECKPOINT", W},
    {"LOAD 'auto_explain'", W},
    {"REASSIGN OWNED BY a TO b", W},
    // --- session state and transactions ------------------------------------------------------
    {"SET search_path = a", S},
    {"SET LOCAL x = 1", S},
    {"SET SESSION work_mem TO '4MB'", S},
    {"SET TIME ZONE 'UTC'", S},
    {"SET ROLE admin", S},
    {"SET TRANSACTION READ WRITE", S, "pin"},
    {"SET TRANSACTION READ ONLY", S, "ro"},
    {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", S, "pin"},
    {"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", S},
    {"SET LOCAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", S, "pin"},
    {"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", S, "pin"},
    {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", S, "ro"},
    {"SET transaction_isolation = 'serializable'", S, "pin"},
    {"SET default_transaction_isolation TO SERIALIZABLE", S, "pin"},
    {"SET transaction_read_only = off", S, "pin"},
    {"SET default_transaction_read_only = off", S},
    {"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", S},
    {"RESET ALL", S},
    {"RESET search_path", S},
    {"DISCARD ALL", S},
    {"BEGIN", S, "begin"},
    {"begin work", S, "begin"},
    {"BEGIN TRANSACTION", S, "begin"},
    {"BEGIN READ ONLY", S, "begin ro"},
    {"BEGIN READ WRITE", S, "begin pin"},
    {"BEGIN ISOLATION LEVEL SERIALIZABLE", S, "begin pin"},
    {"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", S, "begin ro"},
    {"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY DEFERRABLE", S, "begin ro"},
    {"START TRANSACTION", S, "begin"},
    {"START TRANSACTION READ ONLY", S, "begin ro"},
    {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", S, "begin ro pin"},
    {"START TRANSACTION NOT DEFERRABLE, READ WRITE", S, "begin pin"},
    {"COMMIT", S, "end"},
    {"COMMIT WORK", S, "end"},
    {"END", S, "end"},
    {"END TRANSACTION", S, "end"},
    {"COMMIT AND CHAIN", S, "end begin"},
    {"COMMIT AND NO CHAIN", S, "end"},
    {"ROLLBACK", S, "end"},
    {"ABORT", S, "end"},
    {"ROLLBACK AND CHAIN", S, "end begin"},
    {"ROLLBACK TO SAVEPOINT a", S},
    {"ROLLBACK TO a", S},
    {"ROLLBACK WORK TO SAVEPOINT a", S},
    {"SAVEPOINT a", S},
    {"RELEASE SAVEPOINT a", S},
    {"RELEASE a", S},
    {"DEALLOCATE p", S, "dealloc=p"},
    {"DEALLOCATE PREPARE p", S, "dealloc=p"},
    {"DEALLOCATE ALL", S, "dealloc=*"},
    {"DEALLOCATE PREPARE ALL", S, "dealloc=*"},
    {"DEALLOCATE \"MyStmt\"", S, "dealloc=MyStmt"},
    // --- PREPARE / EXECUTE --------------------------------------------------------------------
    {"PREPARE p AS SELECT 1", R, "prepare=p"},
    {"PREPARE q(int) AS UPDATE t SET a=$1", W, "prepare=q"},
    {"PREPARE Q2 (int, text) AS SELECT * FROM t WHERE a = $1", R, "prepare=q2"},
    {"PREPARE c AS SELECT relname FROM pg_class", P, "prepare=c"},
    {"PREPARE s AS SELECT nextval('s')", W, "prepare=s"},
    {"PREPARE bad AS", U, "prepare=bad"},
    {"PREPARE bad2 AS SET a = 1", U, "prepare=bad2"},
    {"EXECUTE p", U, "execute=p"},
    {"EXECUTE P(1, 'a')", U, "execute=p"},
    {"EXECUTE p(nextval('s'))", W, "execute=p"},
    {"EXPLAIN EXECUTE p", U, "execute=p"},
    {"EXPLAIN ANALYZE EXECUTE p(1)", U, "execute=p"},
    // --- primary only: catalogs, statistics, hints --------------------------------------------
    {"SELECT * FROM pg_stat_activity", P},
    {"select relname from pg_catalog.pg_class", P},
    {"SELECT * FROM information_schema.tables", P},
    {"SELECT * FROM INFORMATION_SCHEMA.TABLES", P},
    {"SELECT * FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace", P},
    {"SELECT * FROM t, pg_locks", P},
    {"SELECT * FROM t JOIN pg_stat_replication r ON true", P},
    {"SELECT * FROM ONLY pg_class", P},
    {"SELECT * FROM \"pg_database\"", P},
    {"SELECT (SELECT count(*) FROM pg_stat_activity)", P},
    {"SELECT * FROM t WHERE a IN (SELECT oid FROM pg_roles)", P},
    {"TABLE pg_settings", P},
    {"SELECT * FROM public.pg_stat_statements", P},
    {"SELECT oid FROM pg_catalog.pg_type WHERE typname = 'int4'", P},
    {"SELECT * FROM pg_temp.t", P},
    {"SELECT currval('s')", P},
    {"SELECT lastval()", P},
    {"SELECT pg_current_wal_lsn()", P},
    {"/*NO LOAD BALANCE*/ SELECT 1", P},
    {"/*no load balance*/ SELECT * FROM t", P},
    {"/*NO LOAD BALANCE*/ INSERT INTO t VALUES (1)", W},
    {"/*NO LOAD BALANCE*/ SET a = 1", S},
    {"EXPLAIN SELECT * FROM pg_class", P},
    {"COPY pg_class TO STDOUT", P},
    {"COPY t TO '/tmp/x'", P},
    {"COPY t TO PROGRAM 'gzip > /tmp/x'", P},
    {"COPY (SELECT 1) TO '/tmp/x'", P},
    // --- unknown ------------------------------------------------------------------------------
    {"", U},
    {"-- only a comment", U},
    {"SELECT 'abc", U},
    {"SELECT \"abc", U},
    {"SELECT $$abc", U},
    {"SELECT 1 /* abc", U},
    {R"(SELECT E'abc\')", U},
    {"FOO BAR", U},
    {"42", U},
    {"SELEC 1", U},
    {"(UPDATE t SET a = 1)", U},
    {"SELECT (1", U},
    {"SELECT 1)", U},
    {"EXPLAIN", U},
    {"EXPLAIN SET a = 1", U},
    {"START", U},
    {"COPY t", U},
    {"PREPARE", U},
    {"EXECUTE", U},
    {"DEALLOCATE", U},
    {"*", U},
};
// clang-format on

std::string describe(const statement_info& i) {
    std::ostringstream o;
    o << to_string(i.cls);
    if (i.creates_temp) o << " temp";
    if (i.listen) o << " listen";
    if (i.begins_transaction) o << " begin";
    if (i.read_only_transaction) o << " ro";
    if (i.pins_to_primary) o << " pin";
    if (i.ends_transaction) o << " end";
    if (!i.prepare_name.empty()) o << " prepare=" << i.prepare_name;
    if (!i.execute_name.empty()) o << " execute=" << i.execute_name;
    if (!i.deallocate_name.empty()) o << " dealloc=" << i.deallocate_name;
    return o.str();
}

std::string expected(const row& r) {
    statement_info i;
    i.cls = r.cls;
    std::istringstream in(r.flags);
    for (std::string w; in >> w;) {
        if (w == "temp") {
            i.creates_temp = true;
        } else if (w == "listen") {
            i.listen = true;
        } else if (w == "begin") {
            i.begins_transaction = true;
        } else if (w == "ro") {
            i.read_only_transaction = true;
        } else if (w == "pin") {
            i.pins_to_primary = true;
        } else if (w == "end") {
            i.ends_transaction = true;
        } else if (w.rfind("prepare=", 0) == 0) {
            i.prepare_name = w.substr(8);
        } else if (w.rfind("execute=", 0) == 0) {
            i.execute_name = w.substr(8);
        } else if (w.rfind("dealloc=", 0) == 0) {
            i.deallocate_name = w.substr(8);
        } else {
            FAIL("unknown flag in the table: " << w);
        }
    }
    return describe(i);
}

std::vector<std::string> classes(std::string_view query, const function_policy& p = {},
                                 const lex_options& lex = {}) {
    std::vector<std::string> out;
    for (const auto& i : classify(query, p, lex))
        out.push_back(describe(i));
    return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("classify: the statement table", "[router][classify]") {
    CHECK(std::size(table) >= 150);
    for (const row& r : table) {
        INFO("statement: " << r.sql);
        const statement_info one = classify_one(r.sql);
        CHECK(describe(one) == expected(r));
        // classify() agrees for a statement alone, with or without a trailing semicolon.
        const auto all = classify(r.sql);
        if (all.size() == 1) {
            CHECK(describe(all[0]) == describe(one));
            const auto semi = classify(std::string(r.sql) + ";");
            if (describe(one) != "unknown") {
                REQUIRE(semi.size() == 1);
                CHECK(describe(semi[0]) == describe(one));
            }
        } else {
            CHECK(all.empty());  // "" and comment-only text hold no statement
            CHECK(r.cls == U);
        }
    }
}

TEST_CASE("classify: multi-statement queries never leak keywords", "[router][classify]") {
    CHECK(classes("SELECT 1; UPDATE t SET x=1") == strings{"read", "write"});
    CHECK(classes("UPDATE t SET x=1; SELECT 1") == strings{"write", "read"});
    CHECK(classes("BEGIN; SELECT 1; COMMIT;") ==
          strings{"session_state begin", "read", "session_state end"});
    CHECK(classes("SELECT 1;;; SELECT 2;") == strings{"read", "read"});
    CHECK(classes(R"(SELECT E'\\';UPDATE t SET a=1)") == strings{"read", "write"});
    CHECK(classes(R"(SELECT E'\';UPDATE t SET a=1')") == strings{"read"});
    CHECK(classes(R"(SELECT '\';UPDATE t SET a=1)") == strings{"read", "write"});
    lex_options off;
    off.standard_conforming_strings = false;
    CHECK(classes(R"(SELECT '\';UPDATE t SET a=1)", {}, off) == strings{"unknown"});
    CHECK(classes("SET a = 1; /*NO LOAD BALANCE*/ SELECT 1; SELECT 2") ==
          strings{"session_state", "primary_only", "read"});
    CHECK(classes("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; "
                  "SELECT 2") == strings{"write", "read"});
    CHECK(classes("SELECT 1; SELECT 'unterminated; SELECT 2") == strings{"read", "unknown"});
    CHECK(classes("SELECT 1; /* unterminated") == strings{"read", "unknown"});
    CHECK(classes("").empty());
    CHECK(classes(" ; ; -- x\n /* y */ ;").empty());
    CHECK(classes("LISTEN a; SELECT 1") == strings{"write listen", "read"});
    CHECK(classes("CREATE TEMP TABLE x (a int); SELECT 1") == strings{"write temp", "read"});
    CHECK(classes("WITH x AS (SELECT 1) SELECT * FROM x; DELETE FROM t") ==
          strings{"read", "write"});
    CHECK(classes("SELECT * FROM t; FOR UPDATE") == strings{"read", "unknown"});
    CHECK(classes("SELECT nextval('s'); SELECT 1") == strings{"write", "read"});
    CHECK(classes("SELECT * FROM pg_class; SELECT * FROM t") == strings{"primary_only", "read"});
    CHECK(classes("SELECT $$;$$; SELECT $a$;$a$; SELECT ';'; SELECT \";\"") ==
          strings{"read", "read", "read", "read"});
    CHECK(classes("PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p") ==
          strings{"read prepare=p", "unknown execute=p", "session_state dealloc=p"});
    // classify_one() is for one statement: several are unknown.
    CHECK(classify_one("SELECT 1; SELECT 2").cls == U);
    CHECK(classify_one("SELECT 1;").cls == R);
}

TEST_CASE("classify: policy write_functions", "[router][classify]") {
    function_policy p;
    p.write_functions = {"my_write", "s.f"};
    CHECK(classify_one("SELECT my_write(1)", p).cls == W);
    CHECK(classify_one("SELECT public.my_write(1)", p).cls == W);
    CHECK(classify_one("SELECT My_Write(1)", p).cls == W);
    CHECK(classify_one("SELECT \"My_Write\"(1)", p).cls == R);
    CHECK(classify_one("SELECT other(1)", p).cls == R);
    CHECK(classify_one("SELECT s.f()", p).cls == W);
    CHECK(classify_one("SELECT f()", p).cls == W);  // may resolve to s.f through search_path
    CHECK(classify_one("SELECT t.f()", p).cls == R);
    CHECK(classify_one("SELECT * FROM t WHERE a IN (SELECT my_write())", p).cls == W);
    CHECK(classify_one("COPY (SELECT my_write()) TO STDOUT", p).cls == W);
    CHECK(classify_one("EXPLAIN ANALYZE SELECT my_write()", p).cls == W);
    CHECK(classify_one("EXPLAIN SELECT my_write()", p).cls == R);  // not executed
    CHECK(classify_one("PREPARE x AS SELECT my_write()", p).cls == W);
    CHECK(classify_one("EXECUTE x(my_write())", p).cls == W);
    CHECK(classify_one("SELECT 'my_write(1)'", p).cls == R);
    CHECK(classify_one("SELECT * FROM my_write", p).cls == R);  // a table, not a call
}

TEST_CASE("classify: policy read_only_functions", "[router][classify]") {
    function_policy p;
    p.read_only_functions = {"count", "now", "public.safe", "nextval", "generate_series"};
    CHECK(classify_one("SELECT count(*) FROM t", p).cls == R);
    CHECK(classify_one("SELECT now()", p).cls == R);
    CHECK(classify_one("SELECT public.safe()", p).cls == R);
    CHECK(classify_one("SELECT safe()", p).cls == W);  // might not be public.safe
    CHECK(classify_one("SELECT other()", p).cls == W);
    CHECK(classify_one("SELECT pg_catalog.count(*) FROM t", p).cls == R);
    CHECK(classify_one("SELECT nextval('s')", p).cls == W);  // the built-in list always applies
    // Syntax that looks like a call is not a call.
    CHECK(classify_one("SELECT coalesce(a, 1), nullif(a, 2), greatest(1, 2) FROM t", p).cls == R);
    CHECK(classify_one("SELECT CAST(a AS numeric(10,2)), a::varchar(3) FROM t", p).cls == R);
    CHECK(classify_one("SELECT * FROM t WHERE a IN (1) AND EXISTS (SELECT 1) AND b = ANY(c)", p)
              .cls == R);
    CHECK(classify_one("SELECT ARRAY(SELECT 1), ROW(1), extract(year FROM now())", p).cls == R);
    CHECK(classify_one("SELECT substring('a' FROM 1 FOR 1), trim('a'), position('a' IN 'b')", p)
              .cls == R);
    CHECK(classify_one("SELECT * FROM t x(a, b)", p).cls == R);
    CHECK(classify_one("SELECT * FROM generate_series(1, 2) g(i)", p).cls == R);
    CHECK(classify_one("SELECT * FROM generate_series(1, 2) AS g(i)", p).cls == R);
    CHECK(classify_one("WITH a(x) AS (SELECT 1), b(y) AS (SELECT 2) SELECT * FROM a, b", p).cls ==
          R);
    CHECK(classify_one("WITH RECURSIVE r(n) AS (SELECT 1) SELECT * FROM r", p).cls == R);
    CHECK(classify_one("SELECT * FROM t TABLESAMPLE SYSTEM (1) REPEATABLE (2)", p).cls == R);
    CHECK(classify_one("SELECT count(*) OVER (PARTITION BY a) FROM t", p).cls == R);
    CHECK(classify_one("SELECT count(*) FILTER (WHERE a > 1) FROM t", p).cls == R);
    CHECK(
        classify_one("SELECT a FROM t GROUP BY GROUPING SETS ((a)), CUBE (a), ROLLUP (a)", p).cls ==
        R);
    CHECK(classify_one("SELECT x::character varying(10), y::interval second(3)", p).cls == R);
    CHECK(classify_one("SELECT * FROM t WHERE a OPERATOR(pg_catalog.=) 1", p).cls == R);
    CHECK(classify_one("SELECT a FROM t FETCH FIRST (5) ROWS ONLY", p).cls == R);
    CHECK(classify_one("SELECT * FROM t JOIN u ON t.a = other(u.b)", p).cls == W);
    CHECK(classify_one("SELECT * FROM t, LATERAL other(t.a)", p).cls == W);
    CHECK(classify_one("SELECT left('a', 1)", p).cls == W);  // left() is a real function
}

TEST_CASE("classify: policy is_volatile", "[router][classify]") {
    std::vector<std::string> asked;
    function_policy p;
    p.is_volatile = [&](std::string_view name) {
        asked.emplace_back(name);
        return name == "random" || name == "myschema.vol";
    };
    CHECK(classify_one("SELECT random()", p).cls == W);
    CHECK(classify_one("SELECT myschema.vol()", p).cls == W);
    CHECK(classify_one("SELECT vol()", p).cls == R);
    asked.clear();
    CHECK(
        classify_one("SELECT ABS(1), \"Abs\"(2), S.Fn(3), coalesce(1, 2), cast(1 AS int)", p).cls ==
        R);
    CHECK(asked == std::vector<std::string>{"abs", "Abs", "s.fn"});
    asked.clear();
    CHECK(classify_one("SELECT nextval('s')", p).cls == W);
    CHECK(asked.empty());  // known writes need no lookup
    // Identifiers are truncated to 63 bytes, as PostgreSQL does.
    asked.clear();
    const std::string longname(100, 'a');
    CHECK(classify_one("SELECT " + longname + "()", p).cls == R);
    REQUIRE(asked.size() == 1);
    CHECK(asked[0] == std::string(63, 'a'));
}

TEST_CASE("classify: a policy callback may classify too", "[router][classify]") {
    function_policy p;
    p.is_volatile = [](std::string_view name) {
        // Re-entrant use: the outer call's tokens must survive this one.
        return classify("SELECT 1; UPDATE t SET a = 1; SELECT nextval('s')").size() == 3 &&
               name == "v";
    };
    const auto all = classify("SELECT a(1), v(2) FROM t; SELECT b(3)", p);
    REQUIRE(all.size() == 2);
    CHECK(all[0].cls == W);
    CHECK(all[1].cls == R);
}

TEST_CASE("classify: deep nesting is bounded", "[router][classify]") {
    std::string explain;
    for (int i = 0; i < 10000; ++i)
        explain += "EXPLAIN ANALYZE ";
    CHECK(classify_one(explain + "SELECT 1").cls == U);
    std::string prepare;
    for (int i = 0; i < 10000; ++i)
        prepare += "PREPARE p AS ";
    CHECK(classify_one(prepare + "SELECT 1").cls == U);
    std::string copy = "COPY ";
    for (int i = 0; i < 5000; ++i)
        copy += "(COPY ";
    CHECK(classify_one(copy).cls == U);
    const std::string parens(200000, '(');
    CHECK(classify_one(parens + "SELECT 1" + std::string(200000, ')')).cls == R);
    CHECK(classify_one(parens).cls == U);
    std::string calls;
    for (int i = 0; i < 100000; ++i)
        calls += "f(";
    CHECK(classify_one("SELECT " + calls).cls == U);
}

TEST_CASE("classify: random input and mutations never crash", "[router][classify][fuzz]") {
    std::mt19937_64 rng(20240601);
    static const char* const pieces[] = {
        "SELECT ",
        "UPDATE ",
        "INSERT INTO ",
        "DELETE FROM ",
        "WITH ",
        " AS ",
        "(",
        ")",
        ";",
        "'",
        "''",
        "\"",
        "E'",
        "U&'",
        "U&\"",
        "\\",
        "$$",
        "$a$",
        "$1",
        "$",
        "--",
        "\n",
        "/*",
        "*/",
        " FOR UPDATE",
        " INTO TEMP ",
        "nextval(",
        "pg_catalog.",
        "pg_class",
        ".",
        ",",
        "::",
        " BEGIN ",
        " ATOMIC ",
        " END",
        "CREATE FUNCTION f() ",
        "EXPLAIN ",
        "ANALYZE ",
        "PREPARE p AS ",
        "EXECUTE ",
        "COPY ",
        " TO STDOUT",
        "/*NO LOAD BALANCE*/",
        "SET ",
        "TRANSACTION ",
        "READ ONLY",
        "x",
        "1",
        " ",
        "\t",
        "CASE ",
        "FROM ",
        "JOIN ",
        "ONLY ",
        "TABLE ",
        "DEALLOCATE ",
        "ALL",
        "START ",
        "ROLLBACK ",
        "TO ",
        "ON COMMIT",
    };
    function_policy policy;
    policy.write_functions = {"w"};
    policy.is_volatile = [](std::string_view n) { return n.size() == 3; };
    lex_options off;
    off.standard_conforming_strings = false;

    const auto check = [&](const std::string& s) {
        const lexed_query q(s);
        const char* lo = s.data();
        const char* hi = s.data() + s.size();
        for (const auto& st : q.statements()) {
            REQUIRE((st.tokens.empty() ? st.unterminated : true));
            for (const auto& t : st.tokens) {
                REQUIRE(t.text.data() >= lo);
                REQUIRE(t.text.data() + t.text.size() <= hi);
                REQUIRE(!t.text.empty());
                REQUIRE(t.upper.size() == t.text.size());
            }
        }
        const auto all = classify(s, policy);
        REQUIRE(all.size() == q.statements().size());
        for (const auto& i : all)
            REQUIRE(to_string(i.cls) != nullptr);
        (void)classify_one(s, policy);
        (void)classify(s, {}, off);
    };

    std::uniform_int_distribution<int> byte(0, 255);
    for (int n = 0; n < 50000; ++n) {
        std::string s;
        const int parts = int(rng() % 24);
        for (int k = 0; k < parts; ++k) {
            if (rng() % 5 == 0)
                s.push_back(char(byte(rng)));
            else
                s += pieces[rng() % std::size(pieces)];
        }
        check(s);
    }
    for (int n = 0; n < 50000; ++n) {
        std::string s = table[rng() % std::size(table)].sql;
        if (rng() % 3 == 0) s += std::string(";") + table[rng() % std::size(table)].sql;
        const int edits = 1 + int(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
            switch (rng() % 5) {
                case 0:  // insert a byte
                    s.insert(s.begin() + at, char(byte(rng)));
                    break;
                case 1:  // delete a byte
                    if (at < s.size()) s.erase(at, 1);
                    break;
                case 2:  // replace a byte
                    if (at < s.size()) s[at] = char(byte(rng));
                    break;
                case 3:  // truncate
                    s.resize(at);
                    break;
                default:  // insert a piece
                    s.insert(at, pieces[rng() % std::size(pieces)]);
                    break;
            }
        }
        check(s);
    }
}

TEST_CASE("classify: a 200-character SELECT is fast", "[router][classify][perf]") {
    const std::string sql =
        "SELECT o.id, o.created_at, c.name, sum(l.amount) AS total FROM orders o "
        "JOIN customers c ON c.id = o.customer_id JOIN lines l ON l.order_id = o.id "
        "WHERE o.created_at > now() - interval '1 day' GROUP BY 1, 2, 3";
    REQUIRE(sql.size() >= 200);
    REQUIRE(classify(sql).front().cls == R);
    constexpr int iterations = 100000;
    std::size_t sink = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i)
        sink += classify(sql).size();
    const auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE(sink == std::size_t(iterations));
    const double ns =
        double(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) / iterations;
    std::printf("classify(%zu-char SELECT): %.0f ns per call\n", sql.size(), ns);
    // Not in sanitizer builds (under ThreadSanitizer, on a busy 2-core machine: 24 us a call).
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    CHECK(ns < 20000);  // a loose bound, so that a loaded CI machine does not fail it
#endif
}

TEST_CASE("classify: markers of session state and COPY FROM STDIN in the text",
          "[router][classify]") {
    auto held = [](std::string_view t) { return markers_of(t).holds_session_state; };
    auto copy = [](std::string_view t) { return markers_of(t).copy_in; };
    CHECK(held("SELECT pg_advisory_lock(1)"));
    CHECK(held("select Pg_Try_Advisory_Lock_Shared(2)"));
    CHECK(held("DECLARE c CURSOR with hold FOR SELECT 1"));
    CHECK_FALSE(held("SELECT pg_advisory_xact_lock(1)"));
    CHECK_FALSE(held("SELECT pg_advisory_unlock(1)"));
    CHECK_FALSE(held("SELECT abalance FROM pgbench_accounts WHERE aid = 1"));
    CHECK_FALSE(held("with  hold"));
    CHECK(held("ADVISORY_LOCK"));  // a match that ends the text
    CHECK_FALSE(held("ADVISORY_LOC"));
    CHECK(copy("copy t FROM stdin"));
    CHECK(copy("COPY t (a) FROM STDIN WITH (FORMAT csv)"));
    CHECK_FALSE(copy("COPY t TO STDOUT"));
    CHECK_FALSE(copy("SELECT 'stdin'"));
    CHECK_FALSE(copy(""));
    CHECK_FALSE(copy("y FROM STDIN"));  // a Y too near the start to end COPY
    CHECK(copy("SELECT 1; COPY t FROM STDIN"));
    CHECK(held("v; SELECT pg_advisory_lock(1)"));
    // Only ASCII letters fold: a byte above 0x7f starts nothing.
    CHECK_FALSE(held("\xd7ITH HOLD"));
}
