// [auth] hba_file (pg_hba.conf / pool_hba.conf rules, parsed and matched) and [auth]
// passwd_file (pool_passwd).

#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"
#include "config/hba.hpp"

using namespace pgpilot::config;

namespace {

client_origin ip(const char* text) {
    client_origin o;
    if (inet_pton(AF_INET, text, o.address.data()) != 1) {
        REQUIRE(inet_pton(AF_INET6, text, o.address.data()) == 1);
        o.ipv6 = true;
    }
    return o;
}

client_origin local() {
    client_origin o;
    o.local = true;
    return o;
}

/// The line of the rule that matches, 0 for none; -line for a reject rule.
int decide(const hba_parse& p, const client_origin& from, const char* db, const char* user) {
    const auto* r = match_hba(p.rules, from, db, user);
    if (!r) return 0;
    return r->method ? r->line : -r->line;
}

}  // namespace

TEST_CASE("hba rules: the first matching line decides", "[hba]") {
    const auto p =
        parse_hba(R"(# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             postgres                                trust
host    reports         all             10.0.0.0/8              md5
host    sameuser        all             192.168.1.0 255.255.255.0   scram-sha-256
host    all             "Mixed Case",bob 127.0.0.1/32           password
host    all             all             127.0.0.1/32            reject
host    all             all             ::1/128                 trust
hostssl all             all             all                     trust
host    all             all             0.0.0.0/0               scram-sha-256  # the rest
)",
                  "pool_hba.conf");
    REQUIRE(p.errors.empty());
    REQUIRE(p.rules.size() == 8);
    CHECK(decide(p, local(), "postgres", "postgres") == 2);
    CHECK(decide(p, local(), "postgres", "alice") == 0);  // no local line for her
    CHECK(decide(p, ip("10.1.2.3"), "reports", "alice") == 3);
    CHECK(p.rules[1].method == auth_method::md5);
    CHECK(decide(p, ip("192.168.1.77"), "alice", "alice") == 4);  // sameuser
    CHECK(decide(p, ip("192.168.1.77"), "shop", "alice") == 9);
    CHECK(decide(p, ip("192.168.2.77"), "alice", "alice") == 9);  // outside the mask
    CHECK(decide(p, ip("127.0.0.1"), "shop", "Mixed Case") == 5);
    CHECK(decide(p, ip("127.0.0.1"), "shop", "bob") == 5);
    CHECK(decide(p, ip("127.0.0.1"), "shop", "mixed case") == -6);  // reject
    CHECK(decide(p, ip("::1"), "shop", "alice") == 7);
    CHECK(decide(p, ip("::2"), "shop", "alice") == 0);  // hostssl never matches: no TLS
    CHECK(p.rules[3].users == std::vector<std::string>{"Mixed Case", "bob"});
}

TEST_CASE("hba lines pgpilot cannot honour are errors naming file and line", "[hba]") {
    const auto p = parse_hba(R"(host all all 127.0.0.1/32 trust
hots all all 127.0.0.1/32 trust
host all all 127.0.0.1/33 trust
host all all db.example.com trust
host all +admins 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
host all all 127.0.0.1/32 pam
host all all 127.0.0.1/32 md5 clientcert=verify-full
local all all
host all all samenet trust
local "all all trust
)",
                             "/etc/pool_hba.conf");
    CHECK(p.rules.size() == 1);
    REQUIRE(p.errors.size() == 10);
    CHECK(p.errors[0] ==
          "/etc/pool_hba.conf:2: invalid connection type \"hots\" (local, host, "
          "hostssl, hostnossl)");
    CHECK(p.errors[1] == "/etc/pool_hba.conf:3: invalid CIDR mask in address \"127.0.0.1/33\"");
    CHECK(p.errors[2] ==
          "/etc/pool_hba.conf:4: invalid IP address \"db.example.com\" (pgpilot "
          "does not resolve host names)");
    CHECK(p.errors[3] ==
          "/etc/pool_hba.conf:5: user \"+admins\": groups and files are not supported by pgpilot");
    CHECK(p.errors[4] ==
          "/etc/pool_hba.conf:6: database \"replication\" is not supported by pgpilot");
    CHECK(p.errors[5] ==
          "/etc/pool_hba.conf:7: authentication method \"pam\" is not supported by "
          "pgpilot (trust, reject, password, md5, scram-sha-256)");
    CHECK(p.errors[6] ==
          "/etc/pool_hba.conf:8: authentication options (\"clientcert=verify-full\") "
          "are not supported by pgpilot");
    CHECK(p.errors[7] == "/etc/pool_hba.conf:9: expected: local DATABASE USER METHOD");
    CHECK(p.errors[8] == "/etc/pool_hba.conf:10: address \"samenet\" is not supported by pgpilot");
    CHECK(p.errors[9] == "/etc/pool_hba.conf:11: unterminated quoted string");
}

TEST_CASE("[auth] hba_file is read with the configuration", "[hba]") {
    const auto dir = std::filesystem::temp_directory_path() / "pgpilot-hba-test";
    std::filesystem::create_directories(dir);
    const auto config = (dir / "pgpilot.toml").string();
    {
        std::ofstream(dir / "pool_hba.conf") << "local all all trust\nhost all all all md5\n";
        std::ofstream(dir / "bad_hba.conf") << "host all all all md5\nhost all all all ident\n";
    }
    const std::string backend = "[[backend]]\nhost = \"db\"\n";
    SECTION("relative to the configuration file") {
        const auto r = load_string("[auth]\nhba_file = \"pool_hba.conf\"\n" + backend, config);
        REQUIRE(r);
        REQUIRE(r.value->auth.hba.size() == 2);
        CHECK(r.value->auth.hba[1].method == auth_method::md5);
    }
    SECTION("its errors name it") {
        const auto r = load_string("[auth]\nhba_file = \"bad_hba.conf\"\n" + backend, config);
        REQUIRE_FALSE(r);
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0] == (dir / "bad_hba.conf").string() +
                                 ":2: authentication method \"ident\" is not supported by "
                                 "pgpilot (trust, reject, password, md5, scram-sha-256)");
    }
    SECTION("a missing file") {
        const auto r = load_string("[auth]\nhba_file = \"nope.conf\"\n" + backend, config);
        REQUIRE_FALSE(r);
        CHECK(r.errors[0] == config + ":2:12: auth.hba_file: " + (dir / "nope.conf").string() +
                                 ": cannot open: No such file or directory");
    }
    SECTION("not a device, a FIFO or the like: a read from one may never end") {
        const auto r = load_string("[auth]\nhba_file = \"/dev/zero\"\n" + backend, config);
        REQUIRE_FALSE(r);
        CHECK(r.errors[0] == config + ":2:12: auth.hba_file: /dev/zero: not a regular file");
    }
    SECTION("control characters of the file are escaped in its errors") {
        const auto p = parse_hba("ho\x1b[2Kst all all all trust\n", "h.conf");
        REQUIRE(p.errors.size() == 1);
        CHECK(
            p.errors[0] ==
            "h.conf:1: invalid connection type \"ho\\x1b[2Kst\" (local, host, hostssl, hostnossl)");
    }
    SECTION("not with [auth] method") {
        const auto r = load_string(
            "[auth]\nmethod = \"md5\"\nhba_file = \"pool_hba.conf\"\n" + backend, config);
        REQUIRE_FALSE(r);
        CHECK(r.errors[0] == config +
                                 ":3:12: auth.hba_file: decides the method of every client: "
                                 "remove [auth] method");
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("[auth] passwd_file adds pool_passwd's users", "[hba]") {
    const auto dir = std::filesystem::temp_directory_path() / "pgpilot-passwd-test";
    std::filesystem::create_directories(dir);
    const auto config = (dir / "pgpilot.toml").string();
    const auto passwd = (dir / "pool_passwd").string();
    const std::string head =
        "[auth]\nmethod = \"md5\"\npasswd_file = \"pool_passwd\"\n"
        "[[backend]]\nhost = \"db\"\n";
    auto write = [&](const std::string& text) { std::ofstream(passwd) << text; };
    SECTION("md5, SCRAM, TEXT and plain secrets, after [[user]]") {
        write(
            "alice:md5d9f5e1d0aa4bd8b2ce6c8ab4f6b1e5a2\r\n"
            "bob:SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\n\n"
            "carol:TEXTs3cret:with colon\n"
            "dave:plain\n");
        const auto r = load_string(head + "[[user]]\nname = \"erin\"\npassword = \"x\"\n", config);
        REQUIRE(r);
        const auto& users = r.value->users;
        REQUIRE(users.size() == 5);
        CHECK(users[0].name == "erin");
        CHECK(users[1].password == "md5d9f5e1d0aa4bd8b2ce6c8ab4f6b1e5a2");
        CHECK(users[2].password == "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy");
        CHECK(users[3].password == "s3cret:with colon");
        CHECK(r.value->find_user("dave")->password == "plain");
    }
    SECTION("lines it cannot take name the file and line") {
        write("alice:TEXTa\nno colon here\nsecret:AESxyz==\nalice:TEXTb\nerin:TEXTc\n");
        const auto r = load_string(head + "[[user]]\nname = \"erin\"\n", config);
        REQUIRE_FALSE(r);
        REQUIRE(r.errors.size() == 4);
        CHECK(r.errors[0] == passwd + ":2: expected \"user:password\"");
        CHECK(r.errors[1] == passwd +
                                 ":3: user \"secret\": AES-encrypted passwords (pgpool-II's "
                                 "pgpoolkey) are not supported; store it as TEXT, md5 or "
                                 "SCRAM-SHA-256");
        CHECK(r.errors[2] == passwd + ":4: duplicate user \"alice\"");
        CHECK(r.errors[3] == passwd + ":5: user \"erin\" is also a [[user]] of the configuration");
    }
    std::filesystem::remove_all(dir);
}
