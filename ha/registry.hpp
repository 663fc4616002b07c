// The node registry: the one owner of what pgpilot believes about each backend node. Probes
// run on ha's own event loop; sessions on any worker read the latest immutable snapshot.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "ha/connector.hpp"
#include "ha/replication.hpp"
#include "router/cluster.hpp"

namespace pgpilot::ha {

/// How pgpilot logs in to a node for its own checks (pgpool's health_check_* and sr_check_*).
struct probe_login {
    std::string user = "postgres";
    std::string password;
    std::string database = "postgres";
    std::string application_name = "pgpilot";
    std::chrono::milliseconds connect_timeout{10000};
};

/// Owns node state; publishes snapshots; finds the primary; keeps WAL positions fresh.
///
/// Everything but the constructor, snapshot(), address() and the request_*()/stop() calls runs
/// on the registry's io_context (one thread): no locks inside, and sessions never wait for it.
class node_registry {
  public:
    /// Nodes come from settings.backends (ids in file order); nothing runs until detect() and
    /// start().
    node_registry(net::io_context& ctx, const config::settings& settings);
    ~node_registry();
    node_registry(const node_registry&) = delete;
    node_registry& operator=(const node_registry&) = delete;

    /// The current state of every node; cheap, lock-free, callable from any thread.
    router::snapshot_ptr snapshot() const { return snapshot_.load(std::memory_order_acquire); }

    /// Probes every node once (SELECT pg_is_in_recovery()) and publishes the result.
    /// Runs on the registry's io_context.
    net::awaitable<void> detect();

    /// Starts the background work on the io_context: the replication check per node and the
    /// search for a primary while none is known. Call once, after detect().
    void start();

    /// Ends the background work (from any thread); the io_context then runs out of work.
    void stop();

    /// Asks for a new detection, from any thread (e.g. after a session failed to reach the
    /// primary). Requests that arrive while one runs are folded into one more run.
    void request_detect();

    /// Asks for a replication check of every up node now, from any thread, when a session
    /// needs fresher WAL positions than the snapshot has. Never more than one check per node is
    /// in flight: requests made while one runs are folded into one more check that starts
    /// after it (so its result is at least as fresh as the request). Once every node answered,
    /// each node_state::lsn_checked is later than the call.
    void request_replication_check();

    /// The address of node `id` (fixed by the configuration).
    node_address address(int id) const;

  private:
    struct node_runtime;

    void publish();
    net::awaitable<void> detect_loop();
    net::awaitable<void> watch_for_primary();
    net::awaitable<void> replication_loop(int id);
    net::awaitable<void> check_replication(int id);
    void replication_failed(int id, const std::string& why);
    void apply_replication(int id, const replication_sample& sample);
    void spawn(net::awaitable<void> task, const char* what);

    net::io_context& ctx_;
    probe_login detect_login_;
    probe_login replication_login_;
    std::chrono::milliseconds replication_period_;
    std::chrono::milliseconds check_timeout_;
    std::atomic<std::shared_ptr<const router::cluster_snapshot>> snapshot_;
    std::atomic<bool> replication_requested_{false};

    // Only touched on ctx_'s thread.
    std::vector<router::node_state> nodes_;
    std::vector<std::unique_ptr<node_runtime>> runtime_;
    std::unique_ptr<net::steady_timer> watch_timer_;
    std::uint64_t version_ = 0;
    bool stopping_ = false;
    bool detecting_ = false;
    bool again_ = false;
};

}  // namespace pgpilot::ha
