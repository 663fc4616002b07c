#include <catch2/catch.hpp>

#include "router/session_route.hpp"

using namespace pgpilot;
using namespace pgpilot::router;

namespace {
route_target route(std::string_view sql, const session_route_state& state = {},
                   const config::load_balance_settings& lb = {}) {
    auto infos = classify(sql);
    return decide_route(summarize(infos), state, lb);
}
}  // namespace

TEST_CASE("summaries fold a unit's statements", "[router][route]") {
    auto u = summarize(classify("SELECT 1; UPDATE t SET a = 1"));
    CHECK(u.cls == statement_class::write);
    u = summarize(classify("BEGIN; SELECT 1"));
    CHECK(u.cls == statement_class::read);
    CHECK(u.opens_transaction);
    CHECK_FALSE(u.ends_transaction);
    u = summarize(classify("BEGIN; INSERT INTO t VALUES (1); COMMIT"));
    CHECK_FALSE(u.opens_transaction);
    CHECK_FALSE(u.ends_transaction);
    u = summarize(classify("COMMIT"));
    CHECK(u.ends_transaction);
    u = summarize(classify("BEGIN READ ONLY"));
    CHECK(u.read_only_transaction);
    u = summarize(classify("CREATE TEMP TABLE x (a int)"));
    CHECK(u.pins_session);
    u = summarize(classify("SET search_path = a"));
    CHECK(u.cls == statement_class::session_state);
}

TEST_CASE("autocommit: reads balance, writes and pins go to the primary", "[router][route]") {
    CHECK(route("SELECT * FROM t") == route_target::read_node);
    CHECK(route("/*NO LOAD BALANCE*/ SELECT 1") == route_target::primary);
    CHECK(route("SELECT * FROM pg_catalog.pg_class") == route_target::primary);
    CHECK(route("INSERT INTO t VALUES (1)") == route_target::primary);
    CHECK(route("SET work_mem = '64MB'") == route_target::current);
    CHECK(route("LISTEN x") == route_target::primary);
    session_route_state pinned;
    pinned.pinned = true;
    CHECK(route("SELECT 1", pinned) == route_target::primary);
    config::load_balance_settings off;
    off.enabled = false;
    CHECK(route("SELECT 1", {}, off) == route_target::primary);
}

TEST_CASE("transactions start on a read node unless they say otherwise", "[router][route]") {
    CHECK(route("BEGIN") == route_target::read_node);
    CHECK(route("BEGIN READ ONLY") == route_target::read_node);
    CHECK(route("BEGIN READ WRITE") == route_target::primary);
    CHECK(route("BEGIN ISOLATION LEVEL SERIALIZABLE") == route_target::primary);
    CHECK(route("BEGIN; UPDATE t SET a = 1") == route_target::primary);
}

TEST_CASE("inside a transaction: reads stay, the first write moves it", "[router][route]") {
    session_route_state tx;
    tx.in_transaction = true;
    CHECK(route("SELECT 1", tx) == route_target::transaction_node);
    CHECK(route("SAVEPOINT a", tx) == route_target::transaction_node);
    CHECK(route("UPDATE t SET a = 1", tx) == route_target::primary);
    CHECK(route("COMMIT", tx) == route_target::transaction_node);
    tx.transaction_on_primary = true;
    CHECK(route("SELECT 1", tx) == route_target::primary);
    tx.transaction_on_primary = false;
    tx.transaction_read_only = true;
    CHECK(route("UPDATE t SET a = 1", tx) == route_target::transaction_node);
    tx.transaction_read_only = false;
    tx.transaction_failed = true;
    CHECK(route("ROLLBACK", tx) == route_target::transaction_node);
}

TEST_CASE("disable_load_balance_on_write", "[router][route]") {
    config::load_balance_settings lb;
    session_route_state wrote;
    wrote.wrote = true;
    wrote.wrote_in_transaction = true;
    CHECK(route("SELECT 1", wrote, lb) == route_target::read_node);
    CHECK(route("BEGIN", wrote, lb) == route_target::read_node);
    lb.on_write = config::lb_on_write::trans_transaction;
    CHECK(route("SELECT 1", wrote, lb) == route_target::read_node);
    CHECK(route("BEGIN", wrote, lb) == route_target::primary);
    CHECK(route("BEGIN READ ONLY", wrote, lb) == route_target::read_node);
    lb.on_write = config::lb_on_write::always;
    CHECK(route("SELECT 1", wrote, lb) == route_target::primary);
    CHECK(route("SELECT 1", {}, lb) == route_target::read_node);
}
