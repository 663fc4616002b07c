// pgpool.conf -> pgpilot.toml (pgpilot --import-pgpool): what each setting becomes.

#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "config/config.hpp"
#include "config/pgpool_import.hpp"

using namespace pgpilot::config;

namespace {

/// Files beside /etc/pgpool-II/pgpool.conf that the import may read.
struct files {
    std::map<std::string, std::string> by_path;
    file_reader reader() const {
        return [this](const std::string& path) -> std::optional<std::string> {
            auto it = by_path.find(path);
            if (it == by_path.end()) return std::nullopt;
            return it->second;
        };
    }
};

const std::string source = "/etc/pgpool-II/pgpool.conf";

pgpool_import import_ok(const std::string& text, const files& f = {}) {
    auto r = import_pgpool_conf(text, source, f.reader());
    INFO(text);
    for (const auto& e : r.errors)
        UNSCOPED_INFO(e);
    REQUIRE(r);
    return r;
}

settings load(const pgpool_import& r) {
    auto loaded = load_string(r.toml, "imported.toml");
    INFO(r.toml);
    REQUIRE(loaded);
    return *loaded.value;
}

bool has_note(const pgpool_import& r, const std::string& text) {
    for (const auto& n : r.notes)
        if (n.find(text) != std::string::npos) return true;
    return false;
}

std::vector<std::string> import_errors(const std::string& text, const files& f = {}) {
    auto r = import_pgpool_conf(text, source, f.reader());
    INFO(text);
    REQUIRE_FALSE(r);
    CHECK(r.toml.empty());
    return r.errors;
}

// From a write-up of a PolarDB cluster behind pgpool-II 4.5 (seeds: read/write splitting with
// SCRAM): quoted ports, joined flags, no failover.
const std::string polardb = R"(
listen_addresses = '0.0.0.0'
port = 9999
unix_socket_directories = '/tmp'
pcp_listen_addresses = 'localhost'
pcp_port = 9898
log_destination = 'stderr'
logging_collector = on
pid_file_name = '/var/run/pgpool/pgpool.pid'

backend_clustering_mode = 'streaming_replication'
load_balance_mode = on
sr_check_period = 0
health_check_period = 0
failover_on_backend_shutdown=off
failover_on_backend_error=off

backend_hostname0 = '172.17.0.2'
backend_port0 = '5432'
backend_weight0 = 1
backend_application_name0 = 'polardb_primray'
backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'

backend_hostname1 = '172.17.0.3'
backend_port1 = '5432'
backend_weight1 = 2
backend_application_name1 = 'polardb_replica1'
backend_flag1 = 'DISALLOW_TO_FAILOVER'

backend_hostname2 = '172.17.0.4'
backend_port2 = '5432'
backend_weight2 = 2
backend_application_name2 = 'polardb_standby1'
backend_flag2 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = off
allow_clear_text_frontend_auth = true
pool_passwd = ''
)";

}  // namespace

TEST_CASE("a streaming-replication pgpool.conf becomes an equivalent pgpilot.toml", "[import]") {
    const auto r = import_ok(polardb);
    const auto s = load(r);
    CHECK(s.server.listen_addresses == std::vector<std::string>{"0.0.0.0"});
    CHECK(s.server.port == 9999);
    CHECK(s.server.unix_socket_dir == "/tmp");
    CHECK(s.load_balance.enabled);
    CHECK(s.replication_check.period == 0);
    CHECK(s.health_check.period == 0);
    CHECK_FALSE(s.failover.on_backend_shutdown);
    CHECK_FALSE(s.failover.on_backend_error);
    REQUIRE(s.backends.size() == 3);
    CHECK(s.backends[0].host == "172.17.0.2");
    CHECK(s.backends[0].port == 5432);
    CHECK(s.backends[0].flag == backend_flag::always_primary);
    CHECK(s.backends[0].application_name == "polardb_primray");
    CHECK(s.backends[1].weight == 2);
    CHECK(s.backends[2].flag == backend_flag::disallow_to_failover);
    // pgpool-II promotes nothing without failover_command: neither does the import.
    CHECK_FALSE(s.failover.builtin_promote);
    CHECK_FALSE(s.failover.builtin_follow);
    CHECK(has_note(r, "no failover_command: [failover] builtin_promote = false"));
    // No pool_passwd: every client is let in; the note says so.
    CHECK(s.auth.method == auth_method::trust);
    CHECK(s.users.empty());
    CHECK(has_note(r, "pool_passwd = '': no password file; [auth] method stays \"trust\""));
    // What is dropped is named, with its line.
    CHECK(has_note(r, "/etc/pgpool-II/pgpool.conf:6: pcp_port: not imported: pgpilot has no PCP"));
    CHECK(has_note(r, ":7: log_destination: not imported: pgpilot logs to stderr"));
    CHECK(has_note(r, ":9: pid_file_name: not needed by pgpilot"));
    CHECK(has_note(r, ":22: backend_flag0: carried over as ALWAYS_PRIMARY"));
    // The notes are in the file too, as comments.
    CHECK(r.toml.find("#   /etc/pgpool-II/pgpool.conf:6: pcp_port:") != std::string::npos);
}

TEST_CASE("pool sizes: num_init_children and max_pool become pgpilot's budgets", "[import]") {
    SECTION("both set") {
        const auto r =
            import_ok("num_init_children = 120\nmax_pool = 4\nbackend_hostname0 = 'db'\n");
        const auto s = load(r);
        CHECK(s.pool.max_client_connections == 120);
        CHECK(s.pool.pool_size == 120);
        CHECK(s.pool.max_pool == 4);
        CHECK(s.pool.max_backend_connections == 480);
        CHECK(has_note(r, ":1: num_init_children: carried over as [pool] max_client_connections"));
    }
    SECTION("max_pool alone: pgpool-II's 32 processes") {
        const auto s = load(import_ok("max_pool = 2\nbackend_hostname0 = 'db'\n"));
        CHECK(s.pool.max_client_connections == 10000);  // pgpilot's default stays
        CHECK(s.pool.max_backend_connections == 64);
    }
    SECTION("connection_cache = off keeps no idle connection") {
        const auto s = load(import_ok("connection_cache = off\nbackend_hostname0 = 'db'\n"));
        CHECK(s.pool.max_pool == 0);
    }
}

TEST_CASE("units and names that differ are converted", "[import]") {
    const auto r = import_ok(R"(
connect_timeout = 10000
health_check_timeout = 20
health_check_max_retries = 3
health_check_retry_delay = 1
log_min_messages = debug1
backend_hostname0 = 'db0'
connect_timeout0 = 500
health_check_period0 = 2
backend_hostname1 = 'db1'
failover_command = '/etc/pgpool-II/failover.sh %d %h %p %D %m %H %M %P %r %R'
follow_master_command = '/etc/pgpool-II/follow.sh %d'
write_function_list = 'nextval, setval'
read_only_function_list = 'pg_.*'
disable_load_balance_on_write = 'trans_transaction'
statement_level_load_balance = on
delay_threshold = 10000000
)");
    const auto s = load(r);
    CHECK(s.health_check.connect_timeout == 10);
    CHECK(has_note(r, ":2: connect_timeout: 10000 ms, carried over in seconds: 10"));
    CHECK(s.health_check.timeout == 20);
    CHECK(s.health_check.max_retries == 3);
    CHECK(s.server.log == log_level::debug);
    REQUIRE(s.backends.size() == 2);
    CHECK(s.backends[0].health_check.connect_timeout == 0.5);
    CHECK(s.backends[0].health_check.period == 2);
    CHECK_FALSE(s.backends[1].health_check.period);
    CHECK(s.failover.command == "/etc/pgpool-II/failover.sh %d %h %p %D %m %H %M %P %r %R");
    CHECK(s.failover.follow_primary_command == "/etc/pgpool-II/follow.sh %d");
    CHECK(s.failover.builtin_promote);  // a command is configured: the setting does not matter
    CHECK(s.load_balance.write_functions == std::vector<std::string>{"nextval", "setval"});
    CHECK(s.load_balance.read_only_functions == std::vector<std::string>{"pg_.*"});
    CHECK(has_note(r, "read_only_function_list: pgpool-II reads these as regular expressions"));
    CHECK(s.load_balance.on_write == lb_on_write::trans_transaction);
    CHECK(s.load_balance.statement_level);
    CHECK(s.load_balance.delay_threshold == 10000000);
}

TEST_CASE("pool_passwd becomes [[user]] entries and the auth method", "[import]") {
    files f;
    f.by_path["/etc/pgpool-II/pool_passwd"] =
        "alice:SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\n"
        "repl:TEXTr3pl pass\n"
        "\n"
        "secret:AESabcdef==\n"
        "broken line\n";
    SECTION("SCRAM and plain text: scram-sha-256") {
        const auto r = import_ok(
            "backend_hostname0 = 'db'\nsr_check_user = 'repl'\n"
            "sr_check_password = ''\nhealth_check_user = 'repl'\n",
            f);
        const auto s = load(r);
        REQUIRE(s.users.size() == 2);
        CHECK(s.users[0].name == "alice");
        CHECK(s.users[0].password == "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy");
        CHECK(s.users[1].name == "repl");
        CHECK(s.users[1].password == "r3pl pass");
        CHECK(s.auth.method == auth_method::scram_sha_256);
        // An empty check password is looked up in pool_passwd, as pgpool-II does.
        CHECK(s.replication_check.password == "r3pl pass");
        CHECK(s.health_check.password == "r3pl pass");
        CHECK(has_note(r,
                       "pool_passwd:4: user \"secret\": AES-encrypted passwords (pgpool-II's "
                       "pgpoolkey) are not supported; store it as TEXT, md5 or "
                       "SCRAM-SHA-256; skipped"));
        CHECK(has_note(r, "pool_passwd:5: expected \"user:password\"; skipped"));
        CHECK(has_note(r, "2 users imported as [[user]]; [auth] method = \"scram-sha-256\""));
    }
    SECTION("an md5 secret among them: md5 (which still runs SCRAM for SCRAM secrets)") {
        f.by_path["/etc/pgpool-II/pool_passwd"] += "bob:md5d9f5e1d0aa4bd8b2ce6c8ab4f6b1e5a2\n";
        const auto s = load(import_ok("backend_hostname0 = 'db'\n", f));
        CHECK(s.users.size() == 3);
        CHECK(s.auth.method == auth_method::md5);
    }
    SECTION("a pool_passwd path of its own, relative to pgpool.conf") {
        f.by_path["/etc/pgpool-II/auth/users"] = "carol:TEXTc\n";
        const auto s = load(import_ok("pool_passwd = 'auth/users'\nbackend_hostname0 = 'db'\n", f));
        REQUIRE(s.users.size() == 1);
        CHECK(s.users[0].name == "carol");
    }
    SECTION("a pool_passwd that cannot be read is named") {
        const auto r = import_ok("pool_passwd = '/nope'\nbackend_hostname0 = 'db'\n", f);
        CHECK(load(r).users.empty());
        CHECK(has_note(r, "/nope: cannot be read; [auth] method stays \"trust\""));
    }
}

TEST_CASE("enable_pool_hba: pool_hba.conf becomes [auth] hba_file", "[import]") {
    files f;
    f.by_path["/etc/pgpool-II/pool_passwd"] = "alice:TEXTsecret\n";
    const std::string conf = "backend_hostname0 = 'db'\nenable_pool_hba = on\n";
    SECTION("a file pgpilot can take whole") {
        f.by_path["/etc/pgpool-II/pool_hba.conf"] =
            "local all all trust\nhost all alice 10.0.0.0/8 md5\n";
        const auto r = import_ok(conf, f);
        CHECK(r.toml.find("hba_file = '/etc/pgpool-II/pool_hba.conf'") != std::string::npos);
        CHECK(r.toml.find("method") == std::string::npos);
        CHECK(has_note(r, "pool_passwd: 1 users imported as [[user]]"));
    }
    SECTION("a line pgpilot cannot take: [auth] method instead, and the line named") {
        f.by_path["/etc/pgpool-II/pool_hba.conf"] = "local all all trust\nhost all all all pam\n";
        const auto r = import_ok(conf, f);
        CHECK(r.toml.find("hba_file") == std::string::npos);
        CHECK(r.toml.find("method = 'scram-sha-256'") != std::string::npos);
        CHECK(has_note(r,
                       ":2: enable_pool_hba: /etc/pgpool-II/pool_hba.conf is not carried over, "
                       "[auth] method applies to every client instead: "
                       "/etc/pgpool-II/pool_hba.conf:2: authentication method \"pam\""));
    }
    SECTION("no pool_hba.conf") {
        const auto r = import_ok(conf, f);
        CHECK(has_note(r, ":2: enable_pool_hba: cannot read /etc/pgpool-II/pool_hba.conf"));
    }
}

TEST_CASE("the configuration file syntax of PostgreSQL", "[import]") {
    const auto r = import_ok(
        "# comment\n"
        "  PORT 6432   # no '=' and an upper-case name\r\n"
        "failover_command = '/bin/echo it''s \\'%d\\''  # quotes doubled and escaped\n"
        "backend_hostname0='db' \n"
        "sr_check_period = 10\n"
        "sr_check_period = 0   # the last one counts\n"
        "wd_hostname = 'pg1' # \xe7\x9c\x8b\xe9\x97\xa8\xe7\x8b\x97\n");
    const auto s = load(r);
    CHECK(s.server.port == 6432);
    CHECK(s.failover.command == "/bin/echo it's '%d'");
    CHECK(s.replication_check.period == 0);
    CHECK(has_note(r, ":5: sr_check_period: set again on line 6; that value is the one used"));
    CHECK(has_note(r, ":7: wd_hostname: not imported: pgpilot has no watchdog yet"));
}

TEST_CASE("what cannot be imported is an error naming file and line", "[import]") {
    auto one = [](const std::string& text) {
        const auto errors = import_errors(text);
        REQUIRE(errors.size() == 1);
        return errors[0];
    };
    CHECK(one("backend_hostname0 = 'db'\nport = = 5\n") ==
          "/etc/pgpool-II/pgpool.conf:2: no value for \"port\"");
    CHECK(one("backend_hostname0 = 'db'\nfailover_command = 'unterminated\n") ==
          "/etc/pgpool-II/pgpool.conf:2: unterminated quoted string");
    CHECK(one("backend_hostname0 = 'db'\nload_balance_mode = maybe\n") ==
          "/etc/pgpool-II/pgpool.conf:2: load_balance_mode: expected on or off, got \"maybe\"");
    CHECK(one("backend_hostname0 = 'db'\nbackend_port0 = 'x'\n") ==
          "/etc/pgpool-II/pgpool.conf:2: backend_port0: expected a number, got \"x\"");
    CHECK(one("backend_hostname0 = 'db'\nbackend_hostname2 = 'db2'\n") ==
          "/etc/pgpool-II/pgpool.conf:2: backend 2 has settings but there is no backend 1: "
          "pgpilot numbers backends 0, 1, 2, ... in order");
    CHECK(one("backend_hostname0 = 'db'\nbackend_port1 = 5433\n") ==
          "/etc/pgpool-II/pgpool.conf:2: backend_hostname1 is missing");
    CHECK(one("port = 5432\n") ==
          "/etc/pgpool-II/pgpool.conf: no backend_hostname0: nothing to "
          "connect to");
    CHECK(one("backend_hostname0 = 'db'\nbackend_clustering_mode = 'native_replication'\n") ==
          "/etc/pgpool-II/pgpool.conf:2: backend_clustering_mode: pgpilot serves streaming "
          "replication only, not \"native_replication\"");
    // Found by fuzz_pgpool_import: a number beyond an int64 was converted to one.
    CHECK(one("backend_hostname0 = 'db'\nport = 99933333333333333333333333\n") ==
          "/etc/pgpool-II/pgpool.conf:2: port: 99933333333333333333333333 is out of range");
    const auto sizes =
        import_errors("backend_hostname0 = 'db'\nnum_init_children = 1000000000000000\n");
    REQUIRE(sizes.size() == 3);
    for (const auto& e : sizes)
        CHECK(e.starts_with("/etc/pgpool-II/pgpool.conf:2: num_init_children: must be "));
    // Found by fuzz_pgpool_import: text that is not UTF-8 cannot go into a TOML file.
    CHECK(one("backend_hostname0 = 'db'\nfailover_command = 'a\x85"
              "b'\n") ==
          "/etc/pgpool-II/pgpool.conf:2: failover_command: not valid UTF-8: \"a\\x85b\"");
    {
        files f;
        f.by_path["/etc/pgpool-II/pool_hba.conf"] =
            "hos\x85"
            "t all all all trust\n";
        const auto r = import_ok("backend_hostname0 = 'db'\nenable_pool_hba = on\n", f);
        CHECK(r.toml.find("invalid connection type \"hos\\x85t\"") != std::string::npos);
        CHECK(load_string(r.toml, "imported.toml"));
    }
    // What pgpilot itself rejects, said of the line it came from.
    CHECK(one("backend_hostname0 = 'db'\nport = 70000\n") ==
          "/etc/pgpool-II/pgpool.conf:2: port: must be between 1 and 65535, got 70000 (as "
          "server.port)");
    CHECK(one("backend_hostname0 = 'db'\nbackend_weight0 = -1\n") ==
          "/etc/pgpool-II/pgpool.conf:2: backend_weight0: must be at least 0, got -1 (as "
          "backend[0].weight)");
}
