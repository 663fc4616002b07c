// Loading valid configurations: the spec's sample file, defaults, enum spellings, load_file.

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"

using namespace pgpilot::config;

namespace {

// The sample configuration from the product spec, verbatim.
constexpr const char* spec_sample = R"([server]
listen_addresses = "127.0.0.1"
port = 9999
workers = 2
unix_socket_dir = "/tmp"

[pool]
max_pool = 4
connection_life_time = 0

[[backend]]
host = "127.0.0.1"
port = 5432
weight = 1
flag = "ALLOW_TO_FAILOVER"

[[backend]]
host = "127.0.0.1"
port = 5433
weight = 1

[auth]
method = "trust"          # trust | password | md5 | scram-sha-256
backend_password = ""     # used toward backends when they ask for one
)";

std::string joined(const load_result& r) {
    std::string out;
    for (const auto& e : r.errors)
        out += e + "\n";
    return out;
}

settings load_ok(const std::string& text) {
    auto r = load_string(text, "pgpilot.toml");
    INFO(joined(r));
    REQUIRE(r);
    REQUIRE(r.errors.empty());
    return *r.value;
}

constexpr const char* one_backend = "[[backend]]\nhost = \"db\"\n";

}  // namespace

TEST_CASE("the spec's sample file loads with the expected values", "[config]") {
    const settings s = load_ok(spec_sample);
    CHECK(s.source == "pgpilot.toml");

    CHECK(s.server.listen_addresses == std::vector<std::string>{"127.0.0.1"});
    CHECK(s.server.port == 9999);
    CHECK(s.server.workers == 2);
    CHECK(s.server.unix_socket_dir == "/tmp");
    CHECK(s.server.log == log_level::info);

    CHECK(s.pool.max_pool == 4);
    CHECK(s.pool.connection_life_time == 0);
    CHECK(s.pool.connect_timeout == 10);

    REQUIRE(s.backends.size() == 2);
    CHECK(s.backends[0].host == "127.0.0.1");
    CHECK(s.backends[0].port == 5432);
    CHECK(s.backends[0].weight == 1);
    CHECK(s.backends[0].flag == backend_flag::allow_to_failover);
    CHECK(s.backends[1].host == "127.0.0.1");
    CHECK(s.backends[1].port == 5433);
    CHECK(s.backends[1].weight == 1);
    CHECK(s.backends[1].flag == backend_flag::allow_to_failover);
    CHECK(s.backends[1].data_directory.empty());
    CHECK(s.backends[1].application_name.empty());

    CHECK(s.users.empty());
    CHECK(s.auth.method == auth_method::trust);
    CHECK(s.auth.backend_password.empty());
}

TEST_CASE("absent keys and tables take their defaults", "[config]") {
    const settings s = load_ok(one_backend);
    const settings defaults{};

    CHECK(s.server.listen_addresses == std::vector<std::string>{"127.0.0.1"});
    CHECK(s.server.port == 9999);
    CHECK(s.server.workers == 0);
    CHECK(s.server.unix_socket_dir.empty());
    CHECK(s.server.log == log_level::info);
    CHECK(s.pool.max_pool == 4);
    CHECK(s.pool.connection_life_time == 0);
    CHECK(s.pool.connect_timeout == 10);
    REQUIRE(s.backends.size() == 1);
    CHECK(s.backends[0].host == "db");
    CHECK(s.backends[0].port == 5432);
    CHECK(s.backends[0].weight == 1);
    CHECK(s.backends[0].flag == backend_flag::allow_to_failover);
    CHECK(s.users.empty());
    CHECK(s.auth.method == auth_method::trust);
    CHECK(s.auth.backend_password.empty());
    CHECK(s.admin.port == 0);
    CHECK(s.admin.listen_addresses == std::vector<std::string>{"127.0.0.1"});
    CHECK(s.admin.token.empty());

    // The struct defaults are the documented ones too.
    CHECK(defaults.server.port == s.server.port);
    CHECK(defaults.pool.max_pool == s.pool.max_pool);
    CHECK(defaults.backends.empty());
}

TEST_CASE("every key can be set", "[config]") {
    const settings s = load_ok(R"(
[server]
listen_addresses = "localhost, 10.0.0.1"
port = 6432
workers = 256
unix_socket_dir = "/run/pgpilot"
log_level = "debug"

[admin]
listen_addresses = ["127.0.0.1", "::1"]
port = 9898
token = "t0ken"

[pool]
max_pool = 0
connection_life_time = 2.5
connect_timeout = 0.25

[[backend]]
host = "/var/run/postgresql"
port = 65535
weight = 0.5
flag = "DISALLOW_TO_FAILOVER"
data_directory = "/var/lib/postgresql/16/main"
application_name = "node0"

[[backend]]
host = "replica"
weight = 0
flag = "ALWAYS_PRIMARY"

[[user]]
name = "alice"
password = "md5d9f5e1d0aa4bd8b2ce6c8ab4f6b1e5a2"

[[user]]
name = "Alice"
password = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"

[auth]
method = "scram-sha-256"
backend_password = "s3cret"
)");
    CHECK(s.server.listen_addresses == std::vector<std::string>{"localhost", "10.0.0.1"});
    CHECK(s.server.port == 6432);
    CHECK(s.server.workers == 256);
    CHECK(s.server.unix_socket_dir == "/run/pgpilot");
    CHECK(s.server.log == log_level::debug);
    CHECK(s.admin.listen_addresses == std::vector<std::string>{"127.0.0.1", "::1"});
    CHECK(s.admin.port == 9898);
    CHECK(s.admin.token == "t0ken");
    CHECK(s.pool.max_pool == 0);
    CHECK(s.pool.connection_life_time == 2.5);
    CHECK(s.pool.connect_timeout == 0.25);
    REQUIRE(s.backends.size() == 2);
    CHECK(s.backends[0].host == "/var/run/postgresql");
    CHECK(s.backends[0].port == 65535);
    CHECK(s.backends[0].weight == 0.5);
    CHECK(s.backends[0].flag == backend_flag::disallow_to_failover);
    CHECK(s.backends[0].data_directory == "/var/lib/postgresql/16/main");
    CHECK(s.backends[0].application_name == "node0");
    CHECK(s.backends[1].weight == 0);
    CHECK(s.backends[1].flag == backend_flag::always_primary);
    REQUIRE(s.users.size() == 2);
    CHECK(s.users[0].name == "alice");
    CHECK(s.users[0].password == "md5d9f5e1d0aa4bd8b2ce6c8ab4f6b1e5a2");
    CHECK(s.users[1].password == "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy");
    CHECK(s.auth.method == auth_method::scram_sha_256);
    CHECK(s.auth.backend_password == "s3cret");
}

TEST_CASE("enum values are matched case-insensitively", "[config]") {
    const settings s = load_ok(R"(
[server]
log_level = "WARNING"
[[backend]]
host = "db"
flag = "always_primary"
[auth]
method = "SCRAM-SHA-256"
)");
    CHECK(s.server.log == log_level::warning);
    CHECK(s.backends[0].flag == backend_flag::always_primary);
    CHECK(s.auth.method == auth_method::scram_sha_256);
}

TEST_CASE("to_string gives spellings that load back", "[config]") {
    for (auto m : {auth_method::trust, auth_method::password, auth_method::md5,
                   auth_method::scram_sha_256}) {
        const auto s =
            load_ok(std::string(one_backend) + "[auth]\nmethod = \"" + to_string(m) + "\"\n");
        CHECK(s.auth.method == m);
    }
    for (auto f : {backend_flag::allow_to_failover, backend_flag::disallow_to_failover,
                   backend_flag::always_primary}) {
        const auto s = load_ok(std::string(one_backend) + "flag = \"" + to_string(f) + "\"\n");
        CHECK(s.backends[0].flag == f);
    }
    for (auto l : {log_level::debug, log_level::info, log_level::warning, log_level::error}) {
        const auto s =
            load_ok(std::string(one_backend) + "[server]\nlog_level = \"" + to_string(l) + "\"\n");
        CHECK(s.server.log == l);
    }
    CHECK(std::string(to_string(auth_method::scram_sha_256)) == "scram-sha-256");
    CHECK(std::string(to_string(backend_flag::always_primary)) == "ALWAYS_PRIMARY");
    CHECK(std::string(to_string(log_level::warning)) == "warning");
}

TEST_CASE("listen_addresses forms", "[config]") {
    auto addresses = [](const std::string& value) {
        return load_ok(std::string("[server]\nlisten_addresses = ") + value + "\n" + one_backend)
            .server.listen_addresses;
    };
    CHECK(addresses("\"*\"") == std::vector<std::string>{"*"});
    CHECK(addresses("\"\"") == std::vector<std::string>{});
    CHECK(addresses("\"  \"") == std::vector<std::string>{});
    CHECK(addresses("\"localhost\"") == std::vector<std::string>{"localhost"});
    CHECK(addresses("\"127.0.0.1,::1\"") == std::vector<std::string>{"127.0.0.1", "::1"});
    CHECK(addresses("\" 10.0.0.1 ,\t10.0.0.2 \"") ==
          std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
    CHECK(addresses("[\"127.0.0.1\", \"::1\"]") == std::vector<std::string>{"127.0.0.1", "::1"});
    CHECK(addresses("[]") == std::vector<std::string>{});
}

TEST_CASE("inline tables and arrays of inline tables are accepted", "[config]") {
    const settings s = load_ok(R"(
server = { port = 7000 }
backend = [ { host = "a" }, { host = "b", port = 5433 } ]
)");
    CHECK(s.server.port == 7000);
    REQUIRE(s.backends.size() == 2);
    CHECK(s.backends[1].host == "b");
    CHECK(s.backends[1].port == 5433);
}

TEST_CASE("find_user looks names up exactly", "[config]") {
    const settings s = load_ok(std::string(one_backend) + R"(
[[user]]
name = "alice"
password = "a"
[[user]]
name = "bob"
)");
    REQUIRE(s.find_user("alice") != nullptr);
    CHECK(s.find_user("alice")->password == "a");
    REQUIRE(s.find_user("bob") != nullptr);
    CHECK(s.find_user("bob")->password.empty());
    CHECK(s.find_user("Alice") == nullptr);
    CHECK(s.find_user("") == nullptr);
    CHECK(settings{}.find_user("alice") == nullptr);
}

TEST_CASE("a non-trust method without users is accepted", "[config]") {
    const settings s = load_ok(std::string(one_backend) + "[auth]\nmethod = \"md5\"\n");
    CHECK(s.auth.method == auth_method::md5);
    CHECK(s.users.empty());
}

TEST_CASE("load_file reads a file and records its path", "[config]") {
    const auto path =
        (std::filesystem::temp_directory_path() / "pgpilot_config_test_load.toml").string();
    {
        std::ofstream out(path, std::ios::binary);
        out << spec_sample;
    }
    const auto r = load_file(path);
    std::remove(path.c_str());
    INFO(joined(r));
    REQUIRE(r);
    CHECK(r.value->source == path);
    CHECK(r.value->backends.size() == 2);
}

TEST_CASE("load_file errors name the file in every line", "[config]") {
    const auto path =
        (std::filesystem::temp_directory_path() / "pgpilot_config_test_bad.toml").string();
    {
        std::ofstream out(path, std::ios::binary);
        out << "[server]\nport = 0\n";
    }
    const auto r = load_file(path);
    std::remove(path.c_str());
    REQUIRE_FALSE(r);
    REQUIRE(r.errors.size() == 2);
    for (const auto& e : r.errors)
        CHECK(e.rfind(path + ":", 0) == 0);
}

TEST_CASE("load_file on a missing path names the path and the errno text", "[config]") {
    const std::string path = "/nonexistent/pgpilot/pgpilot.toml";
    const auto r = load_file(path);
    REQUIRE_FALSE(r);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0] == path + ": cannot open: No such file or directory");
}

TEST_CASE("load_file on a directory reports the read error", "[config]") {
    const auto dir = std::filesystem::temp_directory_path().string();
    const auto r = load_file(dir);
    REQUIRE_FALSE(r);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].rfind(dir + ": ", 0) == 0);
    CHECK_THAT(r.errors[0], Catch::Contains("Is a directory"));
}

TEST_CASE("[load_balance] loads and validates", "[config]") {
    auto r = load_string(R"T([[backend]]
host = "a"
[[backend]]
host = "b"
[load_balance]
enabled = false
statement_level = true
disable_load_balance_on_write = "always"
consistency = "session"
consistency_wait_ms = 250
write_functions = ["f", "s.g"]
database_redirect_preference_list = "postgres:primary, mydb\\d:1(0.25)"
delay_threshold = 1000000
)T",
                         "t.toml");
    REQUIRE(r);
    const auto& lb = r.value->load_balance;
    CHECK_FALSE(lb.enabled);
    CHECK(lb.statement_level);
    CHECK(lb.on_write == lb_on_write::always);
    CHECK(lb.consistency == consistency_mode::session);
    CHECK(lb.consistency_wait_ms == 250);
    CHECK(lb.write_functions == std::vector<std::string>{"f", "s.g"});
    REQUIRE(lb.database_redirect_preference_list.size() == 2);
    CHECK(lb.database_redirect_preference_list[1].pattern == "mydb\\d");
    CHECK(lb.database_redirect_preference_list[1].node_id == 1);
    CHECK(lb.database_redirect_preference_list[1].ratio == 0.25);
    CHECK(lb.delay_threshold == 1000000);

    auto defaults = load_string("[[backend]]\nhost = \"a\"\n", "t.toml");
    REQUIRE(defaults);
    CHECK(defaults.value->load_balance.enabled);
    CHECK(defaults.value->load_balance.consistency == consistency_mode::global);
    CHECK(defaults.value->load_balance.on_write == lb_on_write::transaction);

    auto bad = load_string(R"([[backend]]
host = "a"
[load_balance]
enabled = "yes"
write_functions = [1]
database_redirect_preference_list = "x:3"
app_name_redirect_preference_list = "(:primary"
consistency = "strong"
)",
                           "t.toml");
    REQUIRE_FALSE(bad);
    REQUIRE(bad.errors.size() == 5);
    CHECK(bad.errors[0] ==
          "t.toml:4:11: load_balance.enabled: expected a boolean (true or false), got a string");
    CHECK(bad.errors[1].find("load_balance.write_functions") != std::string::npos);
    CHECK(bad.errors[2] ==
          "t.toml:6:37: load_balance.database_redirect_preference_list: node 3 is not a "
          "configured backend (there are 1)");
    CHECK(bad.errors[3].find("invalid regular expression") != std::string::npos);
    CHECK(bad.errors[4].find("unknown value \"strong\"") != std::string::npos);
}

TEST_CASE("redirect preference list syntax errors", "[config]") {
    std::string error;
    CHECK(parse_redirect_list("", &error)->empty());
    CHECK_FALSE(parse_redirect_list("nocolon", &error));
    CHECK_FALSE(parse_redirect_list("a:1(2)", &error));
    CHECK(error.find("ratio must be between 0 and 1") != std::string::npos);
    CHECK_FALSE(parse_redirect_list("a:1(x)", &error));
    CHECK_FALSE(parse_redirect_list("a:1(0.5", &error));
    CHECK_FALSE(parse_redirect_list("a:one", &error));
    CHECK_FALSE(parse_redirect_list("a:1,", &error));
    auto ok = parse_redirect_list("a:standby(0.5),b:PRIMARY,c:0", &error);
    REQUIRE(ok);
    CHECK((*ok)[0].target == redirect_rule::target_kind::standby);
    CHECK((*ok)[1].target == redirect_rule::target_kind::primary);
    CHECK((*ok)[2].node_id == 0);
}

TEST_CASE("[[pool.override]] entries apply to their database and user, in file order", "[config]") {
    auto r = load_string(R"([pool]
pool_mode = "transaction"
pool_size = 20
max_backend_connections = 50
query_wait_timeout = 5
[[pool.override]]
database = "reporting"
pool_mode = "session"
pool_size = 5
[[pool.override]]
user = "batch"
pool_size = 2
min_pool_size = 1
[[backend]]
host = "h"
)",
                         "pgpilot.toml");
    REQUIRE(r);
    const auto& s = *r.value;
    REQUIRE(s.pool.overrides.size() == 2);
    CHECK(s.pool.max_backend_connections == 50);
    CHECK(s.pool.query_wait_timeout == 5);
    auto plain = s.pool_for("app", "shop");
    CHECK(plain.mode == pool_mode::transaction);
    CHECK(plain.pool_size == 20);
    auto reports = s.pool_for("app", "reporting");
    CHECK(reports.mode == pool_mode::session);
    CHECK(reports.pool_size == 5);
    auto batch_reports = s.pool_for("batch", "reporting");  // both match: the later wins
    CHECK(batch_reports.mode == pool_mode::session);
    CHECK(batch_reports.pool_size == 2);
    CHECK(batch_reports.min_pool_size == 1);
    CHECK(s.pool_for("batch", "shop").mode == pool_mode::transaction);
}
