#include "router/cluster.hpp"

#include <fmt/format.h>

namespace pgpilot::router {

const char* to_string(node_status s) {
    switch (s) {
        case node_status::waiting:
            return "waiting";
        case node_status::up:
            return "up";
        case node_status::down:
            return "down";
        case node_status::quarantine:
            return "quarantine";
    }
    return "unknown";
}

const char* to_string(node_role r) {
    switch (r) {
        case node_role::unknown:
            return "unknown";
        case node_role::primary:
            return "primary";
        case node_role::standby:
            return "standby";
    }
    return "unknown";
}

route_decision route_to_primary(const cluster_snapshot& snapshot) {
    for (const auto& n : snapshot.nodes)
        if (n.role == node_role::primary && n.status == node_status::up) return {n.id, ""};
    return {std::nullopt, "no primary node is available"};
}

namespace {
std::optional<std::uint32_t> parse_hex32(std::string_view s) {
    if (s.empty() || s.size() > 8) return std::nullopt;
    std::uint32_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return std::nullopt;
        v = v << 4 | std::uint32_t(d);
    }
    return v;
}
}  // namespace

std::optional<std::uint64_t> parse_lsn(std::string_view text) {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto hi = parse_hex32(text.substr(0, slash));
    auto lo = parse_hex32(text.substr(slash + 1));
    if (!hi || !lo) return std::nullopt;
    return std::uint64_t(*hi) << 32 | *lo;
}

std::string format_lsn(std::uint64_t lsn) {
    return fmt::format("{}", lsn_text{lsn});
}

}  // namespace pgpilot::router
