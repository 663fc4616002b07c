// backend_pool's hand-over between worker threads, with two event loops driven by hand and
// socket pairs standing in for server connections (the pool never reads them when it hands a
// connection over; the integration tests run it against PostgreSQL).
#include <catch2/catch.hpp>

#include <boost/asio.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "proxy/pool.hpp"

using namespace pgpilot;
using namespace pgpilot::proxy;
namespace net = boost::asio;

namespace {

const std::string key = "0|user:postgres";

/// The same request for every client (acquire() keeps a reference to it while it waits).
const pool_request& request() {
    static const pool_request r = [] {
        pool_request r;
        r.node = 0;
        r.user = "postgres";
        r.database = "postgres";
        r.key = key;
        r.pool_size = 1;
        return r;
    }();
    return r;
}

/// One socket pair: the pool gets one end as a "server connection", the other end is kept
/// open so that the connection does not look closed.
struct fake_server {
    int peer = -1;
    std::unique_ptr<ha::backend_connection> conn;
    explicit fake_server(net::io_context& io) {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
        peer = fds[1];
        conn = std::make_unique<ha::backend_connection>(io.get_executor());
        conn->socket.assign(net::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]);
    }
    ~fake_server() { ::close(peer); }
};

/// acquire() run on `io`; the lease lands in `out` once the event loop has run it.
void start_acquire(backend_pool& pool, net::io_context& io,
                   std::optional<backend_pool::lease>& out) {
    net::co_spawn(io, pool.acquire(request()), [&out](std::exception_ptr e, auto lease) {
        if (e) std::rethrow_exception(e);
        out = std::move(lease);
    });
}

void run_both(net::io_context& a, net::io_context& b) {
    for (int i = 0; i < 3; ++i) {
        a.restart();
        a.poll();
        b.restart();
        b.poll();
    }
}

}  // namespace

TEST_CASE("a connection given back goes to the longest waiter, preferring its own worker",
          "[pool]") {
    net::io_context worker_a{1}, worker_b{1};
    backend_pool pool(1, backend_pool::limits{});

    // The pool's only connection, opened by a client of worker A.
    std::optional<backend_pool::lease> first;
    start_acquire(pool, worker_a, first);
    run_both(worker_a, worker_b);
    REQUIRE(first);
    REQUIRE(first->result == backend_pool::lease::outcome::may_connect);
    fake_server server(worker_a);
    backend_pool::adopt(*server.conn, std::move(first->permit));

    // B's client waits first, A's a quarter of the preference window after it.
    constexpr auto window = backend_pool::same_worker_preference;
    std::optional<backend_pool::lease> on_b, on_a;
    start_acquire(pool, worker_b, on_b);
    run_both(worker_a, worker_b);
    std::this_thread::sleep_for(window / 4);
    start_acquire(pool, worker_a, on_a);
    run_both(worker_a, worker_b);
    REQUIRE_FALSE(on_b);
    REQUIRE_FALSE(on_a);
    auto rows = pool.stats();
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].waiting == 2);
    CHECK(rows[0].open == 1);

    // Given back on A: A's waiter came within the preference window, so it is served and the
    // connection stays on A's event loop.
    pool.put(key, std::move(server.conn), 1);
    run_both(worker_a, worker_b);
    REQUIRE(on_a);
    REQUIRE(on_a->result == backend_pool::lease::outcome::idle);
    CHECK(on_a->conn->socket.get_executor() == worker_a.get_executor());
    REQUIRE_FALSE(on_b);

    // Given back on A again: B's client is the only waiter; the connection moves to B.
    pool.put(key, std::move(on_a->conn), 1);
    run_both(worker_a, worker_b);
    REQUIRE(on_b);
    REQUIRE(on_b->result == backend_pool::lease::outcome::idle);
    CHECK(on_b->conn->socket.get_executor() == worker_b.get_executor());
    CHECK(on_b->conn->socket.is_open());

    // Given back with nobody waiting: kept idle; a client of A takes it (it moves to A).
    pool.put(key, std::move(on_b->conn), 1);
    CHECK(pool.idle_count() == 1);
    std::optional<backend_pool::lease> holder;
    start_acquire(pool, worker_a, holder);
    run_both(worker_a, worker_b);
    REQUIRE(holder);
    REQUIRE(holder->result == backend_pool::lease::outcome::idle);
    CHECK(holder->conn->socket.get_executor() == worker_a.get_executor());

    // Nobody is overtaken by a client that came more than the window after it: B's client
    // waits, A's comes three windows later; given back on A, the connection goes to B's.
    std::optional<backend_pool::lease> later_b, later_a;
    start_acquire(pool, worker_b, later_b);
    run_both(worker_a, worker_b);
    std::this_thread::sleep_for(3 * window);
    start_acquire(pool, worker_a, later_a);
    run_both(worker_a, worker_b);
    REQUIRE_FALSE(later_b);
    REQUIRE_FALSE(later_a);
    pool.put(key, std::move(holder->conn), 1);
    run_both(worker_a, worker_b);
    REQUIRE(later_b);
    REQUIRE_FALSE(later_a);
    CHECK(later_b->conn->socket.get_executor() == worker_b.get_executor());

    // And from B to A's client, the last one waiting.
    pool.put(key, std::move(later_b->conn), 1);
    run_both(worker_a, worker_b);
    REQUIRE(later_a);
    CHECK(later_a->conn->socket.get_executor() == worker_a.get_executor());
    pool.put(key, std::move(later_a->conn), 1);
    rows = pool.stats();
    CHECK(rows[0].waiting == 0);
    CHECK(rows[0].idle == 1);
    pool.clear();
}

TEST_CASE("pool keys depend on node and every startup parameter, not their order", "[pool]") {
    ha::startup_params a{{"user", "alice"}, {"database", "db"}, {"application_name", "x"}};
    ha::startup_params b{{"application_name", "x"}, {"database", "db"}, {"user", "alice"}};
    ha::startup_params c{{"user", "alice"}, {"database", "db"}, {"application_name", "y"}};
    ha::startup_params d{{"user", "alice"}, {"database", "db"}};
    REQUIRE(pool_key(0, a) == pool_key(0, b));
    REQUIRE(pool_key(0, a) != pool_key(1, a));
    REQUIRE(pool_key(0, a) != pool_key(0, c));
    REQUIRE(pool_key(0, a) != pool_key(0, d));
    // A value containing '=' or the separator cannot make two different sets collide.
    ha::startup_params e{{"user", "a"}, {"options", "b=c"}};
    ha::startup_params f{{"user", "a"}, {"options=b", "c"}};
    REQUIRE(pool_key(0, e) != pool_key(0, f));
}
