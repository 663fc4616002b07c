// Read routing policy: which node a read may go to (weights, redirect preference lists, lag
// thresholds) and whether that node has replayed far enough. Pure functions over a cluster
// snapshot; the proxy brings the randomness and the required WAL position.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "router/cluster.hpp"

namespace pgpilot::router {

/// Whether `node` may serve reads now: up, with a known role and a weight above 0, and, for a
/// standby, not lagging more than delay_threshold / delay_threshold_by_time.
bool readable(const node_state& node, const config::load_balance_settings& lb);

/// Whether `node` has replayed everything up to `required` (0 = nothing required). The primary
/// always has.
bool has_replayed(const node_state& node, std::uint64_t required);

/// The node a session (or, with statement_level, a statement) reads from: the first redirect
/// rule whose pattern matches the application name, else the database name, applies with its
/// ratio; otherwise a readable node is drawn by weight (the primary competes with its own
/// weight). `r1` and `r2` are uniform random numbers in [0, 1). nullopt: no node is readable.
std::optional<int> choose_read_node(const cluster_snapshot& snapshot,
                                    const config::load_balance_settings& lb,
                                    std::string_view database, std::string_view application_name,
                                    double r1, double r2);

/// A WAL position that only moves forward, shared by every thread (the proxy-wide high-water
/// mark of committed writes).
class lsn_mark {
  public:
    void advance(std::uint64_t lsn) {
        auto current = value_.load(std::memory_order_relaxed);
        while (current < lsn &&
               !value_.compare_exchange_weak(current, lsn, std::memory_order_release,
                                             std::memory_order_relaxed)) {
        }
    }
    std::uint64_t get() const { return value_.load(std::memory_order_acquire); }

  private:
    std::atomic<std::uint64_t> value_{0};
};

}  // namespace pgpilot::router
