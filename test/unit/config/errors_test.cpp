// Rejected configurations: every error is "FILE:LINE:COL: KEY: message", all are reported.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "config/config.hpp"

using namespace pgpilot::config;

namespace {

std::string joined(const std::vector<std::string>& errors) {
    std::string out;
    for (const auto& e : errors)
        out += e + "\n";
    return out;
}

// Loads text that must fail and returns its errors.
std::vector<std::string> errors_of(const std::string& text) {
    const auto r = load_string(text, "pgpilot.toml");
    INFO(text);
    REQUIRE_FALSE(r);
    REQUIRE_FALSE(r.errors.empty());
    return r.errors;
}

constexpr const char* one_backend = "[[backend]]\nhost = \"db\"\n";

}  // namespace

TEST_CASE("a wrong type names file, value position and key", "[config]") {
    const auto errors = errors_of(R"([server]
port = 9999

[[backend]]
host = "db"

[pool]
max_pool = "four"
)");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:8:12: pool.max_pool: expected an integer, got a string");
}

TEST_CASE("an out-of-range value names file, value position and key", "[config]") {
    const auto errors =
        errors_of(std::string("[server]\nlisten_addresses = \"*\"\nport = 70000\n") + one_backend);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:3:8: server.port: must be between 1 and 65535, got 70000");
}

TEST_CASE("an unknown key in a [[backend]] names its index and the key position", "[config]") {
    const auto errors = errors_of(R"([[backend]]
host = "a"

[[backend]]
host = "b"
flagg = "ALWAYS_PRIMARY"
)");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:6:1: backend[1].flagg: unknown key");
}

TEST_CASE("unknown tables are reported at their header", "[config]") {
    const auto errors = errors_of(std::string(one_backend) + "\n[load_balancing]\nmode = 1\n");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:4:1: load_balancing: unknown table");

    const auto nested = errors_of(std::string(one_backend) + "[server.tls]\ncert = \"x\"\n");
    REQUIRE(nested.size() == 1);
    CHECK(nested[0] == "pgpilot.toml:3:1: server.tls: unknown table");

    const auto array = errors_of(std::string(one_backend) + "[[users]]\nname = \"x\"\n");
    REQUIRE(array.size() == 1);
    CHECK(array[0] == "pgpilot.toml:3:1: users: unknown table");
}

TEST_CASE("a syntax error gives its line and column", "[config]") {
    const auto errors = errors_of("[server]\nport = 9999\nworkers = \n");
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], Catch::StartsWith("pgpilot.toml:3:"));
    CHECK_THAT(errors[0], Catch::Contains("syntax error: "));

    const auto dup = errors_of("[server]\nport = 1\nport = 2\n");
    REQUIRE(dup.size() == 1);
    CHECK_THAT(dup[0], Catch::StartsWith("pgpilot.toml:3:"));
    CHECK_THAT(dup[0], Catch::Contains("syntax error: "));
}

TEST_CASE("a missing required key is reported at its table", "[config]") {
    const auto errors = errors_of("[server]\nport = 1\n\n[[backend]]\nport = 5432\n");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:4:1: backend[0].host: required key is missing");
}

TEST_CASE("a file without backends is rejected", "[config]") {
    const auto errors = errors_of("[server]\nport = 1\n");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:1:1: backend: at least one [[backend]] table is required");
    CHECK(errors_of("")[0] ==
          "pgpilot.toml:1:1: backend: at least one [[backend]] table is required");
}

TEST_CASE("duplicate user names point at the second one and name the first", "[config]") {
    const auto errors = errors_of(std::string(one_backend) + R"(
[[user]]
name = "alice"

[[user]]
name = "alice"
)");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] ==
          "pgpilot.toml:8:8: user[1].name: duplicate user \"alice\" (first defined at line 5)");
}

TEST_CASE("several errors are reported together, in file order", "[config]") {
    const auto errors = errors_of(R"([server]
port = 0
workers = "many"
log_level = "loud"

[pool]
max_pool = -1
connection_life_time = -2
connect_timeout = "10s"
max_pools = 3

[[backend]]
host = ""
weight = -1

[[backend]]
port = 5432
flag = "SOMETIMES"

[auth]
method = "kerberos"

[health_chek]
period = 10
)");
    INFO(joined(errors));
    const std::vector<std::string> expected{
        "pgpilot.toml:2:8: server.port: must be between 1 and 65535, got 0",
        "pgpilot.toml:3:11: server.workers: expected an integer, got a string",
        "pgpilot.toml:4:13: server.log_level: unknown value \"loud\", expected one of: debug, "
        "info, warning, error",
        "pgpilot.toml:7:12: pool.max_pool: must be at least 0, got -1",
        "pgpilot.toml:8:24: pool.connection_life_time: must be at least 0, got -2",
        "pgpilot.toml:9:19: pool.connect_timeout: expected a number, got a string",
        "pgpilot.toml:10:1: pool.max_pools: unknown key",
        "pgpilot.toml:13:8: backend[0].host: must not be empty",
        "pgpilot.toml:14:10: backend[0].weight: must be at least 0, got -1",
        "pgpilot.toml:16:1: backend[1].host: required key is missing",
        "pgpilot.toml:18:8: backend[1].flag: unknown value \"SOMETIMES\", expected one of: "
        "ALLOW_TO_FAILOVER, DISALLOW_TO_FAILOVER, ALWAYS_PRIMARY",
        "pgpilot.toml:21:10: auth.method: unknown value \"kerberos\", expected one of: trust, "
        "password, md5, scram-sha-256",
        "pgpilot.toml:23:1: health_chek: unknown table",
    };
    CHECK(errors == expected);
}

TEST_CASE("the source name given to load_string is used in messages", "[config]") {
    const auto r = load_string("[server]\nport = 0\n[[backend]]\nhost = \"h\"\n", "/etc/x.toml");
    REQUIRE_FALSE(r);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0] == "/etc/x.toml:2:8: server.port: must be between 1 and 65535, got 0");
}

namespace {

// A config that must be rejected with an error containing `expected`.
struct bad_config {
    const char* what;
    std::string text;
    const char* expected;
};

std::string with_backend(const std::string& text) {
    return text + "\n" + one_backend;
}

}  // namespace

TEST_CASE("a table of bad configs gives the expected errors", "[config]") {
    const std::vector<bad_config> cases{
        {"port zero", with_backend("[server]\nport = 0"),
         "pgpilot.toml:2:8: server.port: must be between 1 and 65535, got 0"},
        {"port negative", with_backend("[server]\nport = -5"),
         "server.port: must be between 1 and 65535, got -5"},
        {"port as string", with_backend("[server]\nport = \"5432\""),
         "server.port: expected an integer, got a string"},
        {"port as float", with_backend("[server]\nport = 9999.0"),
         "server.port: expected an integer, got a float"},
        {"workers too many", with_backend("[server]\nworkers = 257"),
         "server.workers: must be between 0 and 256, got 257"},
        {"workers negative", with_backend("[server]\nworkers = -1"),
         "server.workers: must be between 0 and 256, got -1"},
        {"workers boolean", with_backend("[server]\nworkers = true"),
         "server.workers: expected an integer, got a boolean"},
        {"log level unknown", with_backend("[server]\nlog_level = \"verbose\""),
         "server.log_level: unknown value \"verbose\""},
        {"listen_addresses integer", with_backend("[server]\nlisten_addresses = 5"),
         "server.listen_addresses: expected a string, got an integer"},
        {"listen_addresses empty entry", with_backend("[server]\nlisten_addresses = \"a,,b\""),
         "server.listen_addresses: empty entry in the address list"},
        {"listen_addresses trailing comma", with_backend("[server]\nlisten_addresses = \"a,\""),
         "server.listen_addresses: empty entry in the address list"},
        {"listen_addresses space", with_backend("[server]\nlisten_addresses = \"a b\""),
         "server.listen_addresses: invalid address \"a b\""},
        {"listen_addresses star plus", with_backend("[server]\nlisten_addresses = \"*, ::1\""),
         "server.listen_addresses: \"*\" already means every address"},
        {"listen_addresses array of ints", with_backend("[server]\nlisten_addresses = [1]"),
         "server.listen_addresses: expected a string or an array of strings, got an array"},
        {"unix_socket_dir boolean", with_backend("[server]\nunix_socket_dir = true"),
         "server.unix_socket_dir: expected a string, got a boolean"},
        {"max_pool negative", with_backend("[pool]\nmax_pool = -1"),
         "pool.max_pool: must be at least 0, got -1"},
        {"max_pool overflow", with_backend("[pool]\nmax_pool = 3000000000"),
         "pool.max_pool: must be at most 2147483647, got 3000000000"},
        {"life time negative", with_backend("[pool]\nconnection_life_time = -1"),
         "pool.connection_life_time: must be at least 0, got -1"},
        {"life time infinite", with_backend("[pool]\nconnection_life_time = inf"),
         "pool.connection_life_time: must be a finite number, got inf"},
        {"connect timeout nan", with_backend("[pool]\nconnect_timeout = nan"),
         "pool.connect_timeout: must be a finite number"},
        {"connect timeout string", with_backend("[pool]\nconnect_timeout = \"10s\""),
         "pool.connect_timeout: expected a number, got a string"},
        {"connect timeout date", with_backend("[pool]\nconnect_timeout = 1979-05-27"),
         "pool.connect_timeout: expected a number, got a date"},
        {"backend port zero", "[[backend]]\nhost = \"h\"\nport = 0",
         "pgpilot.toml:3:8: backend[0].port: must be between 1 and 65535, got 0"},
        {"backend port too big", "[[backend]]\nhost = \"h\"\nport = 65536",
         "backend[0].port: must be between 1 and 65535, got 65536"},
        {"backend weight negative", "[[backend]]\nhost = \"h\"\nweight = -0.5",
         "backend[0].weight: must be at least 0, got -0.5"},
        {"backend weight string", "[[backend]]\nhost = \"h\"\nweight = \"1\"",
         "backend[0].weight: expected a number, got a string"},
        {"backend flag unknown", "[[backend]]\nhost = \"h\"\nflag = \"SOMETIMES\"",
         "backend[0].flag: unknown value \"SOMETIMES\", expected one of: ALLOW_TO_FAILOVER, "
         "DISALLOW_TO_FAILOVER, ALWAYS_PRIMARY"},
        {"backend flag joined",
         "[[backend]]\nhost = \"h\"\nflag = \"ALLOW_TO_FAILOVER|ALWAYS_PRIMARY\"",
         "backend[0].flag: unknown value \"ALLOW_TO_FAILOVER|ALWAYS_PRIMARY\""},
        {"backend flag integer", "[[backend]]\nhost = \"h\"\nflag = 1",
         "backend[0].flag: expected a string, got an integer"},
        {"backend host empty", "[[backend]]\nhost = \"\"",
         "pgpilot.toml:2:8: backend[0].host: must not be empty"},
        {"backend host missing", "[[backend]]\nhost = \"h\"\n[[backend]]\nport = 5433",
         "pgpilot.toml:3:1: backend[1].host: required key is missing"},
        {"backend host integer", "[[backend]]\nhost = 127", "backend[0].host: expected a string"},
        {"backend data_directory integer", "[[backend]]\nhost = \"h\"\ndata_directory = 1",
         "backend[0].data_directory: expected a string, got an integer"},
        {"backend application_name array", "[[backend]]\nhost = \"h\"\napplication_name = []",
         "backend[0].application_name: expected a string, got an array"},
        {"backend typo", "[[backend]]\nhost = \"h\"\nhostname = \"x\"",
         "pgpilot.toml:3:1: backend[0].hostname: unknown key"},
        {"no backend", "[server]\nport = 1", "backend: at least one [[backend]] table is required"},
        {"empty backend array", "backend = []",
         "backend: at least one [[backend]] table is required"},
        {"backend as single table", "[backend]\nhost = \"h\"",
         "pgpilot.toml:1:1: backend: expected an array of tables ([[backend]]), got a table"},
        {"backend array of ints", "backend = [1, 2]",
         "backend[0]: expected a table, got an integer"},
        {"server as value", with_backend("server = 1"),
         "server: expected a table ([server]), got an integer"},
        {"server as array of tables", with_backend("[[server]]\nport = 1"),
         "server: expected a table ([server]), got an array"},
        {"auth method unknown", with_backend("[auth]\nmethod = \"kerberos\""),
         "auth.method: unknown value \"kerberos\", expected one of: trust, password, md5, "
         "scram-sha-256"},
        {"auth method underscore", with_backend("[auth]\nmethod = \"scram_sha_256\""),
         "auth.method: unknown value \"scram_sha_256\""},
        {"auth backend_password integer", with_backend("[auth]\nbackend_password = 1"),
         "auth.backend_password: expected a string, got an integer"},
        {"auth typo", with_backend("[auth]\nmethods = \"md5\""), "auth.methods: unknown key"},
        {"user without name", with_backend("[[user]]\npassword = \"x\""),
         "user[0].name: required key is missing"},
        {"user empty name", with_backend("[[user]]\nname = \"\""),
         "user[0].name: must not be empty"},
        {"user duplicate", with_backend("[[user]]\nname = \"a\"\n[[user]]\nname = \"a\""),
         "user[1].name: duplicate user \"a\""},
        {"user password integer", with_backend("[[user]]\nname = \"a\"\npassword = 123"),
         "user[0].password: expected a string, got an integer"},
        {"user as single table", with_backend("[user]\nname = \"a\""),
         "user: expected an array of tables ([[user]]), got a table"},
        {"top-level key", with_backend("port = 9999"), "pgpilot.toml:1:1: port: unknown key"},
        {"future table", with_backend("[memory_cache]\nenabled = true"),
         "memory_cache: unknown table"},
        {"nested unknown table", with_backend("[pool.extra]\nx = 1"), "pool.extra: unknown table"},
        {"pool override typo", with_backend("[[pool.override]]\ndatabase = \"r\"\npoolsize = 5"),
         "pgpilot.toml:3:1: pool.override[0].poolsize: unknown key"},
        {"pool override bad mode", with_backend("[[pool.override]]\npool_mode = \"statement\""),
         "pool.override[0].pool_mode: unknown value \"statement\""},
        {"pool override size 0", with_backend("[[pool.override]]\npool_size = 0"),
         "pool.override[0].pool_size: "},
        {"pool override as table", with_backend("[pool.override]\npool_size = 1"),
         "pool.override: expected an array of tables ([[pool.override]]), got a table"},
        {"pool_size 0", with_backend("[pool]\npool_size = 0"), "pool.pool_size: "},
        {"query_wait_timeout negative", with_backend("[pool]\nquery_wait_timeout = -1"),
         "pool.query_wait_timeout: "},
        {"syntax: unterminated string", "[server]\nunix_socket_dir = \"/tmp\n", "pgpilot.toml:2:"},
        {"syntax: bad header", "[server\nport = 1\n", "syntax error: "},
        {"syntax: duplicate table", with_backend("[pool]\n[pool]"), "syntax error: "},
    };
    REQUIRE(cases.size() >= 20);
    for (const auto& c : cases) {
        INFO(c.what);
        INFO(c.text);
        const auto r = load_string(c.text, "pgpilot.toml");
        INFO(joined(r.errors));
        CHECK_FALSE(r);
        bool found = false;
        for (const auto& e : r.errors) {
            CHECK_THAT(e, Catch::StartsWith("pgpilot.toml:"));
            if (e.find(c.expected) != std::string::npos) found = true;
        }
        CHECK(found);
    }
}

TEST_CASE("reserved_connections must leave some client slots", "[config]") {
    auto r = pgpilot::config::load_string(
        "[pool]\nmax_client_connections = 10\nreserved_connections = 10\n"
        "[[backend]]\nhost = \"h\"\n",
        "t.toml");
    REQUIRE_FALSE(r);
    REQUIRE(r.errors.size() == 1);
    REQUIRE(r.errors[0] ==
            "t.toml:3:24: pool.reserved_connections: must be less than "
            "pool.max_client_connections (10), got 10");
    auto ok = pgpilot::config::load_string(
        "[pool]\nmax_client_connections = 50\nreserved_connections = 5\n[[backend]]\nhost = "
        "\"h\"\n",
        "t.toml");
    REQUIRE(ok);
    REQUIRE(ok.value->pool.max_client_connections == 50);
    REQUIRE(ok.value->pool.reserved_connections == 5);
}

TEST_CASE("control characters from the file are escaped in messages", "[config]") {
    // A hostile file must not be able to print extra lines (forged log lines) or terminal
    // escape sequences through the keys and values that messages quote.
    const auto line_ok = [](const std::string& e) {
        INFO(e);
        for (const char c : e) {
            const auto u = static_cast<unsigned char>(c);
            CHECK((u >= 0x20 && u != 0x7f));
        }
    };

    SECTION("a quoted key with a newline stays on one line") {
        const auto errors = errors_of(std::string(R"("a\nb" = 1)") + "\n" + one_backend);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0] == R"(pgpilot.toml:1:1: a\nb: unknown key)");
        line_ok(errors[0]);
    }
    SECTION("a value that forges a log line") {
        const auto errors = errors_of(
            std::string("[server]\nlog_level = "
                        R"("info\n2026-01-01 00:00:00.000 UTC ERROR forged\r\u001b[2K")") +
            "\n" + one_backend);
        REQUIRE(errors.size() == 1);
        CHECK(
            errors[0] ==
            R"(pgpilot.toml:2:13: server.log_level: unknown value "info\n2026-01-01 00:00:00.000 )"
            R"(UTC ERROR forged\r\x1b[2K", expected one of: debug, info, warning, error)");
        line_ok(errors[0]);
    }
    SECTION("tab, DEL, other C0 and C1 controls; other UTF-8 and backslashes as they are") {
        const auto errors = errors_of(
            std::string("[pool]\n") +
            R"("k\t\u007f\u0000\u0007\u0085\u009b\u00a0\u00e9\u2028\\n" = 1)" + "\n" + one_backend);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0] ==
              "pgpilot.toml:2:1: pool.k\\t\\x7f\\x00\\x07\\u0085\\u009b"
              "\u00a0\u00e9\u2028\\n: unknown key");
        line_ok(errors[0]);
    }
    SECTION("duplicate [[user]] names and address lists") {
        const auto errors =
            errors_of(std::string("[server]\nlisten_addresses = \"a\\u001bb c\"\n") +
                      "[[user]]\nname = \"x\\ny\"\n[[user]]\nname = \"x\\ny\"\n" + one_backend);
        REQUIRE(errors.size() == 2);
        CHECK(errors[0] ==
              R"(pgpilot.toml:2:20: server.listen_addresses: invalid address "a\x1bb c")");
        CHECK(errors[1] ==
              R"(pgpilot.toml:6:8: user[1].name: duplicate user "x\ny" (first defined at line 4))");
        for (const auto& e : errors)
            line_ok(e);
    }
}

TEST_CASE("the admin endpoint's port must differ from the client port", "[config]") {
    const auto errors =
        errors_of(std::string("[server]\nport = 6432\n[admin]\nport = 6432\n") + one_backend);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "pgpilot.toml:4:8: admin.port: must differ from server.port (6432)");
    const auto defaults =
        errors_of(std::string("[admin]\nport = 9999\nlisten_addresses = \"a b\"\n") + one_backend);
    REQUIRE(defaults.size() == 2);
    CHECK(defaults[0] == "pgpilot.toml:2:8: admin.port: must differ from server.port (9999)");
    CHECK(defaults[1] == R"(pgpilot.toml:3:20: admin.listen_addresses: invalid address "a b")");
}
