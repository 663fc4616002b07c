#include <catch2/catch.hpp>

#include <map>

#include "router/balance.hpp"

using namespace pgpilot;
using namespace pgpilot::router;

namespace {
node_state node(int id, node_role r, double weight = 1) {
    node_state n;
    n.id = id;
    n.status = node_status::up;
    n.role = r;
    n.weight = weight;
    return n;
}

cluster_snapshot three(double w0 = 1, double w1 = 1, double w2 = 1) {
    cluster_snapshot c;
    c.nodes = {node(0, node_role::primary, w0), node(1, node_role::standby, w1),
               node(2, node_role::standby, w2)};
    return c;
}

// How often each node is chosen for r1 on a fine grid.
std::map<int, int> spread(const cluster_snapshot& c, const config::load_balance_settings& lb,
                          std::string_view db = "postgres", std::string_view app = "") {
    std::map<int, int> counts;
    for (int i = 0; i < 1000; ++i) {
        auto n = choose_read_node(c, lb, db, app, (i + 0.5) / 1000, ((i * 7) % 1000 + 0.5) / 1000);
        counts[n.value_or(-1)]++;
    }
    return counts;
}
}  // namespace

TEST_CASE("pg_lsn text parses and formats", "[router][lsn]") {
    CHECK(parse_lsn("0/0") == 0u);
    CHECK(parse_lsn("16/B374D848") == ((0x16ull << 32) | 0xB374D848ull));
    CHECK(parse_lsn("ffffffff/FFFFFFFF") == ~0ull);
    CHECK(format_lsn((0x16ull << 32) | 0xB374D848ull) == "16/B374D848");
    CHECK_FALSE(parse_lsn(""));
    CHECK_FALSE(parse_lsn("/1"));
    CHECK_FALSE(parse_lsn("1/"));
    CHECK_FALSE(parse_lsn("1/2/3"));
    CHECK_FALSE(parse_lsn("G/1"));
    CHECK_FALSE(parse_lsn("100000000/0"));
    CHECK_FALSE(parse_lsn(" 1/2"));
}

TEST_CASE("reads are drawn by weight over the primary and the standbys", "[router][balance]") {
    config::load_balance_settings lb;
    auto counts = spread(three(1, 2, 1), lb);
    CHECK(counts[0] == 250);
    CHECK(counts[1] == 500);
    CHECK(counts[2] == 250);
    // Weight 0 takes a node out of reads.
    counts = spread(three(0, 1, 1), lb);
    CHECK(counts[0] == 0);
    CHECK(counts[1] == 500);
}

TEST_CASE("down, unknown and lagging standbys get no reads", "[router][balance]") {
    config::load_balance_settings lb;
    auto c = three();
    c.nodes[1].status = node_status::down;
    c.nodes[2].role = node_role::unknown;
    CHECK(spread(c, lb)[0] == 1000);

    c = three();
    c.nodes[1].lag_bytes = 5000;
    c.nodes[2].lag_seconds = 2.5;
    CHECK(readable(c.nodes[1], lb));
    lb.delay_threshold = 4000;
    CHECK_FALSE(readable(c.nodes[1], lb));
    CHECK(readable(c.nodes[2], lb));
    lb.delay_threshold_by_time = 2000;
    CHECK_FALSE(readable(c.nodes[2], lb));
    CHECK(readable(c.nodes[0], lb));  // the primary never lags

    c.nodes[0].status = node_status::down;
    CHECK_FALSE(choose_read_node(c, lb, "x", "", 0.1, 0.1));
}

TEST_CASE("has_replayed compares the standby's replay position", "[router][lsn]") {
    auto c = three();
    c.nodes[1].wal_lsn = 100;
    CHECK(has_replayed(c.nodes[1], 0));
    CHECK(has_replayed(c.nodes[1], 100));
    CHECK_FALSE(has_replayed(c.nodes[1], 101));
    CHECK(has_replayed(c.nodes[0], 1000));  // primary
}

TEST_CASE("redirect preference lists", "[router][balance]") {
    config::load_balance_settings lb;
    std::string error;
    lb.database_redirect_preference_list =
        *config::parse_redirect_list("postgres:primary,mydb[0-4]:1(0.3),test:standby", &error);
    lb.app_name_redirect_preference_list = *config::parse_redirect_list("psql:2", &error);
    auto c = three();
    CHECK(spread(c, lb, "postgres")[0] == 1000);
    CHECK(spread(c, lb, "test")[0] == 0);
    auto mydb = spread(c, lb, "mydb3");
    CHECK(mydb[1] == 300);
    CHECK(mydb[0] + mydb[2] == 700);
    CHECK(mydb[0] > 250);
    CHECK(mydb[2] > 250);
    // The pattern matches the whole name.
    auto other = spread(c, lb, "mydb3x");
    CHECK(other[1] > 250);
    // application_name wins over the database.
    CHECK(spread(c, lb, "postgres", "psql")[2] == 1000);
    // A rule whose node cannot take reads falls back to the weights.
    c.nodes[2].status = node_status::down;
    auto fallback = spread(c, lb, "postgres", "psql");
    CHECK(fallback[0] == 500);
    CHECK(fallback[1] == 500);
}

TEST_CASE("lsn_mark only moves forward", "[router][lsn]") {
    lsn_mark m;
    m.advance(10);
    m.advance(5);
    CHECK(m.get() == 10);
    m.advance(11);
    CHECK(m.get() == 11);
}
