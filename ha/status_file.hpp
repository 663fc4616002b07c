// Node status across restarts, in pgpool-II's pgpool_status format: one line per node, in
// node order, "up", "down" or "unused".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "router/cluster.hpp"

namespace pgpilot::ha {

/// The file's text for these statuses: "down" for down nodes, "up" for every other (waiting
/// and quarantined nodes are probed again after a restart).
std::string format_status_file(const std::vector<router::node_state>& nodes);

/// Which nodes the file says are down. nullopt, with `error`, when it does not describe
/// exactly `node_count` nodes or has a line other than up/down/unused (then it is ignored).
std::optional<std::vector<bool>> parse_status_file(std::string_view text, std::size_t node_count,
                                                   std::string& error);

/// The file's contents; nullopt when it does not exist; `error` set when it cannot be read.
std::optional<std::string> read_status_file(const std::string& path, std::string& error);

/// Replaces the file atomically (a temporary file renamed over it); false, with `error`, when
/// that fails.
bool write_status_file(const std::string& path, std::string_view text, std::string& error);

}  // namespace pgpilot::ha
