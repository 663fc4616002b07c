#include "proxy/admin.hpp"

#include <ctime>

#include "ha/log.hpp"

namespace pgpilot::proxy {

namespace {

std::string local_time_text(std::chrono::system_clock::time_point t) {
    if (t.time_since_epoch().count() == 0) return {};
    const auto seconds = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    localtime_r(&seconds, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

/// `text` as a Prometheus label value: backslash, double quote and newline escaped.
std::string label_value(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

/// Writes one metric family: its HELP and TYPE lines, then a sample per item.
class exposition {
  public:
    explicit exposition(std::string& out) : out_(out) {}
    void family(std::string_view name, std::string_view type, std::string_view help) {
        name_ = name;
        out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    /// A family with a sample per item: labels[i], value(items[i]).
    template <class Item, class Value>
    void per_item(const std::vector<std::string>& labels, const std::vector<Item>& items,
                  std::string_view name, std::string_view type, std::string_view help,
                  Value value) {
        family(name, type, help);
        for (std::size_t i = 0; i < items.size(); ++i)
            sample(labels[i], value(items[i]));
    }
    template <class T>
    void sample(std::string_view labels, T value) {
        if (labels.empty())
            out_ += fmt::format("{} {}\n", name_, value);
        else
            out_ += fmt::format("{}{{{}}} {}\n", name_, labels, value);
    }

  private:
    std::string& out_;
    std::string_view name_;
};

}  // namespace

std::vector<node_view> node_views(const shared_state& shared,
                                  const router::cluster_snapshot& snapshot) {
    double total_weight = 0;
    for (const auto& n : snapshot.nodes)
        total_weight += n.weight;
    std::vector<node_view> out;
    out.reserve(snapshot.nodes.size());
    for (const auto& n : snapshot.nodes) {
        node_view v;
        v.id = n.id;
        v.host = n.host;
        v.port = n.port;
        v.status = router::to_string(n.status);
        v.role = router::to_string(n.role);
        v.weight = n.weight;
        v.lb_weight = total_weight > 0 ? n.weight / total_weight : 0.0;
        const auto index = std::size_t(n.id);
        if (index < shared.select_count.size()) v.select_cnt = shared.select_count[index].load();
        if (index < shared.open_transactions.size())
            v.open_transactions = shared.open_transactions[index].load();
        if (n.role == router::node_role::standby) {
            v.replication_delay = n.lag_bytes;
            v.replication_delay_seconds = n.lag_seconds;
        }
        v.replication_state = n.replication_state;
        v.replication_sync_state = n.replication_sync_state;
        v.last_status_change = local_time_text(n.last_status_change);
        v.status_reason = n.status_reason;
        v.wal_lsn = n.wal_lsn;
        out.push_back(std::move(v));
    }
    return out;
}

std::vector<pool_view> pool_views(const shared_state& shared) {
    std::vector<pool_view> out;
    for (auto& p : shared.pool.stats()) {
        const auto mode = shared.settings.pool_for(p.user, p.database).mode;
        out.push_back(
            {std::move(p), mode == config::pool_mode::transaction ? "transaction" : "session"});
    }
    return out;
}

admin_report read_report(const shared_state& shared, report_parts parts) {
    admin_report r;
    if (parts != report_parts::pools) {
        const auto snapshot = shared.registry.snapshot();
        r.nodes = node_views(shared, *snapshot);
        r.failover_in_progress = snapshot->failover_in_progress;
    }
    if (parts != report_parts::nodes) {
        r.pools = pool_views(shared);
        r.clients = shared.slots.in_use();
        r.clients_waiting = shared.slots.waiting();
    }
    return r;
}

std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7f)
                    out += fmt::format("\\u{:04x}", c);
                else
                    out += char(c);
        }
    }
    out += '"';
    return out;
}

std::string nodes_json(const admin_report& r) {
    std::string out = fmt::format("{{\"failover_in_progress\":{},\"nodes\":[",
                                  r.failover_in_progress ? "true" : "false");
    for (std::size_t i = 0; i < r.nodes.size(); ++i) {
        const auto& n = r.nodes[i];
        out += fmt::format(
            "{}{{\"node_id\":{},\"hostname\":{},\"port\":{},\"status\":{},\"role\":{},"
            "\"weight\":{},\"lb_weight\":{},\"select_cnt\":{},\"replication_delay\":{},"
            "\"replication_delay_seconds\":{},\"replication_state\":{},"
            "\"replication_sync_state\":{},\"last_status_change\":{},\"status_reason\":{},"
            "\"wal_lsn\":{},\"open_transactions\":{}}}",
            i ? "," : "", n.id, json_string(n.host), n.port, json_string(n.status),
            json_string(n.role), n.weight, n.lb_weight, n.select_cnt, n.replication_delay,
            n.replication_delay_seconds, json_string(n.replication_state),
            json_string(n.replication_sync_state), json_string(n.last_status_change),
            json_string(n.status_reason),
            n.wal_lsn ? json_string(router::format_lsn(n.wal_lsn)) : "null", n.open_transactions);
    }
    out += "]}\n";
    return out;
}

std::string pools_json(const admin_report& r) {
    std::string out = fmt::format("{{\"clients\":{},\"clients_waiting\":{},\"pools\":[", r.clients,
                                  r.clients_waiting);
    for (std::size_t i = 0; i < r.pools.size(); ++i) {
        const auto& p = r.pools[i].stats;
        out += fmt::format(
            "{}{{\"database\":{},\"user\":{},\"node_id\":{},\"pool_mode\":{},\"cl_waiting\":{},"
            "\"cl_pinned\":{},\"sv_active\":{},\"sv_idle\":{},\"pool_size\":{},\"maxwait\":{},"
            "\"total_waits\":{},\"total_wait_timeouts\":{},\"total_connects\":{}}}",
            i ? "," : "", json_string(p.database), json_string(p.user), p.node,
            json_string(r.pools[i].mode), p.waiting, p.pinned, p.open - p.idle, p.idle, p.pool_size,
            p.max_wait, p.waits, p.timeouts, p.connects);
    }
    out += "]}\n";
    return out;
}

std::string prometheus_metrics(const admin_report& r) {
    std::string out;
    exposition m(out);
    std::vector<std::string> node_labels;
    for (const auto& n : r.nodes)
        node_labels.push_back(fmt::format("node_id=\"{}\"", n.id));

    m.family("pgpilot_node_info", "gauge",
             "Always 1: a configured backend node with its address, role and status.");
    for (const auto& n : r.nodes)
        m.sample(fmt::format("node_id=\"{}\",hostname=\"{}\",port=\"{}\",role=\"{}\",status=\"{}\"",
                             n.id, label_value(n.host), n.port, n.role, n.status),
                 1);
    auto per_node = [&](auto... args) { m.per_item(node_labels, r.nodes, args...); };
    per_node("pgpilot_node_up", "gauge", "1 when the node takes statements, 0 otherwise.",
             [](const node_view& n) { return n.status == "up" ? 1 : 0; });
    per_node("pgpilot_node_primary", "gauge", "1 for the node that takes writes.",
             [](const node_view& n) { return n.role == "primary" ? 1 : 0; });
    per_node("pgpilot_node_weight", "gauge", "The node's configured load-balancing weight.",
             [](const node_view& n) { return n.weight; });
    per_node("pgpilot_node_selects_total", "counter", "Reads routed to the node (select_cnt).",
             [](const node_view& n) { return n.select_cnt; });
    per_node("pgpilot_node_replication_delay_bytes", "gauge",
             "A standby's replay lag behind the primary's WAL position, in bytes.",
             [](const node_view& n) { return n.replication_delay; });
    per_node("pgpilot_node_replication_delay_seconds", "gauge",
             "A standby's replay lag as the primary's pg_stat_replication reports it.",
             [](const node_view& n) { return n.replication_delay_seconds; });
    per_node("pgpilot_node_wal_lsn_bytes", "gauge",
             "The node's WAL position at the last check (replay position on a standby).",
             [](const node_view& n) { return n.wal_lsn; });
    per_node("pgpilot_node_open_transactions", "gauge", "Client transactions open on the node now.",
             [](const node_view& n) { return n.open_transactions; });

    m.family("pgpilot_failover_in_progress", "gauge",
             "1 while a failover runs (statements for the primary wait).");
    m.sample("", r.failover_in_progress ? 1 : 0);
    m.family("pgpilot_clients", "gauge", "Client sessions past startup.");
    m.sample("", r.clients);
    m.family("pgpilot_clients_waiting", "gauge",
             "Clients waiting for a slot (max_client_connections).");
    m.sample("", r.clients_waiting);

    std::vector<std::string> pool_labels;
    for (const auto& p : r.pools)
        pool_labels.push_back(fmt::format(
            "database=\"{}\",user=\"{}\",node_id=\"{}\",pool_mode=\"{}\"",
            label_value(p.stats.database), label_value(p.stats.user), p.stats.node, p.mode));
    std::vector<pool_stats> pools;
    for (const auto& p : r.pools)
        pools.push_back(p.stats);
    auto per_pool = [&](auto... args) { m.per_item(pool_labels, pools, args...); };
    per_pool("pgpilot_pool_clients_waiting", "gauge",
             "Clients waiting for a server connection (cl_waiting).",
             [](const pool_stats& p) { return p.waiting; });
    per_pool("pgpilot_pool_clients_pinned", "gauge",
             "Transaction pooling: clients holding a server connection for their session.",
             [](const pool_stats& p) { return p.pinned; });
    per_pool("pgpilot_pool_server_active", "gauge", "Server connections in use (sv_active).",
             [](const pool_stats& p) { return p.open - p.idle; });
    per_pool("pgpilot_pool_server_idle", "gauge", "Idle server connections (sv_idle).",
             [](const pool_stats& p) { return p.idle; });
    per_pool("pgpilot_pool_size", "gauge", "The pool's pool_size.",
             [](const pool_stats& p) { return p.pool_size; });
    per_pool("pgpilot_pool_max_wait_seconds", "gauge",
             "How long the longest waiting client has waited so far (maxwait).",
             [](const pool_stats& p) { return p.max_wait; });
    per_pool("pgpilot_pool_waits_total", "counter", "Clients that had to wait for a connection.",
             [](const pool_stats& p) { return p.waits; });
    per_pool("pgpilot_pool_wait_timeouts_total", "counter",
             "Waits that ended with query_wait_timeout.",
             [](const pool_stats& p) { return p.timeouts; });
    per_pool("pgpilot_pool_connects_total", "counter", "Server connections opened.",
             [](const pool_stats& p) { return p.connects; });
    return out;
}

net::awaitable<node_command_outcome> run_node_command(shared_state& shared,
                                                      const router::node_command& command,
                                                      net::any_io_executor executor) {
    using outcome = node_command_outcome;
    const int id = command.node;
    if (id < 0 || std::size_t(id) >= shared.open_transactions.size())
        co_return outcome{outcome::kind::no_such_node,
                          fmt::format("there is no node {} (nodes are 0 to {})", id,
                                      shared.open_transactions.size() - 1)};
    ha::control_result r;
    switch (command.what) {
        case router::node_command::action::attach:
            r = co_await shared.registry.attach_node(id);
            break;
        case router::node_command::action::detach: {
            if (command.gracefully) {
                const auto deadline =
                    std::chrono::steady_clock::now() + shared.registry.hold_timeout();
                net::steady_timer t(executor);
                while (shared.open_transactions[std::size_t(id)].load() > 0 &&
                       std::chrono::steady_clock::now() < deadline) {
                    t.expires_after(std::chrono::milliseconds(10));
                    co_await t.async_wait(net::as_tuple(net::use_awaitable));
                    if (shared.stopping.load())
                        co_return outcome{outcome::kind::shutting_down, "pgpilot is shutting down"};
                }
            }
            r = co_await shared.registry.detach_node(id);
            break;
        }
        case router::node_command::action::promote:
            r = co_await shared.registry.promote_node(id, command.switchover);
            break;
    }
    co_return outcome{r.ok ? outcome::kind::done : outcome::kind::refused, std::move(r.message)};
}

}  // namespace pgpilot::proxy
