#include "ha/registry.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "ha/log.hpp"
#include "protocol/messages.hpp"

namespace pgpilot::ha {

namespace {

using namespace net::experimental::awaitable_operators;
using std::chrono::steady_clock;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(std::int64_t(seconds * 1000));
}

struct probe_result {
    router::node_status status = router::node_status::down;
    router::node_role role = router::node_role::unknown;
    std::string detail;
};

startup_params login_params(const probe_login& login) {
    return {{"user", login.user},
            {"database", login.database},
            {"application_name", login.application_name}};
}

std::optional<std::string> login_password(const probe_login& login) {
    if (login.password.empty()) return std::nullopt;
    return login.password;
}

net::awaitable<probe_result> probe(const node_address& address, const probe_login& login) {
    probe_result r;
    auto c = co_await connect_backend(address, login_params(login), login_password(login),
                                      login.connect_timeout);
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

void log_exception(const char* what, std::exception_ptr e) {
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        log::error("{} failed: {}", what, ex.what());
    }
}

}  // namespace

/// What the registry keeps per node besides its published node_state.
struct node_registry::node_runtime {
    explicit node_runtime(net::io_context& ctx) : replication_timer(ctx) {}

    // Replication check.
    net::steady_timer replication_timer;
    bool replication_wake = false;     ///< a check was requested: run one as soon as possible
    bool replication_waiting = false;  ///< the loop waits on replication_timer
    std::unique_ptr<backend_connection> replication_conn;
    bool replication_failing = false;  ///< the last check failed (logged once)
    steady_clock::time_point replication_retry_at{};
    /// The name this standby's WAL receiver gives the primary: [[backend]] application_name,
    /// else what the node reported.
    std::string configured_application_name;
    std::string application_name;
};

node_registry::node_registry(net::io_context& ctx, const config::settings& settings) : ctx_(ctx) {
    detect_login_.connect_timeout = to_ms(settings.pool.connect_timeout);
    detect_login_.password = settings.auth.backend_password;

    const auto& sr = settings.replication_check;
    replication_login_.user = sr.user;
    replication_login_.password =
        sr.password.empty() ? settings.auth.backend_password : sr.password;
    replication_login_.database = sr.database;
    replication_login_.application_name = "pgpilot replication check";
    replication_login_.connect_timeout = to_ms(settings.pool.connect_timeout);
    replication_period_ = to_ms(sr.period);
    check_timeout_ = std::chrono::seconds(5);

    for (std::size_t i = 0; i < settings.backends.size(); ++i) {
        const auto& b = settings.backends[i];
        router::node_state n;
        n.id = int(i);
        n.host = b.host;
        n.port = b.port;
        n.weight = b.weight;
        nodes_.push_back(n);
        auto rt = std::make_unique<node_runtime>(ctx_);
        rt->configured_application_name = b.application_name;
        runtime_.push_back(std::move(rt));
    }
    watch_timer_ = std::make_unique<net::steady_timer>(ctx_);
    publish();
}

node_registry::~node_registry() = default;

node_address node_registry::address(int id) const {
    auto s = snapshot();
    const auto& n = s->nodes.at(std::size_t(id));
    return {n.host, n.port};
}

void node_registry::publish() {
    auto next = std::make_shared<router::cluster_snapshot>();
    next->version = ++version_;
    next->nodes = nodes_;
    snapshot_.store(std::move(next), std::memory_order_release);
}

void node_registry::spawn(net::awaitable<void> task, const char* what) {
    net::co_spawn(ctx_, std::move(task), [what](std::exception_ptr e) { log_exception(what, e); });
}

net::awaitable<void> node_registry::detect() {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        const node_address address{nodes_[i].host, nodes_[i].port};
        auto r = co_await probe(address, detect_login_);
        auto& n = nodes_[i];  // still the same node: nodes_ never changes size
        if (r.status != n.status || r.role != n.role) {
            if (r.status == router::node_status::up)
                log::info("node {} ({}:{}) is up, role {}", n.id, n.host, n.port,
                          router::to_string(r.role));
            else
                log::warning("node {} ({}:{}) is down: {}", n.id, n.host, n.port, r.detail);
            n.last_status_change = std::chrono::system_clock::now();
            n.status_reason = r.status == router::node_status::up ? "answered" : r.detail;
        }
        n.status = r.status;
        // A node that is down keeps its last known role for display, but routing only uses
        // up nodes.
        if (r.status == router::node_status::up) n.role = r.role;
        publish();
    }
}

net::awaitable<void> node_registry::detect_loop() {
    do {
        again_ = false;
        co_await detect();
    } while (again_ && !stopping_);
    detecting_ = false;
}

void node_registry::request_detect() {
    net::post(ctx_, [this] {
        if (stopping_) return;
        if (detecting_) {
            again_ = true;
            return;
        }
        detecting_ = true;
        spawn(detect_loop(), "node detection");
    });
}

void node_registry::start() {
    net::post(ctx_, [this] {
        if (stopping_) return;
        spawn(watch_for_primary(), "primary search");
        for (std::size_t i = 0; i < runtime_.size(); ++i)
            spawn(replication_loop(int(i)), "replication check");
    });
}

void node_registry::stop() {
    net::post(ctx_, [this] {
        stopping_ = true;
        watch_timer_->cancel();
        for (auto& rt : runtime_) {
            rt->replication_timer.cancel();
            if (rt->replication_conn) {
                error_code ignored;
                rt->replication_conn->socket.close(ignored);
            }
        }
    });
}

net::awaitable<void> node_registry::watch_for_primary() {
    while (!stopping_) {
        watch_timer_->expires_after(std::chrono::seconds(1));
        co_await watch_timer_->async_wait(use_tuple);
        if (stopping_) co_return;
        if (!router::route_to_primary(*snapshot()).node) request_detect();
    }
}

// ---------------------------------------------------------------------------------------------
// Replication check

void node_registry::request_replication_check() {
    // Many sessions may ask at once: one post carries all the requests made until it runs.
    if (replication_requested_.exchange(true, std::memory_order_acq_rel)) return;
    net::post(ctx_, [this] {
        replication_requested_.store(false, std::memory_order_release);
        for (auto& rt : runtime_) {
            rt->replication_wake = true;
            if (rt->replication_waiting) rt->replication_timer.cancel();
        }
    });
}

net::awaitable<void> node_registry::replication_loop(int id) {
    auto& rt = *runtime_[std::size_t(id)];
    auto last_start = steady_clock::time_point::min();
    while (!stopping_) {
        const auto now = steady_clock::now();
        auto due = steady_clock::time_point::max();
        if (rt.replication_wake)
            due = now;
        else if (replication_period_.count() > 0)
            due = last_start == steady_clock::time_point::min() ? now
                                                                : last_start + replication_period_;
        due = std::max(due, rt.replication_retry_at);
        if (due > now) {
            // Woken early (a request, or stop) or on time: either way decide again.
            rt.replication_timer.expires_at(due);
            rt.replication_waiting = true;
            co_await rt.replication_timer.async_wait(use_tuple);
            rt.replication_waiting = false;
            continue;
        }
        rt.replication_wake = false;
        last_start = now;
        co_await check_replication(id);
    }
    rt.replication_conn.reset();
}

net::awaitable<void> node_registry::check_replication(int id) {
    auto& rt = *runtime_[std::size_t(id)];
    if (nodes_[std::size_t(id)].status != router::node_status::up) {
        // Only up nodes are checked; a node that comes back gets a new connection.
        rt.replication_conn.reset();
        rt.replication_failing = false;
        co_return;
    }
    if (!rt.replication_conn) {
        const auto& n = nodes_[std::size_t(id)];
        const node_address address{n.host, n.port};
        auto c = co_await connect_backend(address, login_params(replication_login_),
                                          login_password(replication_login_),
                                          replication_login_.connect_timeout);
        if (stopping_) co_return;
        if (!c.conn) {
            replication_failed(id, c.failure.message);
            co_return;
        }
        rt.replication_conn = std::move(c.conn);
    }
    net::steady_timer timeout(ctx_, check_timeout_);
    auto r = co_await (query_rows(*rt.replication_conn, replication_check_sql) ||
                       timeout.async_wait(use_tuple));
    if (stopping_) co_return;
    if (r.index() == 1) {
        replication_failed(id,
                           "no answer within " + std::to_string(check_timeout_.count()) + " ms");
        co_return;
    }
    auto& q = std::get<0>(r);
    if (q.io || q.error) {
        replication_failed(id, q.io ? "lost connection: " + q.io.message() : *q.error);
        co_return;
    }
    std::string error;
    auto sample = parse_replication_sample(q.rows, error);
    if (!sample) {
        replication_failed(id, "unexpected answer: " + error);
        co_return;
    }
    if (rt.replication_failing) {
        log::info("node {}: replication check works again", id);
        rt.replication_failing = false;
    }
    apply_replication(id, *sample);
}

void node_registry::replication_failed(int id, const std::string& why) {
    auto& rt = *runtime_[std::size_t(id)];
    rt.replication_conn.reset();
    // A node that does not answer is not asked again at once, whoever requests it.
    rt.replication_retry_at =
        steady_clock::now() + std::max(replication_period_, std::chrono::milliseconds(500));
    if (!rt.replication_failing) {
        log::warning("node {}: replication check failed: {}", id, why);
        rt.replication_failing = true;
    }
    // The node may be down: look now rather than at the next health check.
    request_detect();
}

void node_registry::apply_replication(int id, const replication_sample& s) {
    auto& n = nodes_[std::size_t(id)];
    auto& rt = *runtime_[std::size_t(id)];
    const bool moved = n.wal_lsn != s.wal_lsn;
    n.wal_lsn = s.wal_lsn;
    n.lsn_checked = steady_clock::now();
    if (s.in_recovery && !s.application_name.empty()) rt.application_name = s.application_name;
    const bool says_primary = !s.in_recovery;
    if ((n.role == router::node_role::primary) != says_primary) {
        log::info("node {} now says it is {}: detecting roles again", id,
                  says_primary ? "a primary" : "in recovery");
        request_detect();
    }

    if (n.role == router::node_role::primary && says_primary) {
        // The primary's pg_stat_replication says how each standby streams.
        for (std::size_t j = 0; j < nodes_.size(); ++j) {
            if (int(j) == id) continue;
            auto& standby = nodes_[j];
            const auto& srt = *runtime_[j];
            const std::string& name = srt.configured_application_name.empty()
                                          ? srt.application_name
                                          : srt.configured_application_name;
            std::string state, sync;
            double lag = 0;
            if (auto k = match_walsender(s.walsenders, name, standby.host)) {
                state = s.walsenders[*k].state;
                sync = s.walsenders[*k].sync_state;
                lag = s.walsenders[*k].replay_lag;
            }
            if (state != standby.replication_state || sync != standby.replication_sync_state) {
                log::info("node {}: replication state \"{}\" -> \"{}\" (sync state \"{}\")", j,
                          standby.replication_state, state, sync);
            }
            standby.replication_state = std::move(state);
            standby.replication_sync_state = std::move(sync);
            standby.lag_seconds = lag;
        }
    }

    // Lag in bytes: how far each standby's replay is behind the primary's last known position.
    const router::node_state* primary = nullptr;
    for (const auto& m : nodes_)
        if (m.role == router::node_role::primary && m.status == router::node_status::up) {
            primary = &m;
            break;
        }
    for (auto& m : nodes_) {
        if (&m == primary) {
            m.lag_bytes = 0;
        } else if (primary && primary->lsn_checked != steady_clock::time_point{} &&
                   m.lsn_checked != steady_clock::time_point{}) {
            m.lag_bytes = primary->wal_lsn > m.wal_lsn ? primary->wal_lsn - m.wal_lsn : 0;
        }
    }
    if (moved)
        log::debug("node {}: wal_lsn {}, lag {} bytes", id, router::format_lsn(n.wal_lsn),
                   n.lag_bytes);
    publish();
}

}  // namespace pgpilot::ha
