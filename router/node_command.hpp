// pgpool-style node control statements on the client port: PGPOOL ATTACH NODE n,
// PGPOOL DETACH NODE n [GRACEFULLY], PGPOOL PROMOTE NODE n [SWITCHOVER]. Parsing only; the
// proxy checks who may run them and ha/ carries them out.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pgpilot::router {

struct node_command {
    enum class action { attach, detach, promote };
    action what = action::attach;
    int node = -1;
    bool gracefully = false;  ///< DETACH ... GRACEFULLY
    bool switchover = false;  ///< PROMOTE ... SWITCHOVER
    /// Set when the text starts with PGPOOL but is not one of the statements above: the
    /// message of the syntax error the client gets.
    std::string error;
};

/// nullopt when `text` is not a PGPOOL statement (its first word is not PGPOOL: it goes to
/// PostgreSQL like any other); otherwise the command, or one with `error` set. Comments, case,
/// spacing and one trailing semicolon are allowed, as in any statement.
std::optional<node_command> parse_node_command(std::string_view text);

/// The statement as text ("PGPOOL PROMOTE NODE 1 SWITCHOVER"), for logs and command tags.
std::string to_string(const node_command& c);

}  // namespace pgpilot::router
