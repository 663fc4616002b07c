// The HA tables: [streaming_replication_check], [health_check], [failover] and the [[backend]]
// health_check_* overrides.
#include <catch2/catch.hpp>

#include <string>

#include "config/config.hpp"

using namespace pgpilot::config;

namespace {

std::string joined(const load_result& r) {
    std::string out;
    for (const auto& e : r.errors)
        out += e + "\n";
    return out;
}

settings load_ok(const std::string& text) {
    auto r = load_string(text, "/etc/pgpilot/pgpilot.toml");
    INFO(joined(r));
    REQUIRE(r);
    return *r.value;
}

constexpr const char* backends = R"(
[[backend]]
host = "db0"

[[backend]]
host = "db1"
health_check_period = 2
health_check_max_retries = 3
health_check_user = "monitor"
health_check_password = ""
)";

}  // namespace

TEST_CASE("HA defaults are the issue's values", "[config][ha]") {
    const auto s = load_ok(backends);
    CHECK(s.replication_check.period == 0.05);
    CHECK(s.replication_check.user == "postgres");
    CHECK(s.replication_check.database == "postgres");
    CHECK(s.health_check.period == 0.5);
    CHECK(s.health_check.timeout == 5);
    CHECK(s.health_check.max_retries == 0);
    CHECK(s.health_check.retry_delay == 1);
    CHECK(s.health_check.connect_timeout == 2);
    CHECK(s.failover.command.empty());
    CHECK(s.failover.builtin_promote);
    CHECK(s.failover.builtin_follow);
    CHECK(s.failover.hold_timeout == 30);
    CHECK(s.failover.search_primary_node_timeout == 300);
    CHECK(s.failover.on_backend_error);
    CHECK_FALSE(s.failover.on_backend_shutdown);
    CHECK_FALSE(s.failover.auto_failback);
    CHECK(s.failover.auto_failback_interval == 60);
    CHECK(s.failover.detach_false_primary);
    CHECK(s.failover.status_file == "pgpilot_status");
}

TEST_CASE("HA tables load", "[config][ha]") {
    const auto s = load_ok(std::string(backends) + R"(
[streaming_replication_check]
period = 0.1
user = "repl"
password = "x"
database = "db"

[health_check]
period = 1
timeout = 3
max_retries = 2
retry_delay = 0.25
connect_timeout = 1.5
user = "hc"
password = "pw"
database = "hcdb"

[failover]
command = "/bin/failover.sh %d %m"
follow_primary_command = "/bin/follow.sh %d"
failback_command = "/bin/failback.sh %d"
builtin_promote = false
builtin_follow = false
hold_timeout = 5
search_primary_node_timeout = 0
on_backend_error = false
on_backend_shutdown = true
auto_failback = true
auto_failback_interval = 10
detach_false_primary = false
status_file = "/var/lib/pgpilot/status"
)");
    CHECK(s.replication_check.period == 0.1);
    CHECK(s.replication_check.user == "repl");
    CHECK(s.health_check.retry_delay == 0.25);
    CHECK(s.health_check.user == "hc");
    CHECK(s.failover.command == "/bin/failover.sh %d %m");
    CHECK_FALSE(s.failover.builtin_promote);
    CHECK(s.failover.on_backend_shutdown);
    CHECK(s.failover.search_primary_node_timeout == 0);
    CHECK(s.path_from_config(s.failover.status_file) == "/var/lib/pgpilot/status");

    // Node 0 takes [health_check] as it is; node 1 overrides some keys.
    const auto h0 = s.health_check_for(0);
    CHECK(h0.period == 1);
    CHECK(h0.max_retries == 2);
    CHECK(h0.user == "hc");
    CHECK(h0.password == "pw");
    const auto h1 = s.health_check_for(1);
    CHECK(h1.period == 2);
    CHECK(h1.max_retries == 3);
    CHECK(h1.user == "monitor");
    CHECK(h1.password.empty());  // set to "" explicitly: not [health_check]'s "pw"
    CHECK(h1.timeout == 3);
    CHECK(h1.database == "hcdb");
}

TEST_CASE("a relative status file is next to the config file", "[config][ha]") {
    auto s = load_ok(backends);
    CHECK(s.path_from_config(s.failover.status_file) == "/etc/pgpilot/pgpilot_status");
    s.source = "pgpilot.toml";
    CHECK(s.path_from_config("pgpilot_status") == "pgpilot_status");
    s.source = "conf/pgpilot.toml";
    CHECK(s.path_from_config("pgpilot_status") == "conf/pgpilot_status");
    CHECK(s.path_from_config("") == "");
}

TEST_CASE("bad HA values are reported with their keys", "[config][ha]") {
    auto r = load_string(std::string(backends) + R"(
[health_check]
period = -1
max_retries = 1.5
user = ""

[failover]
builtin_promote = "yes"
hold_timeout = "30"
on_backend_error = 1
unknown_key = true

[streaming_replication_check]
period = -0.5
)",
                         "p.toml");
    REQUIRE_FALSE(r);
    const std::string all = joined(r);
    INFO(all);
    CHECK(all.find("health_check.period: must be at least 0, got -1") != std::string::npos);
    CHECK(all.find("health_check.max_retries: expected an integer, got a float") !=
          std::string::npos);
    CHECK(all.find("health_check.user: must not be empty") != std::string::npos);
    CHECK(all.find("failover.builtin_promote: expected a boolean (true or false), got a string") !=
          std::string::npos);
    CHECK(all.find("failover.hold_timeout: expected a number, got a string") != std::string::npos);
    CHECK(all.find("failover.on_backend_error: expected a boolean (true or false), got an "
                   "integer") != std::string::npos);
    CHECK(all.find("failover.unknown_key: unknown key") != std::string::npos);
    CHECK(all.find("streaming_replication_check.period: must be at least 0, got -0.5") !=
          std::string::npos);
}

TEST_CASE("bad per-backend health check values name the backend", "[config][ha]") {
    auto r = load_string(R"(
[[backend]]
host = "db0"
health_check_timeout = -2
health_check_max_retries = 1001
health_check_database = ""
health_check_retries = 1
)",
                         "p.toml");
    REQUIRE_FALSE(r);
    const std::string all = joined(r);
    INFO(all);
    CHECK(all.find("backend[0].health_check_timeout: must be at least 0, got -2") !=
          std::string::npos);
    CHECK(all.find("backend[0].health_check_max_retries: must be between 0 and 1000, got 1001") !=
          std::string::npos);
    CHECK(all.find("backend[0].health_check_database: must not be empty") != std::string::npos);
    CHECK(all.find("backend[0].health_check_retries: unknown key") != std::string::npos);
}
