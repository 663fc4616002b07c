#include <catch2/catch.hpp>

#include "router/cluster.hpp"

using namespace pgpilot::router;

namespace {
node_state node(int id, node_status s, node_role r) {
    node_state n;
    n.id = id;
    n.status = s;
    n.role = r;
    return n;
}
}  // namespace

TEST_CASE("writes go to the up primary", "[router]") {
    cluster_snapshot c;
    c.nodes = {node(0, node_status::up, node_role::standby),
               node(1, node_status::up, node_role::primary),
               node(2, node_status::up, node_role::standby)};
    auto d = route_to_primary(c);
    REQUIRE(d.node == 1);
}

TEST_CASE("a primary that is down or unknown roles give no route", "[router]") {
    cluster_snapshot c;
    c.nodes = {node(0, node_status::down, node_role::primary),
               node(1, node_status::up, node_role::standby),
               node(2, node_status::waiting, node_role::unknown)};
    auto d = route_to_primary(c);
    REQUIRE_FALSE(d.node.has_value());
    REQUIRE(std::string(d.reason) == "no primary node is available");
    REQUIRE_FALSE(route_to_primary(cluster_snapshot{}).node.has_value());
}
