// Internal to ha/: what node_registry keeps per node besides the published node_state, and the
// helpers its .cpp files share (registry.cpp: status, health, replication; failover.cpp).
#pragma once

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "ha/registry.hpp"

namespace pgpilot::ha {

using namespace net::experimental::awaitable_operators;
using std::chrono::steady_clock;
inline constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

/// A configured number of seconds; 0 ("no limit") becomes a day.
inline std::chrono::milliseconds seconds_or_unlimited(double seconds) {
    if (seconds <= 0) return std::chrono::hours(24);
    return std::chrono::milliseconds(std::int64_t(seconds * 1000));
}

inline std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(std::int64_t(seconds * 1000));
}

struct node_registry::node_runtime {
    explicit node_runtime(net::io_context& ctx) : health_timer(ctx), replication_timer(ctx) {}

    // Configuration.
    config::backend_flag flag = config::backend_flag::allow_to_failover;
    config::health_check_settings health;  ///< [health_check] with this node's overrides
    probe_login health_login;
    std::chrono::milliseconds health_period{0};   ///< 0 = only on demand
    std::chrono::milliseconds health_timeout{0};  ///< one attempt
    std::string data_directory;
    /// The name this standby's WAL receiver gives the primary: [[backend]] application_name,
    /// else what the node reported (application_name).
    std::string configured_application_name;
    std::string application_name;

    // Health check.
    net::steady_timer health_timer;
    bool health_wake = false;     ///< run a check as soon as possible
    bool health_confirm = false;  ///< ... of one attempt (a session reported the node)
    bool health_waiting = false;  ///< the loop waits on health_timer
    std::uint32_t timeline = 0;   ///< primary: timeline of its WAL at the last check
    std::int64_t walsenders = 0;  ///< primary: pg_stat_replication rows at the last check

    // Replication check.
    net::steady_timer replication_timer;
    bool replication_wake = false;
    bool replication_waiting = false;
    std::unique_ptr<backend_connection> replication_conn;
    bool replication_failing = false;  ///< the last check failed (logged once)
    steady_clock::time_point replication_retry_at{};

    // Automatic failback.
    steady_clock::time_point last_failback{};
};

/// The outcome of one health check of a node.
struct node_registry::probe_result {
    bool ok = false;
    std::string detail;  ///< why it failed
    /// Failed for want of resources (pgpilot's descriptors, the node's connection slots), or
    /// timed out while no other node answered either: says nothing of whether the node is up.
    bool local = false;
    /// Failed because no answer came in time (connect or query).
    bool timed_out = false;
    bool in_recovery = false;
    std::uint32_t timeline = 0;   ///< primary: timeline of its current WAL segment
    std::int64_t walsenders = 0;  ///< pg_stat_replication rows
};

/// Connects to `address` as `login` within `timeout` (connect_timeout applies inside it).
/// Both must outlive the returned awaitable.
net::awaitable<connect_result> connect_for_check(const node_address& address,
                                                 const probe_login& login,
                                                 std::chrono::milliseconds timeout);

/// Runs one query on a connection within `timeout`; a timeout reads as a transport error.
net::awaitable<rows_outcome> query_within(backend_connection& conn, std::string_view sql,
                                          std::chrono::milliseconds timeout);

/// Ends a connection of pgpilot's own politely (Terminate) and closes it.
net::awaitable<void> say_goodbye(backend_connection& conn);

/// The answer's only row, when it has exactly one row of `columns` columns and the first is not
/// NULL; nullptr otherwise (failures included).
inline const text_row* single_row(const rows_outcome& q, std::size_t columns) {
    if (q.io || q.error || q.rows.size() != 1 || q.rows[0].size() != columns || !q.rows[0][0])
        return nullptr;
    return &q.rows[0];
}

/// Why a query failed, for a log line: the transport error, the server's message, or
/// `otherwise` (a query that worked but did not answer as expected).
inline std::string failure_text(const rows_outcome& q,
                                std::string_view otherwise = "unexpected answer") {
    if (q.io) return q.io.message();
    if (q.error) return *q.error;
    return std::string(otherwise);
}

}  // namespace pgpilot::ha
