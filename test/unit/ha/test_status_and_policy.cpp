// The status file (pgpool_status format) and the failover decisions.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "ha/failover_policy.hpp"
#include "ha/status_file.hpp"

using namespace pgpilot;
using namespace pgpilot::ha;

TEST_CASE("the status file has one line per node, down or up", "[ha][status]") {
    std::vector<router::node_state> nodes(4);
    nodes[0].status = router::node_status::up;
    nodes[1].status = router::node_status::down;
    nodes[2].status = router::node_status::waiting;
    nodes[3].status = router::node_status::quarantine;
    CHECK(format_status_file(nodes) == "up\ndown\nup\nup\n");
}

TEST_CASE("the status file is read as pgpool-II writes it", "[ha][status]") {
    std::string error;
    auto down = parse_status_file("up\ndown\nunused\n", 3, error);
    REQUIRE(down);
    CHECK(*down == std::vector<bool>{false, true, false});
    // Blank lines, spaces and CRLF are tolerated; no final newline is fine.
    down = parse_status_file("\n up \r\n\ndown", 2, error);
    REQUIRE(down);
    CHECK(*down == std::vector<bool>{false, true});
}

TEST_CASE("a status file for another cluster is rejected", "[ha][status]") {
    std::string error;
    CHECK_FALSE(parse_status_file("up\ndown\n", 3, error));
    CHECK(error == "it describes 2 nodes, the configuration has 3");
    CHECK_FALSE(parse_status_file("up\nsideways\n", 2, error));
    CHECK(error == "line 2 is \"sideways\", not up, down or unused");
}

TEST_CASE("the status file is replaced atomically and read back", "[ha][status]") {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("pgpilot-status-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "pgpilot_status").string();
    std::string error;
    CHECK_FALSE(read_status_file(path, error));
    CHECK(error.empty());  // no file yet is not an error
    REQUIRE(write_status_file(path, "up\ndown\n", error));
    auto text = read_status_file(path, error);
    REQUIRE(text);
    CHECK(*text == "up\ndown\n");
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    CHECK_FALSE(write_status_file((dir / "no" / "such" / "dir").string(), "up\n", error));
    CHECK_FALSE(error.empty());
    std::filesystem::remove_all(dir);
}

TEST_CASE("the standby with the most WAL is promoted, ties to the lowest id", "[ha][failover]") {
    CHECK_FALSE(choose_promotion({}));
    CHECK(choose_promotion({{2, 100}}) == 2);
    CHECK(choose_promotion({{1, 100}, {2, 300}, {3, 200}}) == 2);
    CHECK(choose_promotion({{3, 300}, {1, 300}, {2, 100}}) == 1);
}

TEST_CASE("of two primaries, the old timeline is the false one", "[ha][failover]") {
    // An old primary that came back keeps its timeline; the promoted standby started a new one.
    primary_claim old_primary{0, false, 1, 0, false};
    primary_claim promoted{1, false, 2, 1, true};
    CHECK(false_primary(old_primary, promoted) == 0);
    CHECK(false_primary(promoted, old_primary) == 0);
    // Even when the old one is the one pgpilot was using (someone promoted a standby).
    old_primary.current = true;
    promoted.current = false;
    CHECK(false_primary(old_primary, promoted) == 0);
    // Same timeline: the one standbys stream from, then the current one, then the lower id.
    primary_claim a{0, false, 3, 2, false}, b{1, false, 3, 0, true};
    CHECK(false_primary(a, b) == 1);
    b.walsenders = 2;
    CHECK(false_primary(a, b) == 0);
    b.current = false;
    CHECK(false_primary(a, b) == 1);
    // ALWAYS_PRIMARY wins over everything.
    a.always_primary = true;
    a.timeline = 1;
    CHECK(false_primary(a, b) == 1);
}
