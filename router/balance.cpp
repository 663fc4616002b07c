#include "router/balance.hpp"

#include <algorithm>
#include <charconv>
#include <regex>
#include <vector>

#include <fmt/format.h>

namespace pgpilot::router {

bool readable(const node_state& node, const config::load_balance_settings& lb) {
    if (node.status != node_status::up || node.weight <= 0) return false;
    if (node.role == node_role::primary) return true;
    if (node.role != node_role::standby) return false;
    if (lb.delay_threshold > 0 && double(node.lag_bytes) > lb.delay_threshold) return false;
    if (lb.delay_threshold_by_time > 0 && node.lag_seconds * 1000 > lb.delay_threshold_by_time)
        return false;
    return true;
}

bool has_replayed(const node_state& node, std::uint64_t required) {
    if (required == 0 || node.role == node_role::primary) return true;
    return node.wal_lsn >= required;
}

namespace {

using rule = config::redirect_rule;

bool matches(const rule& r, std::string_view name) {
    try {
        const std::regex re(r.pattern);
        return std::regex_match(name.begin(), name.end(), re);
    } catch (const std::regex_error&) {
        return false;  // validated when the configuration was loaded
    }
}

const rule* find_rule(const std::vector<rule>& rules, std::string_view name) {
    for (const auto& r : rules)
        if (matches(r, name)) return &r;
    return nullptr;
}

// Draws one of `candidates` by weight with r in [0, 1).
std::optional<int> draw(const cluster_snapshot& s, const std::vector<int>& candidates, double r) {
    double total = 0;
    for (int id : candidates)
        total += s.nodes[std::size_t(id)].weight;
    if (candidates.empty() || total <= 0) return {};
    double point = r * total;
    for (int id : candidates) {
        point -= s.nodes[std::size_t(id)].weight;
        if (point < 0) return id;
    }
    return candidates.back();
}

}  // namespace

std::optional<int> choose_read_node(const cluster_snapshot& snapshot,
                                    const config::load_balance_settings& lb,
                                    std::string_view database, std::string_view application_name,
                                    double r1, double r2) {
    std::vector<int> all;
    for (const auto& n : snapshot.nodes)
        if (readable(n, lb)) all.push_back(n.id);
    if (all.empty()) return {};

    const rule* r = find_rule(lb.app_name_redirect_preference_list, application_name);
    if (!r) r = find_rule(lb.database_redirect_preference_list, database);
    if (!r) return draw(snapshot, all, r1);

    // The rule's own targets among the readable nodes.
    std::vector<int> targets;
    for (int id : all) {
        const auto& n = snapshot.nodes[std::size_t(id)];
        if ((r->target == rule::target_kind::primary && n.role == node_role::primary) ||
            (r->target == rule::target_kind::standby && n.role == node_role::standby) ||
            (r->target == rule::target_kind::node_id && n.id == r->node_id))
            targets.push_back(id);
    }
    if (targets.empty()) return draw(snapshot, all, r1);
    if (r1 < r->ratio) return draw(snapshot, targets, r2);
    // The rest of the reads go to the other nodes by weight (pgpool-II's reading of ratio).
    std::vector<int> others;
    for (int id : all)
        if (std::find(targets.begin(), targets.end(), id) == targets.end()) others.push_back(id);
    if (others.empty()) return draw(snapshot, targets, r2);
    return draw(snapshot, others, r2);
}

}  // namespace pgpilot::router
