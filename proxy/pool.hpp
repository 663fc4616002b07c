// Idle backend connections of one worker thread, keyed by (node, user, database, startup
// parameters). Only its own worker touches it, so it takes no locks.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ha/connector.hpp"

namespace pgpilot::proxy {

/// The pool key: every startup parameter matters, because the backend applied them.
std::string pool_key(int node, const ha::startup_params& params);

/// Idle connections kept for reuse by later sessions.
class idle_pool {
  public:
    /// The most recently used healthy idle connection for `key`, or null. Connections that
    /// are too old or that the backend closed meanwhile are discarded on the way.
    std::unique_ptr<ha::backend_connection> take(const std::string& key,
                                                 std::chrono::steady_clock::duration life_time);
    /// Keeps `conn` unless `max_pool` connections are already idle for `key`.
    /// Returns false (and closes it) when it was not kept.
    bool put(const std::string& key, std::unique_ptr<ha::backend_connection> conn,
             std::size_t max_pool);
    /// Closes connections older than `life_time` (when non-zero) or closed by the backend.
    std::size_t sweep(std::chrono::steady_clock::duration life_time);
    /// Closes everything (shutdown), telling each backend goodbye.
    void clear();
    std::size_t size() const;

  private:
    std::unordered_map<std::string, std::vector<std::unique_ptr<ha::backend_connection>>> idle_;
};

/// True when the backend has closed the connection or sent something unasked (e.g. the
/// FATAL of pg_terminate_backend), checked without blocking.
bool looks_closed(ha::backend_connection& conn);

}  // namespace pgpilot::proxy
