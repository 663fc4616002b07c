// What the admin statements on the client port (SHOW POOL_NODES, SHOW POOLS, PGPOOL ... NODE)
// and the HTTP admin endpoint have in common: the nodes and pools as they are shown, their JSON
// and Prometheus forms, and node control.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/context.hpp"
#include "router/node_command.hpp"

namespace pgpilot::proxy {

/// A node as SHOW POOL_NODES shows it (pgpool-II's columns), plus what only the endpoint shows.
struct node_view {
    int id = 0;
    std::string host;
    std::uint16_t port = 0;
    std::string status;    ///< "up", "down", "waiting", "quarantine"
    std::string role;      ///< "primary", "standby", "unknown"
    double lb_weight = 0;  ///< this node's share of the total weight, 0 to 1
    double weight = 0;     ///< the configured weight
    std::uint64_t select_cnt = 0;
    std::uint64_t replication_delay = 0;  ///< bytes; standbys only (0 for others)
    double replication_delay_seconds = 0;
    std::string replication_state;
    std::string replication_sync_state;
    std::string last_status_change;  ///< local time, "YYYY-MM-DD HH:MM:SS"; "" = never changed
    std::string status_reason;
    std::uint64_t wal_lsn = 0;  ///< last WAL position read; 0 = not known yet
    int open_transactions = 0;  ///< client transactions open on the node now
};

/// Every configured node of `snapshot`, in id order.
std::vector<node_view> node_views(const shared_state& shared,
                                  const router::cluster_snapshot& snapshot);

/// A pool as SHOW POOLS shows it.
struct pool_view {
    pool_stats stats;
    std::string mode;  ///< "session" or "transaction"
};

/// Every (user, database, node) pool that has been used.
std::vector<pool_view> pool_views(const shared_state& shared);

/// Everything the HTTP endpoint reports, read at one moment.
struct admin_report {
    std::vector<node_view> nodes;
    std::vector<pool_view> pools;
    bool failover_in_progress = false;
    std::size_t clients = 0;          ///< sessions past startup
    std::size_t clients_waiting = 0;  ///< clients waiting for a slot (max_client_connections)
};
/// What a request needs: /health and /nodes only the nodes (no lock on the pools, which every
/// worker takes to lease connections), /pools only the pools and clients, /metrics all.
enum class report_parts { nodes, pools, all };
admin_report read_report(const shared_state& shared, report_parts parts);

/// `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);
/// GET /nodes: {"failover_in_progress": ..., "nodes": [{...}, ...]}.
std::string nodes_json(const admin_report& r);
/// GET /pools: {"clients": ..., "clients_waiting": ..., "pools": [{...}, ...]}.
std::string pools_json(const admin_report& r);
/// GET /metrics: the Prometheus text exposition format (version 0.0.4).
std::string prometheus_metrics(const admin_report& r);

/// How a node command ended.
struct node_command_outcome {
    enum class kind { done, refused, no_such_node, shutting_down };
    kind result = kind::refused;
    std::string message;  ///< what was done, or why not
};

/// Carries out PGPOOL ATTACH/DETACH/PROMOTE NODE (whether the caller may is the caller's
/// business): the node must exist; DETACH ... GRACEFULLY first lets the transactions open on
/// the node end, for up to [failover] hold_timeout. Runs on `executor`.
net::awaitable<node_command_outcome> run_node_command(shared_state& shared,
                                                      const router::node_command& command,
                                                      net::any_io_executor executor);

}  // namespace pgpilot::proxy
