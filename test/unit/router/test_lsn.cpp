#include <catch2/catch.hpp>

#include "router/cluster.hpp"

using namespace pgpilot::router;

TEST_CASE("pg_lsn text parses into a 64-bit WAL position", "[router][lsn]") {
    CHECK(parse_lsn("0/0") == 0u);
    CHECK(parse_lsn("0/3000060") == 0x3000060u);
    CHECK(parse_lsn("16/B374D848") == 0x16B374D848u);
    CHECK(parse_lsn("16/b374d848") == 0x16B374D848u);
    CHECK(parse_lsn("FFFFFFFF/FFFFFFFF") == 0xFFFFFFFFFFFFFFFFu);
    CHECK(parse_lsn("1/0") == 0x100000000u);
    CHECK(parse_lsn("00000001/00000002") == 0x100000002u);
}

TEST_CASE("malformed pg_lsn text is rejected", "[router][lsn]") {
    for (const char* bad : {"", "/", "0/", "/0", "0", "0/0/0", "G/0", "0/G", "123456789/0",
                            "0/123456789", " 0/0", "0/0 ", "-1/0", "0x1/0", "1 /0"}) {
        INFO(bad);
        CHECK_FALSE(parse_lsn(bad).has_value());
    }
}

TEST_CASE("WAL positions print as PostgreSQL prints pg_lsn", "[router][lsn]") {
    CHECK(format_lsn(0) == "0/0");
    CHECK(format_lsn(0x3000060) == "0/3000060");
    CHECK(format_lsn(0x16B374D848) == "16/B374D848");
    for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{0xFFFFFFFF},
                            std::uint64_t{0x100000000}, ~std::uint64_t{0}})
        CHECK(parse_lsn(format_lsn(v)) == v);
}

TEST_CASE("node statuses have pgpool's names", "[router]") {
    CHECK(std::string(to_string(node_status::waiting)) == "waiting");
    CHECK(std::string(to_string(node_status::up)) == "up");
    CHECK(std::string(to_string(node_status::down)) == "down");
    CHECK(std::string(to_string(node_status::quarantine)) == "quarantine");
}
