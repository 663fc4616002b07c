#include <catch2/catch.hpp>

#include <set>
#include <thread>

#include "proxy/cancel_map.hpp"

using namespace pgpilot;
using namespace pgpilot::proxy;

TEST_CASE("cancel keys resolve only with the right pid and key", "[cancel]") {
    cancel_map m;
    auto [pid, key] = m.allocate();
    REQUIRE(pid != 0);
    // Allocated but not attached to a backend yet: nothing to cancel.
    REQUIRE_FALSE(m.find(pid, key).has_value());
    m.set(pid, key, cancel_target{{"127.0.0.1", 5432}, 4242, 99});
    auto t = m.find(pid, key);
    REQUIRE(t.has_value());
    REQUIRE(t->pid == 4242);
    REQUIRE(t->key == 99);
    REQUIRE(t->address.port == 5432);
    REQUIRE_FALSE(m.find(pid, key + 1).has_value());
    REQUIRE_FALSE(m.find(pid + 1, key).has_value());
    m.release(pid);
    REQUIRE_FALSE(m.find(pid, key).has_value());
}

TEST_CASE("cancel pids are unique across threads", "[cancel]") {
    cancel_map m;
    std::vector<std::vector<std::uint32_t>> got(4);
    std::vector<std::thread> threads;
    for (auto& g : got)
        threads.emplace_back([&m, &g] {
            for (int i = 0; i < 2000; ++i)
                g.push_back(m.allocate().first);
        });
    for (auto& t : threads)
        t.join();
    std::set<std::uint32_t> all;
    for (auto& g : got)
        all.insert(g.begin(), g.end());
    REQUIRE(all.size() == 8000);
    REQUIRE(all.count(0) == 0);
}

TEST_CASE("cancel keys are not predictable from one another", "[cancel]") {
    cancel_map m;
    std::set<std::uint32_t> keys;
    for (int i = 0; i < 100; ++i)
        keys.insert(m.allocate().second);
    REQUIRE(keys.size() > 95);
}
