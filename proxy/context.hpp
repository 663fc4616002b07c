// What sessions share: the process-wide state, and the per-thread worker they run on.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "config/config.hpp"
#include "ha/registry.hpp"
#include "proxy/cancel_map.hpp"
#include "proxy/client_slots.hpp"
#include "proxy/pool.hpp"

namespace pgpilot::proxy {

class session;

/// Named timeouts of a session (later configurable; see issue on connection management).
struct session_timeouts {
    std::chrono::milliseconds authentication{60000};   ///< startup + authentication; 0 = none
    std::chrono::milliseconds client_idle{0};          ///< idle outside a transaction; 0 = no limit
    std::chrono::milliseconds backend_connect{10000};  ///< connect + startup toward a backend
    std::chrono::milliseconds reset{5000};             ///< DISCARD ALL before pooling
    std::chrono::milliseconds goodbye{1000};           ///< writing the last error to a client
    std::chrono::milliseconds primary_wait{2000};      ///< waiting for a primary to be found
};

/// Process-wide state shared by every worker (read-mostly; see DESIGN.md "Threads").
struct shared_state {
    shared_state(const config::settings& s, ha::node_registry& r)
        : settings(s),
          registry(r),
          slots(std::size_t(s.pool.max_client_connections),
                std::size_t(s.pool.reserved_connections)) {}
    const config::settings& settings;
    ha::node_registry& registry;
    cancel_map cancels;
    client_slots slots;
    session_timeouts timeouts;
    std::atomic<std::uint64_t> next_session_id{1};
    std::atomic<bool> stopping{false};
};

/// One event-loop thread: its io_context, its idle backend connections, its sessions.
struct worker {
    explicit worker(shared_state& s, unsigned index) : shared(s), id(index) {}
    net::io_context ctx{1};
    shared_state& shared;
    unsigned id;
    idle_pool pool;
    /// Live sessions, so shutdown can reach them; only touched on this worker's thread.
    std::unordered_map<std::uint64_t, std::shared_ptr<session>> sessions;
};

}  // namespace pgpilot::proxy
