#include <catch2/catch.hpp>

#include <vector>

#include "proxy/client_slots.hpp"

using pgpilot::proxy::client_slots;
namespace net = boost::asio;

namespace {
/// Starts an acquire on `ctx` and records its outcome in `out` when it completes.
void start_acquire(net::io_context& ctx, client_slots& slots, std::vector<int>& order, int id,
                   std::vector<client_slots::outcome>& out) {
    net::co_spawn(
        ctx,
        [&, id]() -> net::awaitable<void> {
            auto r = co_await slots.acquire();
            out[std::size_t(id)] = r;
            order.push_back(id);
        },
        net::detached);
}
}  // namespace

TEST_CASE("client slots queue beyond the limit, first come first served", "[slots]") {
    net::io_context ctx;
    client_slots slots(2, 0);
    std::vector<int> order;
    std::vector<client_slots::outcome> out(5, client_slots::outcome::cancelled);
    for (int i = 0; i < 5; ++i)
        start_acquire(ctx, slots, order, i, out);
    ctx.poll();  // run what is ready; waiters stay parked on their timers
    ctx.restart();
    REQUIRE(order == std::vector<int>{0, 1});
    REQUIRE(slots.in_use() == 2);
    REQUIRE(slots.waiting() == 3);
    slots.release();  // goes to client 2, the longest waiter
    ctx.poll();       // run what is ready; waiters stay parked on their timers
    ctx.restart();
    REQUIRE(order == std::vector<int>{0, 1, 2});
    REQUIRE(out[2] == client_slots::outcome::granted);
    slots.release();
    slots.release();
    ctx.poll();  // run what is ready; waiters stay parked on their timers
    ctx.restart();
    REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4});
    REQUIRE(slots.in_use() == 2);
    REQUIRE(slots.waiting() == 0);
    slots.release();
    slots.release();
    REQUIRE(slots.in_use() == 0);
}

TEST_CASE("reserved slots refuse instead of queueing", "[slots]") {
    net::io_context ctx;
    client_slots slots(5, 2);  // 3 clients served, the 4th refused
    std::vector<int> order;
    std::vector<client_slots::outcome> out(4, client_slots::outcome::cancelled);
    for (int i = 0; i < 4; ++i)
        start_acquire(ctx, slots, order, i, out);
    ctx.poll();
    REQUIRE(out[0] == client_slots::outcome::granted);
    REQUIRE(out[2] == client_slots::outcome::granted);
    REQUIRE(out[3] == client_slots::outcome::refused);
    REQUIRE(slots.in_use() == 3);
    REQUIRE(slots.waiting() == 0);
}
