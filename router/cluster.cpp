#include "router/cluster.hpp"

namespace pgpilot::router {

const char* to_string(node_status s) {
    switch (s) {
        case node_status::waiting:
            return "waiting";
        case node_status::up:
            return "up";
        case node_status::down:
            return "down";
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

}  // namespace pgpilot::router
