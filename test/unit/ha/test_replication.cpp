// The replication check's answers, the walsender matching and primary_conninfo handling.
#include <catch2/catch.hpp>

#include "ha/replication.hpp"

using namespace pgpilot;
using namespace pgpilot::ha;

namespace {

std::optional<std::string> t(const char* s) {
    return std::string(s);
}
const std::optional<std::string> null;

text_row node_row(const char* in_recovery, const char* lsn, std::optional<std::string> receive,
                  std::optional<std::string> conninfo, std::optional<std::string> cluster_name) {
    return {t("node"), t(in_recovery), t(lsn), receive, conninfo, cluster_name, null};
}

text_row walsender(const char* name, const char* addr, const char* state, const char* sync,
                   std::optional<std::string> lag, std::optional<std::string> lsn) {
    return {t("walsender"), t(name), t(addr), t(state), t(sync), lag, lsn};
}

}  // namespace

TEST_CASE("a DataRow body becomes text columns with NULLs", "[ha]") {
    // 3 columns: "ab", NULL, "".
    const unsigned char raw[] = {0, 3, 0, 0, 0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    auto row =
        parse_data_row(protocol::byte_view(reinterpret_cast<const std::byte*>(raw), sizeof raw));
    REQUIRE(row);
    REQUIRE(row->size() == 3);
    CHECK((*row)[0] == "ab");
    CHECK_FALSE((*row)[1].has_value());
    CHECK((*row)[2] == "");

    const unsigned char truncated[] = {0, 2, 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 5, 'x'};
    CHECK_FALSE(parse_data_row(
        protocol::byte_view(reinterpret_cast<const std::byte*>(truncated), sizeof truncated)));
    const unsigned char extra[] = {0, 1, 0, 0, 0, 1, 'a', 'z'};
    CHECK_FALSE(parse_data_row(
        protocol::byte_view(reinterpret_cast<const std::byte*>(extra), sizeof extra)));
    const unsigned char empty[] = {0, 0};
    auto none = parse_data_row(protocol::byte_view(reinterpret_cast<const std::byte*>(empty), 2));
    REQUIRE(none);
    CHECK(none->empty());
}

TEST_CASE("a primary's answer: its WAL position and its standbys", "[ha]") {
    std::vector<text_row> rows = {
        node_row("false", "0/3000148", null, null, t("")),
        walsender("standby1", "127.0.0.1", "streaming", "async", null, t("0/3000148")),
        walsender("standby2", "127.0.0.1", "streaming", "sync", t("0.001234"), t("0/3000060")),
    };
    std::string error;
    auto s = parse_replication_sample(rows, error);
    REQUIRE(s);
    CHECK_FALSE(s->in_recovery);
    CHECK(s->wal_lsn == 0x3000148);
    CHECK_FALSE(s->receive_lsn);
    CHECK(s->application_name.empty());
    REQUIRE(s->walsenders.size() == 2);
    CHECK(s->walsenders[0].application_name == "standby1");
    CHECK(s->walsenders[0].replay_lag == 0);
    CHECK(s->walsenders[1].sync_state == "sync");
    CHECK(s->walsenders[1].replay_lag == Approx(0.001234));
    CHECK(s->walsenders[1].replay_lsn == 0x3000060);
}

TEST_CASE("a standby's answer: replay position and the name it streams under", "[ha]") {
    std::string error;
    auto s = parse_replication_sample(
        {node_row("true", "0/5000000", t("0/5000100"),
                  t("user=postgres passfile=/x channel_binding=prefer dbname=replication "
                    "host=127.0.0.1 port=5432 application_name=standby2 "
                    "fallback_application_name=walreceiver sslmode=prefer"),
                  t(""))},
        error);
    REQUIRE(s);
    CHECK(s->in_recovery);
    CHECK(s->wal_lsn == 0x5000000);
    CHECK(s->receive_lsn == 0x5000100);
    CHECK(s->application_name == "standby2");

    // No application_name: the WAL receiver's fallback name, then cluster_name.
    s = parse_replication_sample(
        {node_row("true", "0/1", null, t("host=a fallback_application_name=main"), t(""))}, error);
    REQUIRE(s);
    CHECK(s->application_name == "main");
    s = parse_replication_sample({node_row("true", "0/1", null, t("host=a"), t("c1"))}, error);
    REQUIRE(s);
    CHECK(s->application_name == "c1");
    s = parse_replication_sample({node_row("true", "0/1", null, t("host=a"), t(""))}, error);
    REQUIRE(s);
    CHECK(s->application_name == "walreceiver");
    // Not streaming (yet): no name to learn.
    s = parse_replication_sample({node_row("true", "0/1", null, null, t(""))}, error);
    REQUIRE(s);
    CHECK(s->application_name.empty());
}

TEST_CASE("answers that make no sense are rejected with a reason", "[ha]") {
    std::string error;
    CHECK_FALSE(parse_replication_sample({}, error));
    CHECK(error == "no row about the node");
    CHECK_FALSE(parse_replication_sample({node_row("false", "nonsense", null, null, null)}, error));
    CHECK(error.find("nonsense") != std::string::npos);
    CHECK_FALSE(parse_replication_sample({{t("node"), t("false")}}, error));
    CHECK_FALSE(parse_replication_sample(
        {node_row("false", "0/1", null, null, null), node_row("false", "0/1", null, null, null)},
        error));
    CHECK_FALSE(
        parse_replication_sample({{t("other"), null, null, null, null, null, null}}, error));
}

TEST_CASE("a standby is found among the primary's walsenders by name, then address", "[ha]") {
    std::vector<walsender_row> rows(4);
    rows[0].application_name = "standby1";
    rows[0].client_addr = "10.0.0.1";
    rows[1].application_name = "walreceiver";
    rows[1].client_addr = "10.0.0.2";
    rows[2].application_name = "walreceiver";
    rows[2].client_addr = "10.0.0.3";
    rows[3].application_name = "pg_basebackup";
    rows[3].client_addr = "10.0.0.3";
    CHECK(match_walsender(rows, "standby1", "anything") == 0u);
    CHECK(match_walsender(rows, "walreceiver", "10.0.0.3") == 2u);
    CHECK_FALSE(match_walsender(rows, "walreceiver", "10.0.0.9"));
    CHECK_FALSE(match_walsender(rows, "standby9", "10.0.0.1"));
    CHECK(match_walsender(rows, "", "10.0.0.2") == 1u);
    CHECK_FALSE(match_walsender(rows, "", "10.0.0.3"));  // two rows from that address
    CHECK_FALSE(match_walsender(rows, "", ""));
}

TEST_CASE("primary_conninfo parses like libpq and is rewritten for a new primary", "[ha]") {
    auto c = parse_conninfo(
        "host=10.0.0.1 port = 5432 user=repl password='it''s' application_name='my standby' "
        "options='-c x=\\'y\\''");
    // libpq has no '' escape inside quotes: 'it' then 's' would be a syntax error. Use \'.
    CHECK_FALSE(c);
    c = parse_conninfo(
        "host=10.0.0.1 port = 5432 user=repl password='it\\'s' application_name='my standby' "
        "hostaddr=10.0.0.1");
    REQUIRE(c);
    CHECK(conninfo_value(*c, "host") == "10.0.0.1");
    CHECK(conninfo_value(*c, "port") == "5432");
    CHECK(conninfo_value(*c, "password") == "it's");
    CHECK(conninfo_value(*c, "application_name") == "my standby");
    CHECK_FALSE(conninfo_value(*c, "sslmode"));

    set_conninfo_value(*c, "host", "10.0.0.2");
    set_conninfo_value(*c, "port", "5433");
    set_conninfo_value(*c, "hostaddr", std::nullopt);
    const std::string text = format_conninfo(*c);
    CHECK(text ==
          "host='10.0.0.2' port='5433' user='repl' password='it\\'s' "
          "application_name='my standby'");
    auto again = parse_conninfo(text);
    REQUIRE(again);
    CHECK(*again == *c);

    set_conninfo_value(*c, "sslmode", "disable");
    CHECK(conninfo_value(*c, "sslmode") == "disable");
    CHECK(parse_conninfo("")->empty());
    CHECK_FALSE(parse_conninfo("postgresql://u@h:5432/db"));
    CHECK_FALSE(parse_conninfo("host"));
    CHECK_FALSE(parse_conninfo("host='unterminated"));
    CHECK_FALSE(parse_conninfo("=x"));
}

TEST_CASE("SQL literals survive any standard_conforming_strings", "[ha]") {
    CHECK(sql_literal("plain") == "E'plain'");
    CHECK(sql_literal("it's a \\ path") == "E'it''s a \\\\ path'");
}
