#include "ha/registry.hpp"

#include "ha/log.hpp"
#include "protocol/messages.hpp"

namespace pgpilot::ha {

namespace {

struct probe_result {
    router::node_status status = router::node_status::down;
    router::node_role role = router::node_role::unknown;
    std::string detail;
};

net::awaitable<probe_result> probe(const node_address& address, const probe_credentials& cred) {
    probe_result r;
    startup_params params{
        {"user", cred.user}, {"database", cred.database}, {"application_name", "pgpilot"}};
    std::optional<std::string> password;
    if (!cred.password.empty()) password = cred.password;
    auto c = co_await connect_backend(address, params, password, cred.connect_timeout);
    if (!c.conn) {
        r.detail = c.failure.message;
        co_return r;
    }
    auto q = co_await simple_query(*c.conn, "SELECT pg_is_in_recovery()");
    if (q.io || q.error || !q.value) {
        r.detail = q.io ? q.io.message() : q.error.value_or("no result");
        co_return r;
    }
    r.status = router::node_status::up;
    r.role = *q.value == "f" ? router::node_role::primary : router::node_role::standby;
    std::string bye;
    protocol::append_terminate(bye);
    co_await write_all(c.conn->socket, bye);
    co_return r;
}

}  // namespace

node_registry::node_registry(net::io_context& ctx, std::vector<router::node_state> nodes,
                             probe_credentials credentials)
    : ctx_(ctx), credentials_(std::move(credentials)) {
    publish(std::move(nodes));
}

node_address node_registry::address(int id) const {
    auto s = snapshot();
    const auto& n = s->nodes.at(std::size_t(id));
    return {n.host, n.port};
}

void node_registry::publish(std::vector<router::node_state> nodes) {
    auto next = std::make_shared<router::cluster_snapshot>();
    auto prev = snapshot_.load(std::memory_order_acquire);
    next->version = prev ? prev->version + 1 : 1;
    next->nodes = std::move(nodes);
    snapshot_.store(std::move(next), std::memory_order_release);
}

net::awaitable<void> node_registry::detect() {
    auto current = snapshot();
    std::vector<router::node_state> nodes = current->nodes;
    for (auto& n : nodes) {
        const node_address address{n.host, n.port};
        auto r = co_await probe(address, credentials_);
        if (r.status != n.status || r.role != n.role) {
            if (r.status == router::node_status::up)
                log::info("node {} ({}:{}) is up, role {}", n.id, n.host, n.port,
                          router::to_string(r.role));
            else
                log::warning("node {} ({}:{}) is down: {}", n.id, n.host, n.port, r.detail);
            n.last_status_change = std::chrono::system_clock::now();
        }
        n.status = r.status;
        // A node that is down keeps its last known role for display, but routing only uses
        // up nodes.
        if (r.status == router::node_status::up) n.role = r.role;
    }
    publish(std::move(nodes));
}

net::awaitable<void> node_registry::detect_loop() {
    do {
        again_ = false;
        co_await detect();
    } while (again_);
    detecting_ = false;
}

void node_registry::request_detect() {
    net::post(ctx_, [this] {
        if (detecting_) {
            again_ = true;
            return;
        }
        detecting_ = true;
        net::co_spawn(ctx_, detect_loop(), [](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    log::error("node detection failed: {}", ex.what());
                }
            }
        });
    });
}

net::awaitable<void> node_registry::watch_for_primary(std::chrono::milliseconds period) {
    net::steady_timer timer(ctx_);
    for (;;) {
        timer.expires_after(period);
        auto [ec] = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
        if (ec) co_return;
        if (!router::route_to_primary(*snapshot()).node) request_detect();
    }
}

}  // namespace pgpilot::ha
