// node_registry: node status and the status file, health checks, replication checks.
// Failover and failback are in failover.cpp.
#include "ha/registry_internal.hpp"

#include <boost/asio/experimental/parallel_group.hpp>

#include <algorithm>

#include "ha/failover_policy.hpp"
#include "ha/log.hpp"
#include "ha/status_file.hpp"
#include "protocol/messages.hpp"
#include "protocol/sqlstate.hpp"

namespace pgpilot::ha {

namespace {

/// The health check: whether the node is in recovery, and for a primary the timeline of its
/// WAL (the first 8 hex digits of a WAL file name) and how many walsenders it has, which tell a
/// false primary from the real one. pg_walfile_name() fails during recovery, hence the CASE.
constexpr std::string_view health_sql =
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, "
    "(SELECT count(*) FROM pg_stat_replication)";

void log_exception(const char* what, std::exception_ptr e) {
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        log::error("{} failed: {}", what, ex.what());
    }
}

std::uint32_t timeline_of(const std::optional<std::string>& walfile) {
    if (!walfile || walfile->size() < 8) return 0;
    std::uint32_t tli = 0;
    for (char c : walfile->substr(0, 8)) {
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        tli = tli << 4 | std::uint32_t(d);
    }
    return tli;
}

bool involves_down(router::node_status a, router::node_status b) {
    return a == router::node_status::down || b == router::node_status::down;
}

startup_params login_params(const probe_login& login) {
    return {{"user", login.user},
            {"database", login.database},
            {"application_name", login.application_name}};
}

std::optional<std::string> login_password(const probe_login& login) {
    if (login.password.empty()) return std::nullopt;
    return login.password;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Helpers shared with failover.cpp and control.cpp

net::awaitable<connect_result> connect_for_check(const node_address& address,
                                                 const probe_login& login,
                                                 std::chrono::milliseconds timeout) {
    const auto limit = std::min(login.connect_timeout, timeout);
    const auto params = login_params(login);
    const auto password = login_password(login);
    co_return co_await connect_backend(address, params, password, limit);
}

net::awaitable<rows_outcome> query_within(backend_connection& conn, std::string_view sql,
                                          std::chrono::milliseconds timeout) {
    net::steady_timer timer(co_await net::this_coro::executor, timeout);
    auto r = co_await (query_rows(conn, sql) || timer.async_wait(use_tuple));
    if (r.index() == 0) co_return std::get<0>(std::move(r));
    rows_outcome timed_out;
    timed_out.io = make_error_code(boost::system::errc::timed_out);
    co_return timed_out;
}

net::awaitable<void> say_goodbye(backend_connection& conn) {
    std::string bye;
    protocol::append_terminate(bye);
    co_await write_all(conn.socket, bye);
    error_code ignored;
    conn.socket.close(ignored);
}

// ---------------------------------------------------------------------------------------------
// Construction, snapshots, status

node_registry::node_registry(net::io_context& ctx, const config::settings& settings,
                             registry_options options)
    : ctx_(ctx), failover_(settings.failover) {
    const auto& sr = settings.replication_check;
    replication_login_.user = sr.user;
    replication_login_.password =
        sr.password.empty() ? settings.auth.backend_password : sr.password;
    replication_login_.database = sr.database;
    replication_login_.application_name = "pgpilot replication check";
    replication_login_.connect_timeout =
        seconds_or_unlimited(settings.health_check.connect_timeout);
    replication_period_ = to_ms(sr.period);
    replication_timeout_ = seconds_or_unlimited(settings.health_check.timeout);
    hold_timeout_ = to_ms(failover_.hold_timeout);
    status_file_ = settings.path_from_config(failover_.status_file);

    for (std::size_t i = 0; i < settings.backends.size(); ++i) {
        const auto& b = settings.backends[i];
        router::node_state n;
        n.id = int(i);
        n.host = b.host;
        n.port = b.port;
        n.weight = b.weight;
        n.status_reason = "not checked yet";
        nodes_.push_back(n);

        auto rt = std::make_unique<node_runtime>(ctx_);
        rt->flag = b.flag;
        rt->health = settings.health_check_for(i);
        rt->health_login.user = rt->health.user;
        rt->health_login.password =
            rt->health.password.empty() ? settings.auth.backend_password : rt->health.password;
        rt->health_login.database = rt->health.database;
        rt->health_login.application_name = "pgpilot health check";
        rt->health_login.connect_timeout = seconds_or_unlimited(rt->health.connect_timeout);
        rt->health_period = to_ms(rt->health.period);
        rt->health_timeout = seconds_or_unlimited(rt->health.timeout);
        rt->data_directory = b.data_directory;
        rt->configured_application_name = b.application_name;
        if (b.flag == config::backend_flag::always_primary)
            nodes_.back().role = router::node_role::primary;
        runtime_.push_back(std::move(rt));
    }

    if (!status_file_.empty()) {
        if (options.discard_status_file) {
            log::info("ignoring status file {} (-D): every node is probed afresh", status_file_);
        } else {
            std::string error;
            auto text = read_status_file(status_file_, error);
            std::optional<std::vector<bool>> down;
            if (text) down = parse_status_file(*text, nodes_.size(), error);
            if (!error.empty()) {
                log::warning("ignoring status file {}: {}", status_file_, error);
            } else if (down) {
                for (std::size_t i = 0; i < nodes_.size(); ++i) {
                    if (!(*down)[i]) continue;
                    nodes_[i].status = router::node_status::down;
                    nodes_[i].status_reason = "down in status file " + status_file_;
                    nodes_[i].last_status_change = std::chrono::system_clock::now();
                    log::warning(
                        "node {} ({}:{}) stays down: so says status file {} (pgpilot -D "
                        "ignores it)",
                        i, nodes_[i].host, nodes_[i].port, status_file_);
                }
            }
            if (text && error.empty()) saved_status_ = *text;
        }
    }
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
    next->failover_in_progress = failover_in_progress_;
    next->failover_started = failover_started_;
    snapshot_.store(std::move(next), std::memory_order_release);
}

void node_registry::set_status(int id, router::node_status status, std::string reason) {
    auto& n = nodes_[std::size_t(id)];
    const auto before = n.status;
    if (before == status && n.status_reason == reason) return;
    if (before != status) {
        const bool bad =
            status == router::node_status::down || status == router::node_status::quarantine;
        auto line = fmt::format("node {} ({}:{}, {}) {} -> {}: {}", id, n.host, n.port,
                                router::to_string(n.role), router::to_string(before),
                                router::to_string(status), reason);
        if (bad)
            log::warning("{}", line);
        else
            log::info("{}", line);
        n.last_status_change = std::chrono::system_clock::now();
    }
    n.status = status;
    n.status_reason = std::move(reason);
    if (involves_down(before, status)) save_status_file();
}

void node_registry::save_status_file() {
    if (status_file_.empty()) return;
    std::string text = format_status_file(nodes_);
    if (text == saved_status_) return;
    std::string error;
    if (write_status_file(status_file_, text, error))
        saved_status_ = std::move(text);
    else
        log::error("cannot write status file: {}", error);
}

int node_registry::current_primary(int except) const {
    for (const auto& n : nodes_)
        if (n.id != except && n.role == router::node_role::primary &&
            n.status == router::node_status::up)
            return n.id;
    return -1;
}

bool node_registry::has_up_standby(int except) const {
    for (const auto& n : nodes_)
        if (n.id != except && n.status == router::node_status::up &&
            n.role == router::node_role::standby)
            return true;
    return false;
}

net::awaitable<connect_result> node_registry::connect_to(int id) {
    const auto& rt = *runtime_[std::size_t(id)];
    const node_address address{nodes_[std::size_t(id)].host, nodes_[std::size_t(id)].port};
    co_return co_await connect_for_check(address, rt.health_login, rt.health_timeout);
}

placeholder_node node_registry::placeholder(int id) const {
    if (id < 0) return {};
    const auto& n = nodes_[std::size_t(id)];
    return {id, n.host, n.port, runtime_[std::size_t(id)]->data_directory};
}

void node_registry::spawn(net::awaitable<void> task, const char* what) {
    net::co_spawn(ctx_, std::move(task), [what](std::exception_ptr e) { log_exception(what, e); });
}

void node_registry::start() {
    net::post(ctx_, [this] {
        if (stopping_) return;
        save_status_file();
        for (std::size_t i = 0; i < runtime_.size(); ++i) {
            spawn(health_loop(int(i)), "health check");
            spawn(replication_loop(int(i)), "replication check");
        }
    });
}

void node_registry::stop() {
    net::post(ctx_, [this] {
        stopping_ = true;
        for (auto& rt : runtime_) {
            rt->health_timer.cancel();
            rt->replication_timer.cancel();
            if (rt->replication_conn) {
                error_code ignored;
                rt->replication_conn->socket.close(ignored);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Health

net::awaitable<std::vector<std::optional<node_registry::probe_result>>>
node_registry::check_at_once(std::vector<int> ids) {
    using op = decltype(net::co_spawn(ctx_, check_health(0, 1), net::deferred));
    std::vector<op> ops;
    for (int id : ids)
        ops.push_back(net::co_spawn(ctx_, check_health(id, 1), net::deferred));
    std::vector<std::optional<probe_result>> out(ids.size());
    if (ops.empty()) co_return out;
    auto [order, errors, results] =
        co_await net::experimental::make_parallel_group(std::move(ops))
            .async_wait(net::experimental::wait_for_all(), net::use_awaitable);
    (void)order;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (errors[i])
            log_exception("health check", errors[i]);
        else
            out[i] = std::move(results[i]);
    }
    co_return out;
}

net::awaitable<void> node_registry::detect() {
    // Every node at once: one that does not answer must not delay finding the others.
    std::vector<int> ids;
    for (const auto& n : nodes_)
        if (n.status != router::node_status::down) ids.push_back(n.id);
    if (ids.empty()) co_return;
    auto results = co_await check_at_once(ids);
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (results[i]) apply_health(ids[i], *results[i]);
    save_status_file();
    publish();
}

void node_registry::request_detect() {
    if (detect_requested_.exchange(true, std::memory_order_acq_rel)) return;
    net::post(ctx_, [this] {
        detect_requested_.store(false, std::memory_order_release);
        if (stopping_) return;
        for (const auto& n : nodes_)
            if (n.status != router::node_status::down) wake_health(n.id, false);
    });
}

void node_registry::report_backend_failure(int node, backend_failure kind, std::string reason) {
    net::post(ctx_, [this, node, kind, reason = std::move(reason)] {
        if (stopping_ || node < 0 || std::size_t(node) >= nodes_.size()) return;
        if (nodes_[std::size_t(node)].status != router::node_status::up) return;
        const bool act = kind == backend_failure::shutdown ? failover_.on_backend_shutdown
                                                           : failover_.on_backend_error;
        if (!act) {
            log::debug(
                "node {}: a session reports: {} (not acted upon: [failover] {} = false)", node,
                reason,
                kind == backend_failure::shutdown ? "on_backend_shutdown" : "on_backend_error");
            return;
        }
        if (runtime_[std::size_t(node)]->health_confirm) return;  // already being checked
        log::info("node {}: a session reports: {}; checking the node now", node, reason);
        wake_health(node, true);
    });
}

void node_registry::wake_health(int id, bool confirm) {
    auto& rt = *runtime_[std::size_t(id)];
    rt.health_wake = true;
    if (confirm) rt.health_confirm = true;
    if (rt.health_waiting) rt.health_timer.cancel();
}

net::awaitable<void> node_registry::health_loop(int id) {
    auto& rt = *runtime_[std::size_t(id)];
    auto last_start = steady_clock::now();  // detect() has just checked every node
    while (!stopping_) {
        const auto now = steady_clock::now();
        auto due = steady_clock::time_point::max();
        if (rt.health_wake)
            due = now;
        else if (rt.health_period.count() > 0)
            due = last_start + rt.health_period;
        if (due > now) {
            // Woken early (a request, or stop) or on time: either way decide again.
            rt.health_timer.expires_at(due);
            rt.health_waiting = true;
            co_await rt.health_timer.async_wait(use_tuple);
            rt.health_waiting = false;
            continue;
        }
        rt.health_wake = false;
        const bool confirm = std::exchange(rt.health_confirm, false);
        last_start = now;
        if (nodes_[std::size_t(id)].status == router::node_status::down) continue;
        auto r = co_await check_health(id, confirm ? 1 : 1 + rt.health.max_retries);
        if (!r.ok && r.timed_out && !r.local && !stopping_)
            r = co_await confirm_timeout(id, std::move(r));
        if (stopping_) break;
        apply_health(id, r);
    }
}

net::awaitable<node_registry::probe_result> node_registry::confirm_timeout(int id,
                                                                           probe_result first) {
    // A timeout alone does not tell a dead node from a starved pgpilot (CPU, network) or a
    // passing stall. The node is checked again, and so is every other node, at once.
    std::vector<int> ids{id};
    for (const auto& n : nodes_)
        if (n.id != id && n.status != router::node_status::down) ids.push_back(n.id);
    if (ids.size() == 1) co_return first;  // nobody to compare with: the timeout stands
    auto results = co_await check_at_once(ids);
    if (results[0] && results[0]->ok) co_return std::move(*results[0]);  // it answers now
    const bool another =
        std::any_of(results.begin() + 1, results.end(), [](const auto& r) { return r && r->ok; });
    if (!another) {
        // Nobody answers: failing this node would help nobody (there is nothing to fail over
        // to), and most likely nothing is wrong with the nodes.
        first.local = true;
        first.detail +=
            "; no other node answered a health check in time either, so pgpilot itself may be "
            "overloaded or cut off";
    }
    co_return first;
}

net::awaitable<node_registry::probe_result> node_registry::check_health(int id, int attempts) {
    auto& rt = *runtime_[std::size_t(id)];
    for (int attempt = 1;; ++attempt) {
        probe_result r;
        const auto started = steady_clock::now();
        auto c = co_await connect_to(id);
        if (!c.conn) {
            r.detail = c.failure.message;
            r.timed_out = c.failure.timed_out;
            // Out of descriptors here, or "too many clients" there: the node may be fine.
            r.local =
                c.failure.local || c.failure.sqlstate == protocol::sqlstate::too_many_connections;
            if (r.local)
                r.detail += c.failure.local ? " (pgpilot is out of descriptors or memory)"
                                            : " (the node is out of connection slots)";
        } else {
            const auto left =
                rt.health_timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                        steady_clock::now() - started);
            auto q = co_await query_within(*c.conn, health_sql,
                                           std::max(left, std::chrono::milliseconds(1)));
            if (q.io) {
                r.timed_out = q.io == boost::system::errc::timed_out;
                r.detail = r.timed_out
                               ? "no answer to the health check query in time"
                               : "lost connection during the health check: " + q.io.message();
            } else if (q.error) {
                r.detail = "health check query failed: " + *q.error;
            } else if (const text_row* answer = single_row(q, 3); !answer) {
                r.detail = "unexpected answer to the health check query";
            } else {
                const auto& row = *answer;
                r.ok = true;
                r.in_recovery = *row[0] == "t";
                r.timeline = timeline_of(row[1]);
                r.walsenders = row[2] ? std::atoll(row[2]->c_str()) : 0;
                co_await say_goodbye(*c.conn);
            }
        }
        if (r.ok || attempt >= attempts || stopping_) {
            if (!r.ok && attempts > 1) r.detail += fmt::format(" ({} attempts)", attempt);
            co_return r;
        }
        log::info("node {}: health check attempt {} of {} failed: {}; retrying in {} s", id,
                  attempt, attempts, r.detail, rt.health.retry_delay);
        net::steady_timer delay(ctx_, to_ms(rt.health.retry_delay));
        co_await delay.async_wait(use_tuple);
        if (stopping_) co_return r;
    }
}

void node_registry::apply_health(int id, const probe_result& r) {
    auto& n = nodes_[std::size_t(id)];
    auto& rt = *runtime_[std::size_t(id)];
    if (n.status == router::node_status::down) return;  // failed or fenced meanwhile
    if (!r.ok && r.local) {
        log::warning("node {}: health check inconclusive: {}; the node stays {}", id, r.detail,
                     router::to_string(n.status));
        return;
    }
    if (!r.ok) {
        switch (n.status) {
            case router::node_status::up:
                node_failed(id, "health check failed: " + r.detail);
                break;
            case router::node_status::waiting:
                // Never seen up: nothing to fail over, keep looking (and say why, once).
                if (n.status_reason != r.detail)
                    log::warning("node {} ({}:{}) not reachable: {}", id, n.host, n.port, r.detail);
                set_status(id, router::node_status::waiting, r.detail);
                break;
            default:
                break;  // quarantined: it stays so until a check passes
        }
        publish();
        return;
    }
    rt.timeline = r.timeline;
    rt.walsenders = r.walsenders;
    const bool always_primary = rt.flag == config::backend_flag::always_primary;
    const auto role =
        r.in_recovery && !always_primary ? router::node_role::standby : router::node_role::primary;
    if (role == router::node_role::primary) {
        if (int current = current_primary(id); current >= 0) {
            const auto& crt = *runtime_[std::size_t(current)];
            const primary_claim mine{id, always_primary, r.timeline, r.walsenders, false};
            const primary_claim theirs{current, crt.flag == config::backend_flag::always_primary,
                                       crt.timeline, crt.walsenders, true};
            if (false_primary(mine, theirs) == id) {
                n.role = role;
                fence_false_primary(id, current);
                publish();
                return;
            }
            fence_false_primary(current, id);
        }
    }
    if (n.role != role) {
        log::info("node {} ({}:{}) role {} -> {}", id, n.host, n.port, router::to_string(n.role),
                  router::to_string(role));
        n.role = role;
    }
    if (n.status != router::node_status::up)
        set_status(id, router::node_status::up,
                   n.status == router::node_status::waiting ? "health check passed"
                                                            : "health check passed again");
    publish();
}

void node_registry::fence_false_primary(int id, int primary) {
    const auto& rt = *runtime_[std::size_t(id)];
    const auto& prt = *runtime_[std::size_t(primary)];
    auto reason = fmt::format(
        "false primary: not in recovery, but node {} is the primary (timeline {} against {}, {} "
        "against {} walsenders)",
        primary, rt.timeline, prt.timeline, rt.walsenders, prt.walsenders);
    set_status(id,
               failover_.detach_false_primary ? router::node_status::down
                                              : router::node_status::quarantine,
               std::move(reason));
}

void node_registry::node_failed(int id, const std::string& reason) {
    auto& rt = *runtime_[std::size_t(id)];
    const bool was_primary = nodes_[std::size_t(id)].role == router::node_role::primary;
    if (rt.flag != config::backend_flag::allow_to_failover) {
        set_status(id, router::node_status::quarantine,
                   reason + fmt::format(" (flag {}: not detached)", config::to_string(rt.flag)));
        return;
    }
    if (was_primary) {
        if (!has_up_standby(id)) {
            set_status(id, router::node_status::quarantine,
                       reason + " (no standby to fail over to: not detached)");
            return;
        }
        failover_in_progress_ = true;
        failover_started_ = steady_clock::now();
    }
    set_status(id, router::node_status::down, reason);
    enqueue({was_primary ? job::kind::primary_failed : job::kind::standby_failed, id});
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
        auto c = co_await connect_for_check(address, replication_login_, replication_timeout_);
        if (stopping_) co_return;
        if (!c.conn) {
            replication_failed(id, c.failure.message);
            co_return;
        }
        rt.replication_conn = std::move(c.conn);
    }
    auto q =
        co_await query_within(*rt.replication_conn, replication_check_sql, replication_timeout_);
    if (stopping_) co_return;
    if (q.io || q.error) {
        replication_failed(id, q.io ? "lost connection: " + q.io.message() : failure_text(q));
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
    // The node may be down: check its health now rather than at its next period.
    if (nodes_[std::size_t(id)].status == router::node_status::up) wake_health(id, false);
}

void node_registry::apply_replication(int id, const replication_sample& s) {
    auto& n = nodes_[std::size_t(id)];
    auto& rt = *runtime_[std::size_t(id)];
    const auto now = steady_clock::now();
    const bool moved = n.wal_lsn != s.wal_lsn;
    n.wal_lsn = s.wal_lsn;
    n.lsn_checked = now;
    if (s.in_recovery && !s.application_name.empty()) rt.application_name = s.application_name;
    const bool says_primary = !s.in_recovery;
    if ((n.role == router::node_role::primary) != says_primary &&
        rt.flag != config::backend_flag::always_primary && !rt.health_wake) {
        log::info("node {} now says it is {}: checking its role", id,
                  says_primary ? "not in recovery" : "in recovery");
        wake_health(id, false);
    }

    if (n.role == router::node_role::primary && says_primary) {
        // The primary's pg_stat_replication says how each standby streams.
        for (std::size_t j = 0; j < nodes_.size(); ++j) {
            if (int(j) == id) continue;
            auto& standby = nodes_[j];
            auto& srt = *runtime_[j];
            const std::string& name = srt.configured_application_name.empty()
                                          ? srt.application_name
                                          : srt.configured_application_name;
            std::string state, sync;
            double lag = 0;
            // A node with no known application_name (an old primary, say) is matched by host
            // alone, which says nothing when other nodes share its host (all on 127.0.0.1).
            // A down standby is matched too: auto_failback waits for it to stream again.
            const bool host_is_unique =
                std::none_of(nodes_.begin(), nodes_.end(), [&](const auto& other) {
                    return other.id != standby.id && other.host == standby.host;
                });
            const bool can_match = !name.empty() || host_is_unique;
            if (auto k =
                    can_match ? match_walsender(s.walsenders, name, standby.host) : std::nullopt) {
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
            if (failover_.auto_failback && standby.status == router::node_status::down &&
                standby.replication_state == "streaming" &&
                (srt.last_failback == steady_clock::time_point{} ||
                 now - srt.last_failback >= to_ms(failover_.auto_failback_interval))) {
                srt.last_failback = now;
                standby.role = router::node_role::standby;
                set_status(int(j), router::node_status::up,
                           fmt::format("auto failback: streaming from node {} again", id));
                wake_health(int(j), false);
                enqueue({job::kind::failback, int(j)});
            }
        }
    }

    // Lag in bytes: how far each standby's replay is behind the primary's last known position.
    const int p = current_primary();
    const router::node_state* primary = p >= 0 ? &nodes_[std::size_t(p)] : nullptr;
    for (auto& m : nodes_) {
        if (&m == primary) {
            m.lag_bytes = 0;
        } else if (primary && primary->lsn_checked != steady_clock::time_point{} &&
                   m.lsn_checked != steady_clock::time_point{}) {
            m.lag_bytes = primary->wal_lsn > m.wal_lsn ? primary->wal_lsn - m.wal_lsn : 0;
        }
    }
    if (moved)
        log::debug("node {}: wal_lsn {}, lag {} bytes", id, router::lsn_text{n.wal_lsn},
                   n.lag_bytes);
    publish();
}

}  // namespace pgpilot::ha
