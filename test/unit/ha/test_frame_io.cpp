#include <catch2/catch.hpp>

#include <boost/asio.hpp>
#include <boost/version.hpp>

#include <sys/socket.h>

#include <array>
#include <string_view>

#include "ha/frame_io.hpp"

using namespace pgpilot;

namespace {

/// A connected pair of stream sockets on `ctx`, as generic sockets like pgpilot's.
struct socket_pair {
    explicit socket_pair(net::io_context& ctx) : a(ctx), b(ctx) {
        net::local::stream_protocol::socket x(ctx), y(ctx);
        net::local::connect_pair(x, y);
        a.assign(net::generic::stream_protocol(AF_UNIX, SOCK_STREAM), x.release());
        b.assign(net::generic::stream_protocol(AF_UNIX, SOCK_STREAM), y.release());
    }
    stream a, b;
};

void send_text(stream& s, std::string_view text) {
    REQUIRE(net::write(s, net::buffer(text.data(), text.size())) == text.size());
}

/// Reads once from `s` asynchronously, as the relay does, and runs `ctx` until the read is
/// done; then tells the reactor the socket is empty when the read was short.
std::string read_once(net::io_context& ctx, stream& s) {
    std::array<char, 64> buf{};
    std::string got;
    bool done = false;
    s.async_read_some(net::buffer(buf), [&](error_code ec, std::size_t n) {
        REQUIRE(!ec);
        got.assign(buf.data(), n);
        if (n < buf.size()) expect_empty(s);
        done = true;
    });
    ctx.restart();
    while (!done)
        ctx.run_one();
    return got;
}

}  // namespace

TEST_CASE("a read after expect_empty() waits for data and gets it", "[frame_io]") {
    net::io_context ctx;
    socket_pair p(ctx);
    send_text(p.b, "first");
    REQUIRE(read_once(ctx, p.a) == "first");

    // Data that arrives after the short read but before the next read starts.
    send_text(p.b, "second");
    REQUIRE(read_once(ctx, p.a) == "second");

    // A read that starts first and data that comes later.
    std::array<char, 64> buf{};
    std::size_t got = 0;
    p.a.async_read_some(net::buffer(buf), [&](error_code ec, std::size_t n) {
        REQUIRE(!ec);
        got = n;
    });
    ctx.restart();
    ctx.poll();
    REQUIRE(got == 0);
    send_text(p.b, "third");
    ctx.run_one();
    REQUIRE(std::string_view(buf.data(), got) == "third");
}

TEST_CASE("known_empty() holds until the peer sends or closes", "[frame_io]") {
    net::io_context ctx;
    socket_pair p(ctx);
    REQUIRE_FALSE(known_empty(p.a));  // nothing read yet: unknown
    send_text(p.b, "hello");
    REQUIRE(read_once(ctx, p.a) == "hello");
#if BOOST_VERSION == 108100
    // Only from the thread running the socket's event loop.
    bool inside = false;
    net::post(ctx, [&] { inside = known_empty(p.a); });
    ctx.restart();
    ctx.run();
    REQUIRE(inside);
#endif
    REQUIRE_FALSE(known_empty(p.a));  // not from outside the loop

    auto ask = [&] {
        ctx.restart();
        {
            // The reactor takes in the socket's event (poll() runs it only while there is
            // work, as in pgpilot's workers, which always have some).
            auto work = net::make_work_guard(ctx);
            ctx.poll();
        }
        bool empty = true;
        net::post(ctx, [&] { empty = known_empty(p.a); });
        ctx.restart();
        ctx.run();
        return empty;
    };
    SECTION("data") {
        send_text(p.b, "more");
        REQUIRE_FALSE(ask());
    }
    SECTION("close") {
        p.b.close();
        REQUIRE_FALSE(ask());
    }
}
