#include "router/session_route.hpp"

namespace pgpilot::router {

namespace {
int strength(statement_class c) {
    switch (c) {
        case statement_class::session_state:
            return 0;
        case statement_class::read:
            return 1;
        case statement_class::primary_only:
            return 2;
        case statement_class::write:
        case statement_class::unknown:
            return 3;
    }
    return 3;
}
}  // namespace

unit_summary summarize(std::span<const statement_info> statements) {
    unit_summary u;
    bool open = false;  // a transaction this unit opened is still open
    for (const auto& s : statements) {
        // EXECUTE of a name the caller could not map stays unknown: the primary.
        if (strength(s.cls) > strength(u.cls) ||
            (strength(s.cls) == 3 && s.cls == statement_class::unknown))
            u.cls = s.cls;
        if (s.creates_temp || s.listen) u.pins_session = true;
        if (s.pins_to_primary) u.pins_to_primary = true;
        if (s.read_only_transaction) u.read_only_transaction = true;
        if (s.ends_transaction) {
            if (open)
                open = false;
            else
                u.ends_transaction = true;
        }
        if (s.begins_transaction) open = true;
    }
    u.opens_transaction = open;
    if (open) u.ends_transaction = false;
    return u;
}

route_target decide_route(const unit_summary& unit, const session_route_state& state,
                          const config::load_balance_settings& lb) {
    if (!lb.enabled) return route_target::primary;
    if (state.in_transaction) {
        if (state.transaction_on_primary) return route_target::primary;
        // A failed transaction only takes ROLLBACK; a read-only one refuses writes itself.
        if (state.transaction_failed || state.transaction_read_only)
            return route_target::transaction_node;
        if (!needs_primary(unit.cls) && !unit.pins_session) return route_target::transaction_node;
        return route_target::primary;  // the transaction's first write: it moves there
    }
    if (needs_primary(unit.cls) || unit.pins_session || state.pinned) return route_target::primary;
    if (lb.on_write == config::lb_on_write::always && state.wrote) return route_target::primary;
    if (unit.opens_transaction) {
        if (unit.pins_to_primary) return route_target::primary;
        if (lb.on_write == config::lb_on_write::trans_transaction && state.wrote_in_transaction &&
            !unit.read_only_transaction)
            return route_target::primary;
        return route_target::read_node;
    }
    if (unit.cls == statement_class::session_state) return route_target::current;
    return route_target::read_node;
}

}  // namespace pgpilot::router
