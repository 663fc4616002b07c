// The node registry: the one owner of what pgpilot believes about each backend node. Probes
// run on ha's own event loop; sessions on any worker read the latest immutable snapshot.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "ha/connector.hpp"
#include "router/cluster.hpp"

namespace pgpilot::ha {

/// How pgpilot logs in to probe nodes (pgpool's sr_check_user / health_check_user).
struct probe_credentials {
    std::string user = "postgres";
    std::string password;
    std::string database = "postgres";
    std::chrono::milliseconds connect_timeout{10000};
};

/// Owns node state; publishes snapshots; finds the primary.
class node_registry {
  public:
    node_registry(net::io_context& ctx, std::vector<router::node_state> nodes,
                  probe_credentials credentials);

    /// The current state of every node; cheap, lock-free, callable from any thread.
    router::snapshot_ptr snapshot() const { return snapshot_.load(std::memory_order_acquire); }

    /// Probes every node once (SELECT pg_is_in_recovery()) and publishes the result.
    /// Runs on the registry's io_context.
    net::awaitable<void> detect();

    /// Asks for a new detection, from any thread (e.g. after a session failed to reach the
    /// primary). Requests that arrive while one runs are folded into one more run.
    void request_detect();

    /// Re-detects every `period` while no primary is known, so pgpilot started before its
    /// cluster finds the primary by itself.
    net::awaitable<void> watch_for_primary(std::chrono::milliseconds period);

    /// The address of node `id` (fixed by the configuration).
    node_address address(int id) const;

  private:
    void publish(std::vector<router::node_state> nodes);
    net::awaitable<void> detect_loop();

    net::io_context& ctx_;
    probe_credentials credentials_;
    std::atomic<std::shared_ptr<const router::cluster_snapshot>> snapshot_;
    // Only touched on ctx_'s thread.
    bool detecting_ = false;
    bool again_ = false;
};

}  // namespace pgpilot::ha
