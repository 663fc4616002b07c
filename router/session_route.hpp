// Where one unit of a session's traffic goes (a simple Query, or an extended-protocol batch up
// to Sync): the part of routing that depends on the statements and on the session's
// transaction state, not on the nodes. The proxy turns `read_node` into a node with
// router/balance.hpp and the consistency rules.
#pragma once

#include <span>

#include "config/config.hpp"
#include "router/classify.hpp"

namespace pgpilot::router {

/// What the statements of one unit add up to.
struct unit_summary {
    /// The strongest class: write and unknown over primary_only over read over session_state.
    statement_class cls = statement_class::session_state;
    bool opens_transaction = false;  ///< leaves a transaction open that was not open before
    bool ends_transaction = false;   ///< ends the open transaction (and opens no new one)
    bool read_only_transaction = false;
    bool pins_to_primary = false;  ///< READ WRITE / SERIALIZABLE transaction or session default
    bool pins_session = false;     ///< creates a temporary object or LISTENs
    bool empty() const {
        return cls == statement_class::session_state && !opens_transaction && !ends_transaction;
    }
};

/// Folds the classes of a unit's statements, in order.
unit_summary summarize(std::span<const statement_info> statements);

/// Whether a class must run on the primary.
inline bool needs_primary(statement_class c) {
    return c == statement_class::write || c == statement_class::unknown ||
           c == statement_class::primary_only;
}

/// The session's state as far as routing cares.
struct session_route_state {
    bool in_transaction = false;      ///< the client's last ReadyForQuery said T or E
    bool transaction_failed = false;  ///< ... E
    bool transaction_on_primary = false;
    bool transaction_read_only = false;
    bool pinned = false;                ///< temp objects, LISTEN, READ WRITE session default
    bool wrote = false;                 ///< the session has written (for `always`)
    bool wrote_in_transaction = false;  ///< an explicit transaction of it wrote (trans_transaction)
};

enum class route_target {
    primary,           ///< the primary
    read_node,         ///< a read node chosen by weight and consistency
    transaction_node,  ///< the node the open transaction runs on
    current,           ///< wherever the session last sent something (SET and the like)
};

/// Where a unit goes.
route_target decide_route(const unit_summary& unit, const session_route_state& state,
                          const config::load_balance_settings& lb);

}  // namespace pgpilot::router
