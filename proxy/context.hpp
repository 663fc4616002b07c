// What sessions share: the process-wide state, and the per-thread worker they run on.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "ha/registry.hpp"
#include "proxy/cancel_map.hpp"
#include "proxy/client_slots.hpp"
#include "proxy/handler_memory.hpp"
#include "proxy/pool.hpp"
#include "proxy/relay_buffers.hpp"
#include "router/balance.hpp"

namespace pgpilot::proxy {

class session;

/// Named timeouts of a session (later configurable; see issue on connection management).
struct session_timeouts {
    std::chrono::milliseconds authentication{60000};   ///< startup + authentication; 0 = none
    std::chrono::milliseconds client_idle{0};          ///< idle outside a transaction; 0 = no limit
    std::chrono::milliseconds idle_in_transaction{0};  ///< idle inside one; 0 = no limit
    std::chrono::milliseconds backend_connect{10000};  ///< connect + startup toward a backend
    std::chrono::milliseconds reset{5000};             ///< DISCARD ALL before pooling
    std::chrono::milliseconds goodbye{1000};           ///< writing the last error to a client
    std::chrono::milliseconds primary_wait{2000};      ///< waiting for a primary to be found
};

/// Names of volatile functions ("name" and "schema.name"), per database, read from pg_proc
/// once per database (issue: "looked up once per database and cached").
class volatile_functions {
  public:
    using set = std::unordered_set<std::string>;
    std::shared_ptr<const set> find(const std::string& database) const {
        std::lock_guard lock(mutex_);
        auto it = by_database_.find(database);
        return it == by_database_.end() ? nullptr : it->second;
    }
    void store(const std::string& database, std::shared_ptr<const set> names) {
        std::lock_guard lock(mutex_);
        by_database_[database] = std::move(names);
    }

  private:
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<const set>> by_database_;
};

/// The pool's limits from [pool].
inline backend_pool::limits pool_limits(const config::pool_settings& p) {
    return {std::size_t(p.max_backend_connections), seconds_to_duration(p.connection_life_time),
            seconds_to_duration(p.server_idle_timeout)};
}

/// Process-wide state shared by every worker (read-mostly; see DESIGN.md "Threads").
struct shared_state {
    shared_state(const config::settings& s, ha::node_registry& r)
        : settings(s),
          registry(r),
          slots(std::size_t(s.pool.max_client_connections),
                std::size_t(s.pool.reserved_connections)),
          pool(s.backends.size(), pool_limits(s.pool)),
          select_count(s.backends.size()),
          open_transactions(s.backends.size()) {}
    const config::settings& settings;
    ha::node_registry& registry;
    cancel_map cancels;
    client_slots slots;
    /// Backend connections: idle ones for reuse, and the budgets (pool_size and
    /// max_backend_connections) every worker's sessions draw from.
    backend_pool pool;
    session_timeouts timeouts;
    std::atomic<std::uint64_t> next_session_id{1};
    std::atomic<bool> stopping{false};
    /// The WAL position of the latest write any session saw committed (consistency = global).
    router::lsn_mark written_lsn;
    /// Reads routed to each node (SHOW POOL_NODES select_cnt).
    std::vector<std::atomic<std::uint64_t>> select_count;
    /// Client transactions open on each node now (PGPOOL DETACH NODE ... GRACEFULLY waits for
    /// them to end).
    std::vector<std::atomic<int>> open_transactions;
    volatile_functions volatiles;

    /// The configuration clients log in with: `settings` at start, the file as read again at
    /// each reload (SIGHUP) after. Only its [auth] table and users are used from it.
    std::shared_ptr<const config::settings> login_settings() const {
        std::lock_guard lock(login_mutex_);
        return login_;
    }
    void set_login_settings(std::shared_ptr<const config::settings> s) {
        std::lock_guard lock(login_mutex_);
        login_ = std::move(s);
    }

  private:
    mutable std::mutex login_mutex_;
    std::shared_ptr<const config::settings> login_ = std::make_shared<config::settings>(settings);
};

/// One event-loop thread: its io_context and its sessions.
struct worker {
    explicit worker(shared_state& s, unsigned index) : shared(s), id(index) {}
    /// First, so destroyed last: sessions' coroutines (in ctx) hold leases on them.
    relay_buffers buffers;
    /// Parked sessions' pending waits (see block_pool).
    block_pool parked_ops;
    net::io_context ctx{1};
    shared_state& shared;
    unsigned id;
    /// Live sessions, so shutdown can reach them; only touched on this worker's thread.
    std::unordered_map<std::uint64_t, std::shared_ptr<session>> sessions;
    /// Sessions parked or ended since free heap pages were last given back to the system, and
    /// when the last of them did (see park_loop in server.cpp).
    std::size_t released_since_trim = 0;
    std::chrono::steady_clock::time_point last_release{};
    /// Counts a session that parked or ended.
    void released() {
        ++released_since_trim;
        last_release = std::chrono::steady_clock::now();
    }
};

}  // namespace pgpilot::proxy
