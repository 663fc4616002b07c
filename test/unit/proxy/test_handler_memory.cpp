#include <catch2/catch.hpp>

#include <boost/asio.hpp>

#include <memory>
#include <set>

#include "proxy/handler_memory.hpp"

using namespace pgpilot::proxy;
namespace net = boost::asio;

TEST_CASE("block_pool recycles its blocks and hands larger requests to the heap", "[memory]") {
    block_pool pool;
    void* a = pool.allocate(100);
    void* b = pool.allocate(block_pool::block_size);
    REQUIRE(a != b);
    REQUIRE(pool.in_use() == 2);
    pool.deallocate(a, 100);
    REQUIRE(pool.allocate(64) == a);  // the block just given back
    std::set<void*> seen;
    for (int i = 0; i < 1000; ++i)  // more than one chunk
        REQUIRE(seen.insert(pool.allocate(block_pool::block_size)).second);
    REQUIRE(pool.in_use() == 1002);
    void* big = pool.allocate(block_pool::block_size + 1);
    REQUIRE(pool.in_use() == 1002);
    pool.deallocate(big, block_pool::block_size + 1);
}

TEST_CASE("a parked session's wait for its client fits a block", "[memory]") {
    // The same shape as session::park(): async_wait on a stream socket, a handler holding a
    // shared_ptr, bound to the pool's allocator. If the operation outgrew block_size it would
    // silently come from the general heap again.
    net::io_context ctx;
    block_pool pool;
    net::local::stream_protocol::socket a(ctx), b(ctx);
    net::local::connect_pair(a, b);
    auto owner = std::make_shared<int>(0);
    bool woke = false;
    a.async_wait(
        net::socket_base::wait_read,
        net::bind_allocator(pool.get_allocator(), [owner, &woke](const auto&) { woke = true; }));
    REQUIRE(pool.in_use() == 1);
    net::write(b, net::buffer("x", 1));
    ctx.run();
    REQUIRE(woke);
    REQUIRE(pool.in_use() == 0);

    net::steady_timer t(ctx, std::chrono::milliseconds(1));
    t.async_wait(net::bind_allocator(pool.get_allocator(), [owner](const auto&) {}));
    REQUIRE(pool.in_use() == 1);
    ctx.restart();
    ctx.run();
    REQUIRE(pool.in_use() == 0);
}
