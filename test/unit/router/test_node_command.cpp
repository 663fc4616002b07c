#include <catch2/catch.hpp>

#include "router/node_command.hpp"

using namespace pgpilot::router;
using action = node_command::action;

TEST_CASE("statements that are not PGPOOL ones are left alone", "[router][node_command]") {
    CHECK_FALSE(parse_node_command("SELECT 1"));
    CHECK_FALSE(parse_node_command(""));
    CHECK_FALSE(parse_node_command("pgpoolx attach node 1"));
    CHECK_FALSE(parse_node_command("'PGPOOL' ATTACH NODE 1"));
    CHECK_FALSE(parse_node_command("\"PGPOOL\" ATTACH NODE 1"));
}

TEST_CASE("PGPOOL node commands parse in any case, with comments and a semicolon",
          "[router][node_command]") {
    auto a = parse_node_command("pgpool attach node 2");
    REQUIRE(a);
    CHECK(a->error.empty());
    CHECK(a->what == action::attach);
    CHECK(a->node == 2);

    auto d = parse_node_command("/* ops */ PGPOOL DETACH NODE 0 GRACEFULLY;");
    REQUIRE(d);
    CHECK(d->error.empty());
    CHECK(d->what == action::detach);
    CHECK(d->node == 0);
    CHECK(d->gracefully);
    CHECK(to_string(*d) == "PGPOOL DETACH NODE 0 GRACEFULLY");

    auto p = parse_node_command("-- switch\nPgPool Promote Node 1 Switchover");
    REQUIRE(p);
    CHECK(p->error.empty());
    CHECK(p->what == action::promote);
    CHECK(p->switchover);
    CHECK_FALSE(p->gracefully);
    CHECK(to_string(*p) == "PGPOOL PROMOTE NODE 1 SWITCHOVER");
}

TEST_CASE("malformed PGPOOL statements are syntax errors, not passed on",
          "[router][node_command]") {
    for (const char* bad : {"PGPOOL", "PGPOOL ATTACH", "PGPOOL ATTACH NODE", "PGPOOL ATTACH 1",
                            "PGPOOL REMOVE NODE 1", "PGPOOL ATTACH NODE x",
                            "PGPOOL ATTACH NODE 1 SWITCHOVER", "PGPOOL PROMOTE NODE 1 GRACEFULLY",
                            "PGPOOL DETACH NODE 1 GRACEFULLY NOW", "PGPOOL ATTACH NODE 1.5",
                            "PGPOOL ATTACH NODE 99999999999", "PGPOOL ATTACH NODE 1; SELECT 1"}) {
        INFO(bad);
        auto c = parse_node_command(bad);
        REQUIRE(c);
        CHECK_FALSE(c->error.empty());
    }
}
