// What the router knows about the cluster: an immutable snapshot of every configured node,
// published by ha/ and read by sessions without locks.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgpilot::router {

/// Whether a node can be used (pgpool's "status" column). Only `up` nodes take statements.
/// waiting: configured, not seen up yet; down: detached (failed, or down in the status file) and
/// only attached again by failback; quarantine: failing, but not detached (a node that may not be
/// failed over, or a primary nothing can replace): back to up as soon as a health check passes.
enum class node_status { waiting, up, down, quarantine };
/// What the node is in replication (pgpool's "role" column).
enum class node_role { unknown, primary, standby };

const char* to_string(node_status);
const char* to_string(node_role);

/// One configured backend node as of a snapshot.
struct node_state {
    int id = 0;
    std::string host;
    std::uint16_t port = 0;
    double weight = 1;
    node_status status = node_status::waiting;
    node_role role = node_role::unknown;
    std::chrono::system_clock::time_point last_status_change{};
    /// Why the status last changed ("health check failed: ...", "failover", ...).
    std::string status_reason;

    // Streaming replication, refreshed by ha/'s replication check (sr_check).
    /// Standby: pg_last_wal_replay_lsn(); primary: pg_current_wal_lsn(); 0 = not known yet.
    std::uint64_t wal_lsn = 0;
    /// When wal_lsn was read (steady clock); a default value means never.
    std::chrono::steady_clock::time_point lsn_checked{};
    /// Standby: bytes the primary's current WAL position is ahead of this node's replay
    /// position at the last check (pgpool's replication_delay in bytes).
    std::uint64_t lag_bytes = 0;
    /// Standby: replay lag in seconds as the primary's pg_stat_replication.replay_lag reports it.
    double lag_seconds = 0;
    /// Standby: pg_stat_replication.state and .sync_state on the primary ("" = not streaming).
    std::string replication_state;
    std::string replication_sync_state;
};

/// The whole cluster at one moment.
struct cluster_snapshot {
    std::vector<node_state> nodes;
    std::uint64_t version = 0;
    /// True from the moment the primary is found failed until a new primary is up (or the
    /// failover gives up): statements that need the primary should wait ([failover]
    /// hold_timeout) rather than fail.
    bool failover_in_progress = false;
    /// When the failover in progress started (steady clock).
    std::chrono::steady_clock::time_point failover_started{};
};

using snapshot_ptr = std::shared_ptr<const cluster_snapshot>;

/// Where a statement goes: a node id, or nowhere when no suitable node is up.
struct route_decision {
    std::optional<int> node;
    const char* reason = "";  ///< why, when node is empty (for the client's error message)
};

/// The node that takes writes: the up node whose role is primary.
route_decision route_to_primary(const cluster_snapshot& snapshot);

/// A WAL position as PostgreSQL prints a pg_lsn ("16/B374D848": two hexadecimal numbers of at
/// most 8 digits, the high and low 32 bits). nullopt for anything else.
std::optional<std::uint64_t> parse_lsn(std::string_view text);
/// The pg_lsn text of a WAL position ("0/0", "16/B374D848").
std::string format_lsn(std::uint64_t lsn);
/// A WAL position to format as its pg_lsn text ("{}"), only when the line is written: a
/// log::debug(..., lsn_text{v}) costs nothing when debug lines are dropped, unlike
/// format_lsn(v), which is evaluated before the call (two in the read path cost 5 % of a
/// pgbench -S transaction's instructions).
struct lsn_text {
    std::uint64_t value;
};

}  // namespace pgpilot::router

template <>
struct fmt::formatter<pgpilot::router::lsn_text> {
    constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
    auto format(pgpilot::router::lsn_text l, fmt::format_context& ctx) const {
        return fmt::format_to(ctx.out(), "{:X}/{:X}", std::uint32_t(l.value >> 32),
                              std::uint32_t(l.value));
    }
};
