// The HTTP admin endpoint's documents: JSON and the Prometheus text format.
#include <catch2/catch.hpp>

#include <string>

#include "proxy/admin.hpp"
#include "proxy/once_a_minute.hpp"

using namespace pgpilot::proxy;

namespace {

node_view node(int id, std::string host, std::uint16_t port, std::string status, std::string role,
               double weight, double lb_weight) {
    node_view n;
    n.id = id;
    n.host = std::move(host);
    n.port = port;
    n.status = std::move(status);
    n.role = std::move(role);
    n.weight = weight;
    n.lb_weight = lb_weight;
    return n;
}

admin_report two_nodes_one_pool() {
    admin_report r;
    auto primary = node(0, "db-0", 5432, "up", "primary", 1, 0.25);
    primary.select_cnt = 7;
    primary.wal_lsn = 0x16B374D848;
    primary.last_status_change = "2026-12-03 10:00:00";
    auto standby = node(1, "db\"1\\", 5433, "down", "standby", 3, 0.75);
    standby.replication_delay = 4096;
    standby.replication_delay_seconds = 0.5;
    standby.replication_state = "streaming";
    standby.replication_sync_state = "async";
    standby.status_reason = "health check failed:\nconnection refused";
    r.nodes = {primary, standby};
    pool_view p;
    p.stats.node = 0;
    p.stats.user = "app";
    p.stats.database = "shop";
    p.stats.open = 5;
    p.stats.idle = 2;
    p.stats.waiting = 1;
    p.stats.pool_size = 20;
    p.stats.max_wait = 1.5;
    p.stats.waits = 9;
    p.stats.timeouts = 1;
    p.stats.connects = 12;
    p.mode = "transaction";
    r.pools = {p};
    r.clients = 40;
    r.clients_waiting = 2;
    return r;
}

}  // namespace

TEST_CASE("json_string escapes quotes, backslashes and control characters", "[admin]") {
    CHECK(json_string("plain") == "\"plain\"");
    CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(json_string("l1\nl2\r\t") == "\"l1\\nl2\\r\\t\"");
    CHECK(json_string(std::string("\x01\x1f\x7f", 3)) == "\"\\u0001\\u001f\\u007f\"");
    CHECK(json_string("\xc3\xa9") == "\"\xc3\xa9\"");  // UTF-8 as it is
}

TEST_CASE("nodes JSON has pgpool-II's column names and typed values", "[admin]") {
    const auto json = nodes_json(two_nodes_one_pool());
    CHECK(json ==
          "{\"failover_in_progress\":false,\"nodes\":["
          "{\"node_id\":0,\"hostname\":\"db-0\",\"port\":5432,\"status\":\"up\","
          "\"role\":\"primary\",\"weight\":1,\"lb_weight\":0.25,\"select_cnt\":7,"
          "\"replication_delay\":0,\"replication_delay_seconds\":0,\"replication_state\":\"\","
          "\"replication_sync_state\":\"\",\"last_status_change\":\"2026-12-03 10:00:00\","
          "\"status_reason\":\"\",\"wal_lsn\":\"16/B374D848\",\"open_transactions\":0},"
          "{\"node_id\":1,\"hostname\":\"db\\\"1\\\\\",\"port\":5433,\"status\":\"down\","
          "\"role\":\"standby\",\"weight\":3,\"lb_weight\":0.75,\"select_cnt\":0,"
          "\"replication_delay\":4096,\"replication_delay_seconds\":0.5,"
          "\"replication_state\":\"streaming\",\"replication_sync_state\":\"async\","
          "\"last_status_change\":\"\",\"status_reason\":\"health check failed:\\nconnection "
          "refused\",\"wal_lsn\":null,\"open_transactions\":0}]}\n");
}

TEST_CASE("pools JSON has SHOW POOLS's columns", "[admin]") {
    const auto json = pools_json(two_nodes_one_pool());
    CHECK(json ==
          "{\"clients\":40,\"clients_waiting\":2,\"pools\":["
          "{\"database\":\"shop\",\"user\":\"app\",\"node_id\":0,\"pool_mode\":\"transaction\","
          "\"cl_waiting\":1,\"cl_pinned\":0,\"sv_active\":3,\"sv_idle\":2,\"pool_size\":20,"
          "\"maxwait\":1.5,\"total_waits\":9,\"total_wait_timeouts\":1,\"total_connects\":12}]}\n");
}

TEST_CASE("metrics are in the Prometheus text format", "[admin]") {
    const auto text = prometheus_metrics(two_nodes_one_pool());
    auto has = [&](const std::string& line) {
        INFO(line);
        CHECK(text.find("\n" + line + "\n") != std::string::npos);
    };
    has("# TYPE pgpilot_node_up gauge");
    has("pgpilot_node_up{node_id=\"0\"} 1");
    has("pgpilot_node_up{node_id=\"1\"} 0");
    has("pgpilot_node_primary{node_id=\"0\"} 1");
    has("pgpilot_node_primary{node_id=\"1\"} 0");
    // A label value escapes backslash and double quote.
    has("pgpilot_node_info{node_id=\"1\",hostname=\"db\\\"1\\\\\",port=\"5433\",role=\"standby\","
        "status=\"down\"} 1");
    has("# TYPE pgpilot_node_selects_total counter");
    has("pgpilot_node_selects_total{node_id=\"0\"} 7");
    has("pgpilot_node_replication_delay_bytes{node_id=\"1\"} 4096");
    has("pgpilot_node_replication_delay_seconds{node_id=\"1\"} 0.5");
    has("pgpilot_node_wal_lsn_bytes{node_id=\"0\"} 97500059720");
    has("pgpilot_failover_in_progress 0");
    has("pgpilot_clients 40");
    has("pgpilot_clients_waiting 2");
    const std::string pool =
        "{database=\"shop\",user=\"app\",node_id=\"0\",pool_mode=\"transaction\"}";
    has("pgpilot_pool_server_active" + pool + " 3");
    has("pgpilot_pool_server_idle" + pool + " 2");
    has("pgpilot_pool_clients_waiting" + pool + " 1");
    has("pgpilot_pool_max_wait_seconds" + pool + " 1.5");
    has("# TYPE pgpilot_pool_connects_total counter");
    has("pgpilot_pool_connects_total" + pool + " 12");
    // Every line is a comment or "name{labels} value"; every family is typed once.
    CHECK(text.starts_with("# HELP pgpilot_node_info "));
    CHECK(text.ends_with("\n"));
    std::size_t types = 0, helps = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        const auto end = text.find('\n', pos);
        const auto line = text.substr(pos, end - pos);
        pos = end + 1;
        if (line.starts_with("# TYPE ")) ++types;
        if (line.starts_with("# HELP ")) ++helps;
        if (line.starts_with("#")) continue;
        INFO(line);
        CHECK(line.starts_with("pgpilot_"));
        CHECK(line.find('\n') == std::string::npos);
        CHECK(line.rfind(' ') != std::string::npos);
    }
    CHECK(types == helps);
    CHECK(types == 21);
}

TEST_CASE("a repeated failure is logged at most once a minute", "[admin]") {
    once_a_minute warning;
    // From the first failure on: also right after a boot (a steady clock near its epoch).
    const std::chrono::steady_clock::time_point t0{std::chrono::seconds(5)};
    CHECK(warning.due(t0));
    CHECK_FALSE(warning.due(t0 + std::chrono::seconds(59)));
    CHECK(warning.due(t0 + std::chrono::seconds(60)));
    CHECK_FALSE(warning.due(t0 + std::chrono::seconds(61)));
}
