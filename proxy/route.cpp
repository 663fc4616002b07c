// The routing half of a session: where each unit of client traffic goes, bringing the chosen
// backend connection to the session's state first, and what a unit changes in that state.
// docs/routing.md describes the behaviour; router/ holds the pure decisions.
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <cctype>
#include <random>

#include "ha/log.hpp"
#include "protocol/messages.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/admin.hpp"
#include "proxy/session.hpp"
#include "router/balance.hpp"
#include "router/node_command.hpp"
#include "router/sql_lexer.hpp"

namespace pgpilot::proxy {

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
using response = backend_link::response;

double uniform() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

std::string upper(std::string_view s) {
    std::string u(s);
    for (auto& c : u)
        c = char(std::toupper(static_cast<unsigned char>(c)));
    return u;
}

/// SET LOCAL ...: a setting that ends with its transaction.
bool is_set_local(std::string_view text) {
    router::lexed_query q(text.substr(0, 64));
    const auto& statements = q.statements();
    if (statements.empty()) return false;
    const auto& t = statements[0].tokens;
    return t.size() >= 2 && t[0].upper == "SET" && t[1].upper == "LOCAL";
}

/// What running a session-state statement does to prepared statements.
std::string drops_of(const router::statement_info& info, std::string_view text) {
    if (!info.deallocate_name.empty()) return info.deallocate_name;
    const auto u = upper(text);
    const auto d = u.find("DISCARD");
    if (d != std::string::npos && u.find("ALL", d) != std::string::npos) return "*";
    return {};
}

void apply_drops(ha::backend_connection& conn, const std::string& drops) {
    if (drops == "*")
        conn.statements.clear();
    else if (!drops.empty())
        conn.statements.erase(drops);
}

/// pgpilot's own SHOW commands, with any case, spacing and a trailing semicolon.
enum class admin_show { none, pool_nodes, pools, pool_version };
admin_show admin_show_command(std::string_view text) {
    if (text.size() > 256 || !router::contains_ascii_ci(text, "POOL")) return admin_show::none;
    router::lexed_query q(text);
    const auto& statements = q.statements();
    if (statements.size() != 1) return admin_show::none;
    const auto& t = statements[0].tokens;
    if (t.size() != 2 || t[0].upper != "SHOW") return admin_show::none;
    if (t[1].upper == "POOL_NODES") return admin_show::pool_nodes;
    if (t[1].upper == "POOLS") return admin_show::pools;
    if (t[1].upper == "POOL_VERSION") return admin_show::pool_version;
    return admin_show::none;
}

}  // namespace

const router::function_policy& session::policy() const {
    // Built for every statement, it cost a copy of both function lists, a std::function on
    // the heap and a lock of the shared map (callgrind: 2.5 % of a pgbench -S transaction).
    if (policy_final_) return *policy_;
    const auto& lb = shared_.settings.load_balance;
    if (!policy_) policy_ = std::make_unique<router::function_policy>();
    auto& p = *policy_;
    p.write_functions = lb.write_functions;
    p.read_only_functions = lb.read_only_functions;
    p.is_volatile = nullptr;
    if (auto names = shared_.volatiles.find(database_)) {
        p.is_volatile = [names](std::string_view name) {
            return names->contains(std::string(name));
        };
        policy_final_ = true;
    }
    return p;
}

void session::on_client_ready(char status) {
    const char before = client_tx_status_;
    client_tx_status_ = status;
    if (shared_.timeouts.client_idle.count() > 0 ||
        shared_.timeouts.idle_in_transaction.count() > 0)
        client_idle_since_ = std::chrono::steady_clock::now();
    if (status == 'I') {
        // A committed transaction's SETs stay in effect for the session (a rolled-back or
        // failed one's do not).
        if (before == 'T' && tx_commits_ && tx_node_ >= 0 && links_[std::size_t(tx_node_)].conn) {
            for (auto& setting : tx_settings_)
                record_setting(std::move(setting), links_[std::size_t(tx_node_)]);
        }
        tx_settings_.clear();
        tx_commits_ = false;
        if (tx_node_ >= 0 && tx_wrote_) route_.wrote_in_transaction = true;
        set_tx_node(-1);
        tx_wrote_ = false;
        tx_log_.clear();
        route_.in_transaction = false;
        route_.transaction_failed = false;
        route_.transaction_on_primary = false;
        route_.transaction_read_only = false;
        return;
    }
    route_.in_transaction = true;
    route_.transaction_failed = status == 'E';
    if (tx_node_ < 0) {
        set_tx_node(reading_);
        route_.transaction_on_primary = current_primary() == reading_;
    }
}

void session::set_tx_node(int node) {
    if (node == tx_node_) return;
    if (tx_node_ >= 0) shared_.open_transactions[std::size_t(tx_node_)].fetch_sub(1);
    if (node >= 0) shared_.open_transactions[std::size_t(node)].fetch_add(1);
    tx_node_ = node;
}

net::awaitable<void> session::wait_drained() {
    while (active_ >= 0 && !links_[std::size_t(active_)].queue.empty()) {
        drained_.expires_at(std::chrono::steady_clock::time_point::max());
        co_await drained_.async_wait(use_tuple);
        // Woken by backend_to_client (or by shutdown: the next await throws then).
    }
}

void session::switch_to(int node) {
    if (node == active_ && !cancel_target_stale_) return;
    const int old = active_;
    active_ = node;
    cancel_target_stale_ = false;
    auto& conn = *links_[std::size_t(node)].conn;
    shared_.cancels.set(proxy_pid_, proxy_key_, cancel_target{conn.address, conn.pid, conn.key});
    // backend_to_client waits on the old node's socket, or for a new connection: wake it to
    // read this one.
    if (old >= 0 && old != node && reading_ == old && links_[std::size_t(old)].conn) {
        error_code ignored;
        links_[std::size_t(old)].conn->socket.cancel(ignored);
    }
    link_ready_.cancel();
}

session::read_choice session::pick_read_node() {
    const auto& lb = shared_.settings.load_balance;
    auto snapshot = shared_.registry.snapshot();
    const auto now = std::chrono::steady_clock::now();
    auto usable = [&](int id) {
        return id >= 0 && std::size_t(id) < snapshot->nodes.size() &&
               router::readable(snapshot->nodes[std::size_t(id)], lb) &&
               now >= links_[std::size_t(id)].retry_after;
    };
    read_choice c;
    c.node = lb.statement_level ? -1 : lb_node_;
    if (!usable(c.node)) {
        auto chosen = router::choose_read_node(*snapshot, lb, database_, application_name_,
                                               uniform(), uniform());
        c.node = chosen && usable(*chosen) ? *chosen : -1;
        if (!lb.statement_level) lb_node_ = c.node;
    }
    if (c.node < 0) return c;
    switch (lb.consistency) {
        case config::consistency_mode::global:
            c.required = shared_.written_lsn.get();
            break;
        case config::consistency_mode::session:
            c.required = session_lsn_;
            break;
        case config::consistency_mode::eventual:
            break;
    }
    c.caught_up = router::has_replayed(snapshot->nodes[std::size_t(c.node)], c.required);
    if (c.caught_up)
        log::debug("s{} read on node {}: replayed {} >= {}", id_, c.node,
                   router::lsn_text{snapshot->nodes[std::size_t(c.node)].wal_lsn},
                   router::lsn_text{c.required});
    return c;
}

// A standby for a read, or the primary when none may serve it (consistency, lag, weights).
net::awaitable<std::optional<int>> session::read_node() {
    const auto c = pick_read_node();
    if (c.node < 0) co_return co_await await_primary();
    if (c.caught_up) co_return c.node;

    // Behind: give it consistency_wait_ms to catch up (asking ha/ for a fresh replay position
    // at once rather than at the next period), then read from the primary.
    const auto& lb = shared_.settings.load_balance;
    if (lb.consistency_wait_ms > 0) shared_.registry.request_replication_check();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::microseconds(std::int64_t(lb.consistency_wait_ms * 1000));
    net::steady_timer t(client_.get_executor());
    while (std::chrono::steady_clock::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(1));
        co_await t.async_wait(use_tuple);
        auto snapshot = shared_.registry.snapshot();
        if (router::has_replayed(snapshot->nodes[std::size_t(c.node)], c.required))
            co_return c.node;
    }
    log::debug("s{} node {} has not replayed {} yet: reading from the primary", id_, c.node,
               router::lsn_text{c.required});
    co_return co_await await_primary();
}

void session::classify_unit(unit& u) const {
    std::vector<router::statement_info> infos;
    if (u.function_call || u.unclassified) {
        infos.emplace_back();  // unknown: the primary
    } else if (u.query) {
        infos = router::classify(u.text, policy());
    } else {
        for (const auto& p : u.parsed)
            infos.push_back(p.info);
        for (const auto& m : u.messages) {
            if (m.tag != 'B' && !(m.tag == 'D' && m.kind == 'S')) continue;
            const bool parsed_here = std::any_of(u.parsed.begin(), u.parsed.end(),
                                                 [&](const auto& p) { return p.name == m.name; });
            if (parsed_here) continue;
            auto it = prepared_.find(m.name);
            if (it != prepared_.end())
                infos.push_back(it->second.info);
            else
                infos.emplace_back();  // unknown statement: the primary says what is wrong
        }
    }
    // SQL PREPARE/EXECUTE: statements prepared with SQL live on the primary only.
    for (auto& i : infos)
        if (!i.prepare_name.empty() || !i.execute_name.empty())
            i.cls = router::statement_class::write;
    u.summary = router::summarize(infos);
    u.infos = std::move(infos);
    // Parse texts were scanned when their Parse arrived (unit::parse, prepared_statement);
    // a bound statement counts for COPY only (its session state counted when it was parsed).
    auto mark = [&u](const router::text_markers& m, bool parsed_here) {
        u.copy_in = u.copy_in || m.copy_in;
        u.holds_session_state = u.holds_session_state || (parsed_here && m.holds_session_state);
    };
    if (u.query) mark(router::markers_of(u.text), true);
    for (const auto& p : u.parsed)
        mark(p.markers, true);
    for (const auto& m : u.messages)
        if (m.tag == 'B')
            if (auto it = prepared_.find(m.name); it != prepared_.end())
                mark(it->second.markers, false);
}

std::optional<int> session::choose_node_now(const unit& u, bool& move_transaction) {
    move_transaction = false;
    switch (router::decide_route(u.summary, route_, shared_.settings.load_balance)) {
        case router::route_target::primary: {
            auto primary = primary_now();
            move_transaction = primary && route_.in_transaction && tx_node_ != *primary;
            return primary;
        }
        case router::route_target::transaction_node: {
            const int node = tx_node_ >= 0 ? tx_node_ : active_;
            auto snapshot = shared_.registry.snapshot();
            if (snapshot->failover_in_progress && node >= 0 &&
                std::size_t(node) < snapshot->nodes.size() &&
                snapshot->nodes[std::size_t(node)].role == router::node_role::primary)
                return std::nullopt;  // held until the failover is over: choose_node()
            return node;
        }
        case router::route_target::current:
            if (active_ >= 0 && links_[std::size_t(active_)].conn) return active_;
            return primary_now();
        case router::route_target::read_node:
            // With statement_level every pick draws a standby: one drawn here and found
            // behind, then another in choose_node(), would change the weights' odds. Otherwise
            // a draw here is kept in lb_node_, and choose_node() takes the same standby.
            if (shared_.settings.load_balance.statement_level) return std::nullopt;
            {
                const auto c = pick_read_node();
                if (c.node < 0) return primary_now();
                if (c.caught_up) return c.node;
            }
            return std::nullopt;
    }
    return std::nullopt;
}

net::awaitable<std::optional<int>> session::choose_node(unit& u, bool& move_transaction) {
    if (auto node = choose_node_now(u, move_transaction)) co_return node;
    // What has to wait: for a primary (a failover runs, or none is known yet), or for a
    // standby to replay what the read must see.
    switch (router::decide_route(u.summary, route_, shared_.settings.load_balance)) {
        case router::route_target::primary: {
            auto primary = co_await await_primary();
            move_transaction = primary && route_.in_transaction && tx_node_ != *primary;
            co_return primary;
        }
        case router::route_target::transaction_node: {
            // A transaction on the primary waits out a failover or switchover like any other
            // statement for the primary; if its node is gone afterwards, so is the transaction.
            const int node = tx_node_ >= 0 ? tx_node_ : active_;
            co_await await_primary();
            co_return node;
        }
        case router::route_target::current:
            co_return co_await await_primary();
        case router::route_target::read_node:
            co_return co_await read_node();
    }
    co_return co_await await_primary();
}

// Before the client's unit: what the connection must run first so that the client cannot
// tell it from the one it used before (pgpilot's own statements; their answers are dropped).
void session::build_prefix(int node, bool move_transaction, std::string& out) {
    auto& link = links_[std::size_t(node)];
    auto hidden = [&](std::string_view sql) {
        protocol::append_query(out, sql);
        link.queue.push_back(response{response::kind::hidden});
        link.conn->statements.erase("");  // a simple Query drops the unnamed statement
    };
    // A transaction left open here when the client's transaction moved elsewhere.
    if (link.conn->tx_status != 'I' && node != tx_node_) {
        hidden("ROLLBACK");
        link.conn->tx_status = 'I';
    }
    // A connection another client used (transaction pooling) with other settings.
    if (link.settings_applied == 0 && link.conn->settings_fingerprint != 0 &&
        link.conn->settings_fingerprint != set_fingerprint_)
        hidden("RESET ALL");
    for (; link.settings_applied < set_log_.size(); ++link.settings_applied) {
        const auto& s = set_log_[link.settings_applied];
        hidden(s.text);
        apply_drops(*link.conn, s.drops);
    }
    link.conn->settings_fingerprint = set_fingerprint_;
    if (move_transaction) {
        for (const auto& s : tx_log_)
            hidden(s);
        log::debug("s{} transaction moves from node {} to node {}", id_, tx_node_, node);
        set_tx_node(node);
        route_.transaction_on_primary = true;
    }
}

// The unit's messages, with Parses (and Closes of stale statements) pgpilot adds where the
// client binds a statement this connection does not have.
void session::inject_statements(int node, unit& u, std::string& out) {
    auto& link = links_[std::size_t(node)];
    auto& conn = *link.conn;
    auto& entry = link.queue.back();
    const auto tick = ++statement_tick_;
    std::size_t copied = 0;
    std::size_t parse_index = 0;
    std::vector<std::string> parsed_here;
    // The connection has `name`, but not as the client's statement of that name (another
    // client's, in transaction pooling, or one the client closed elsewhere).
    auto stale = [&](const std::string& name) {
        auto have = conn.statements.find(name);
        if (have == conn.statements.end() || name.empty()) return false;
        auto it = prepared_.find(name);
        return it == prepared_.end() || it->second.parse_frame != have->second.parse_frame;
    };
    auto close = [&](const std::string& name) {
        protocol::append_close(out, 'S', name);
        ++entry.swallow_close;
        conn.statements.erase(name);
    };
    auto close_stale = [&](const std::string& name) {
        if (stale(name)) close(name);
    };
    // Transaction pooling: at most max_prepared_statements per connection; the least
    // recently used one not used by this unit goes first.
    auto make_room = [&] {
        if (pool_.mode != config::pool_mode::transaction) return;
        while (conn.statements.size() >= std::size_t(pool_.max_prepared_statements)) {
            auto victim = conn.statements.end();
            for (auto it = conn.statements.begin(); it != conn.statements.end(); ++it)
                if (!it->first.empty() && it->second.last_use != tick &&
                    (victim == conn.statements.end() ||
                     it->second.last_use < victim->second.last_use))
                    victim = it;
            if (victim == conn.statements.end()) return;
            const std::string name = victim->first;
            close(name);
        }
    };
    for (const auto& m : u.messages) {
        if (m.tag == 'P' && parse_index < u.parsed.size()) {
            const auto& p = u.parsed[parse_index++];
            out.append(u.bytes, copied, m.offset - copied);
            copied = m.offset;
            close_stale(p.name);
            make_room();
            auto frame = u.bytes.substr(m.offset, m.size);
            conn.statements[p.name] = {frame, tick};
            prepared_[p.name] = prepared_statement{std::move(frame), p.info, p.text, p.markers};
            parsed_here.push_back(p.name);
        } else if (m.tag == 'B' || (m.tag == 'D' && m.kind == 'S')) {
            if (std::find(parsed_here.begin(), parsed_here.end(), m.name) != parsed_here.end())
                continue;
            auto it = prepared_.find(m.name);
            if (it == prepared_.end()) continue;
            auto have = conn.statements.find(m.name);
            if (have != conn.statements.end() &&
                have->second.parse_frame == it->second.parse_frame) {
                have->second.last_use = tick;
                continue;
            }
            out.append(u.bytes, copied, m.offset - copied);
            copied = m.offset;
            close_stale(m.name);
            make_room();
            out += it->second.parse_frame;
            ++entry.swallow_parse;
            conn.statements[m.name] = {it->second.parse_frame, tick};
            parsed_here.push_back(m.name);
        } else if (m.tag == 'C' && m.kind == 'S') {
            prepared_.erase(m.name);
            conn.statements.erase(m.name);
        }
    }
    out.append(u.bytes, copied, std::string::npos);
}

// What a unit changes in the session: writes seen, pins, the statements to replay elsewhere.
void session::after_dispatch(const unit& u, int node) {
    const auto& s = u.summary;
    const auto primary = current_primary();
    if (s.cls == router::statement_class::read) {
        shared_.select_count[std::size_t(node)].fetch_add(1, std::memory_order_relaxed);
    }
    const bool wrote =
        (s.cls == router::statement_class::write || s.cls == router::statement_class::unknown) &&
        primary == node;
    if (wrote) {
        route_.wrote = true;
        if (route_.in_transaction || s.opens_transaction) tx_wrote_ = true;
    }
    if (s.pins_session || (s.pins_to_primary && !s.opens_transaction && !route_.in_transaction))
        route_.pinned = true;
    // State that lives on this connection alone: losing the connection must end the session,
    // and transaction pooling must not hand it to another client.
    auto& holder = links_[std::size_t(node)];
    if (!holder.holds_state &&
        (s.pins_session ||
         std::any_of(u.infos.begin(), u.infos.end(),
                     [](const auto& i) { return !i.prepare_name.empty(); }) ||
         u.holds_session_state)) {
        holder.holds_state = true;
        if (pool_.mode == config::pool_mode::transaction) {
            holder.pin = shared_.pool.pin(*holder.conn);
            log::info(
                "s{} keeps its connection to node {} until it ends (session state: "
                "temporary objects, LISTEN, SQL PREPARE, WITH HOLD cursors or advisory "
                "locks)",
                id_, node);
        }
    }
    if (s.opens_transaction)
        route_.transaction_read_only = s.read_only_transaction && !s.pins_to_primary;

    // Session-state statements: into the transaction's log, or the session's.
    std::vector<std::pair<const router::statement_info*, std::string_view>> executed;
    if (u.query) {
        bool any = std::any_of(u.infos.begin(), u.infos.end(), [](const auto& i) {
            return i.cls == router::statement_class::session_state;
        });
        if (!any) return;
        auto texts = router::split_statements(u.text);
        if (texts.size() != u.infos.size()) {
            log::warning(
                "s{} could not split a query into its statements; its SET/BEGIN "
                "statements will not be replayed on other nodes",
                id_);
            return;
        }
        for (std::size_t i = 0; i < texts.size(); ++i)
            executed.emplace_back(&u.infos[i], texts[i]);
    } else {
        for (const auto& m : u.messages) {
            if (m.tag != 'B') continue;
            auto it = prepared_.find(m.name);
            if (it != prepared_.end()) executed.emplace_back(&it->second.info, it->second.text);
        }
    }
    bool open = route_.in_transaction;
    auto& link = links_[std::size_t(node)];
    for (const auto& [info, text] : executed) {
        if (info->cls != router::statement_class::session_state) continue;
        if (info->begins_transaction) {
            tx_log_.clear();
            tx_log_.emplace_back(text);
            open = true;
        } else if (info->ends_transaction) {
            open = false;
            const auto u = upper(text.substr(0, 16));
            tx_commits_ = u.rfind("ROLLBACK", 0) != 0 && u.rfind("ABORT", 0) != 0;
        } else if (open) {
            tx_log_.emplace_back(text);
            if (!is_set_local(text))
                tx_settings_.push_back({std::string(text), drops_of(*info, text)});
        } else {
            record_setting({std::string(text), drops_of(*info, text)}, link);
        }
    }
}

void session::record_setting(session_setting setting, backend_link& ran_on) {
    // The same statement again only moves to the end (applications that SET the same thing
    // for every request must not grow the log).
    std::erase_if(set_log_, [&](const auto& e) { return e.text == setting.text; });
    apply_drops(*ran_on.conn, setting.drops);
    set_log_.push_back(std::move(setting));
    for (auto& other : links_)
        other.settings_applied = std::min(other.settings_applied, set_log_.size() - 1);
    ran_on.settings_applied = set_log_.size();
    set_fingerprint_ = settings_fingerprint(set_log_.size());
    ran_on.conn->settings_fingerprint = set_fingerprint_;
}

std::uint64_t session::settings_fingerprint(std::size_t applied) const {
    if (applied == 0) return 0;
    std::uint64_t h = 14695981039346656037ull;  // FNV-1a over the texts, each ended by a 0
    for (std::size_t i = 0; i < applied && i < set_log_.size(); ++i) {
        for (char c : set_log_[i].text) {
            h ^= static_cast<unsigned char>(c);
            h *= 1099511628211ull;
        }
        h *= 1099511628211ull;
    }
    return h == 0 ? 1 : h;
}

void session::append_lsn_query(backend_link& link, std::string& out, bool replaces_ready) {
    link.lsn_owed = backend_link::deferred_lsn::none;
    response r{response::kind::lsn};
    // The client's entry is the last one unless its ReadyForQuery already arrived (a COPY
    // that failed early): then the query only records the position.
    if (replaces_ready && !link.queue.empty() && link.queue.back().k == response::kind::client) {
        link.queue.back().replace_ready = true;
        r.forward_ready = true;
    }
    protocol::append_query(out, "SELECT pg_catalog.pg_current_wal_insert_lsn()");
    link.conn->statements.erase("");  // a simple Query drops the unnamed statement
    link.queue.push_back(r);
}

net::awaitable<session_end> session::answer_locally(std::string response_bytes) {
    co_await wait_drained();
    local_writing_ = true;
    auto ec = co_await send_client(response_bytes);
    local_writing_ = false;
    local_done_.cancel();
    co_return ec ? session_end::client_disconnected : session_end::client_terminated;
}

std::string session::show_pools() const {
    static constexpr std::string_view columns[] = {
        "database",      "user",    "node_id",   "pool_mode", "cl_waiting",  "cl_pinned",
        "sv_active",     "sv_idle", "pool_size", "maxwait",   "total_waits", "total_wait_timeouts",
        "total_connects"};
    const auto pools = pool_views(shared_);
    std::string out;
    protocol::append_text_row_description(out, columns);
    for (const auto& [p, mode] : pools) {
        std::optional<std::string> values[] = {p.database,
                                               p.user,
                                               std::to_string(p.node),
                                               mode,
                                               std::to_string(p.waiting),
                                               std::to_string(p.pinned),
                                               std::to_string(p.open - p.idle),
                                               std::to_string(p.idle),
                                               std::to_string(p.pool_size),
                                               fmt::format("{:.3f}", p.max_wait),
                                               std::to_string(p.waits),
                                               std::to_string(p.timeouts),
                                               std::to_string(p.connects)};
        protocol::append_text_data_row(out, values);
    }
    protocol::append_command_complete(out, fmt::format("SELECT {}", pools.size()));
    protocol::append_ready_for_query(out, client_tx_status_);
    return out;
}

std::string session::show_pool_nodes() const {
    static constexpr std::string_view columns[] = {"node_id",
                                                   "hostname",
                                                   "port",
                                                   "status",
                                                   "pg_status",
                                                   "lb_weight",
                                                   "role",
                                                   "pg_role",
                                                   "select_cnt",
                                                   "load_balance_node",
                                                   "replication_delay",
                                                   "replication_state",
                                                   "replication_sync_state",
                                                   "last_status_change"};
    const auto nodes = node_views(shared_, *shared_.registry.snapshot());
    std::string out;
    protocol::append_text_row_description(out, columns);
    for (const auto& n : nodes) {
        std::optional<std::string> values[] = {std::to_string(n.id),
                                               n.host,
                                               std::to_string(n.port),
                                               n.status,
                                               n.status,
                                               fmt::format("{:.6f}", n.lb_weight),
                                               n.role,
                                               n.role,
                                               std::to_string(n.select_cnt),
                                               (lb_node_ == n.id) ? "true" : "false",
                                               std::to_string(n.replication_delay),
                                               n.replication_state,
                                               n.replication_sync_state,
                                               n.last_status_change};
        protocol::append_text_data_row(out, values);
    }
    protocol::append_command_complete(out, fmt::format("SELECT {}", nodes.size()));
    protocol::append_ready_for_query(out, client_tx_status_);
    return out;
}

// A read outside a transaction, whole: kept until the next unit, to run it elsewhere should
// its node fail before answering (backend_to_client). A read changes nothing, so running it
// again cannot do what the client did not ask for.
void session::keep_for_replay(const unit& u, int node) {
    const bool replayable =
        !u.continuation && u.ends_batch && !u.streamed && !u.copy_in && !u.function_call &&
        !u.unclassified && client_tx_status_ == 'I' && !route_.in_transaction &&
        u.summary.cls == router::statement_class::read && !u.summary.opens_transaction;
    if (!replayable) {
        replay_.reset();
        return;
    }
    if (!replay_) replay_ = std::make_unique<unit_copy>();
    replay_->u = u;
    replay_->node = node;
    if (u.query) {
        // The text is a view into the client's buffer: point it into the copy (a Query frame
        // is the tag, the length, the text and its terminating NUL).
        const std::string_view bytes = replay_->u.bytes;
        if (bytes.size() < protocol::header_size + 1 || bytes[0] != 'Q') {
            replay_.reset();
            return;
        }
        replay_->u.text =
            bytes.substr(protocol::header_size, bytes.size() - protocol::header_size - 1);
    }
}

// Node control on the client port (docs/ha.md). Answered by pgpilot: an ErrorResponse for a
// syntax error, a user who may not, or a refusal; otherwise a NOTICE saying what was done.
net::awaitable<std::string> session::node_control(const router::node_command& command) {
    std::string out;
    auto fail = [&](std::string_view code, std::string message) {
        protocol::append_error_response(out, {"ERROR", code, std::move(message), {}, {}});
        protocol::append_ready_for_query(out, client_tx_status_);
        return out;
    };
    if (!command.error.empty()) co_return fail(protocol::sqlstate::syntax_error, command.error);
    const auto login = shared_.login_settings();
    const auto& admins = login->auth.admin_users;
    if (!superuser_ && std::find(admins.begin(), admins.end(), user_) == admins.end())
        co_return fail(protocol::sqlstate::insufficient_privilege,
                       fmt::format("permission denied: {} needs a superuser or a user listed in "
                                   "[auth] admin_users",
                                   router::to_string(command)));
    if (client_tx_status_ != 'I')
        co_return fail(
            protocol::sqlstate::active_sql_transaction,
            fmt::format("{} cannot run inside a transaction block", router::to_string(command)));
    log::warning("s{} user \"{}\" runs {}", id_, user_, router::to_string(command));
    const auto r = co_await run_node_command(shared_, command, client_.get_executor());
    switch (r.result) {
        case node_command_outcome::kind::no_such_node:
            co_return fail(protocol::sqlstate::invalid_parameter_value, r.message);
        case node_command_outcome::kind::shutting_down:
            co_return fail(protocol::sqlstate::admin_shutdown, r.message);
        default:
            break;
    }
    const bool ok = r.result == node_command_outcome::kind::done;
    log::warning("s{} {}: {}{}", id_, router::to_string(command), ok ? "" : "refused: ", r.message);
    if (!ok)
        co_return fail(protocol::sqlstate::object_not_in_prerequisite_state,
                       fmt::format("{} failed: {}", router::to_string(command), r.message));
    protocol::append_notice_response(
        out, {"NOTICE", protocol::sqlstate::successful_completion, r.message, {}, {}});
    auto tag = router::to_string(command);
    protocol::append_command_complete(out, tag.substr(0, tag.find(" NODE")) + " NODE");
    protocol::append_ready_for_query(out, client_tx_status_);
    co_return out;
}

net::awaitable<session_end> session::dispatch(unit& u) {
    while (dispatching_) {
        dispatch_done_.expires_at(std::chrono::steady_clock::time_point::max());
        co_await dispatch_done_.async_wait(use_tuple);
        if (shared_.stopping.load()) co_return session_end::admin_shutdown;
    }
    dispatching_ = true;
    struct done_guard {
        session& s;
        ~done_guard() {
            s.dispatching_ = false;
            try {
                s.dispatch_done_.cancel();  // Asio's throwing overload; a destructor must not throw
            } catch (...) {
            }
        }
    } guard{*this};
    co_return co_await dispatch_one(u);
}

bool session::parse_only_between_transactions(const unit& u) const {
    if (pool_.mode != config::pool_mode::transaction || u.continuation || !u.ends_batch ||
        u.parsed.empty() || client_tx_status_ != 'I' || route_.in_transaction)
        return false;
    for (const auto& link : links_)
        if (link.conn) return false;
    for (const auto& m : u.messages)
        if (m.tag != 'P' && m.tag != 'S') return false;
    for (const auto& p : u.parsed)
        if (p.name.empty() || prepared_.count(p.name)) return false;
    return true;
}

net::awaitable<session_end> session::dispatch_one(unit& u) {
    if (parse_only_between_transactions(u)) {
        // Transaction pooling: a client that only prepares named statements (libpq's
        // PQprepare: Parse + Sync) between transactions is answered without a connection;
        // the statements are prepared on whichever connection first runs them, as any
        // statement this client made elsewhere. Taking a connection for it could deadlock a
        // client that drives several connections from one thread (pgbench -M prepared with
        // fewer server connections than clients) while it holds others in transactions.
        std::string answer;
        std::size_t parse_index = 0;
        for (const auto& m : u.messages) {
            if (m.tag != 'P') continue;
            const auto& p = u.parsed[parse_index++];
            prepared_[p.name] =
                prepared_statement{u.bytes.substr(m.offset, m.size), p.info, p.text, p.markers};
            protocol::append_parse_complete(answer);
        }
        protocol::append_ready_for_query(answer, client_tx_status_);
        co_return co_await answer_locally(std::move(answer));
    }
    if (u.query) {
        switch (admin_show_command(u.text)) {
            case admin_show::pool_nodes:
                co_return co_await answer_locally(show_pool_nodes());
            case admin_show::pools:
                co_return co_await answer_locally(show_pools());
            case admin_show::pool_version: {
                // pgpool-II's one column, which its scripts read.
                static constexpr std::string_view columns[] = {"pool_version"};
                std::optional<std::string> values[] = {"pgpilot " PGPILOT_VERSION};
                std::string out;
                protocol::append_text_row_description(out, columns);
                protocol::append_text_data_row(out, values);
                protocol::append_command_complete(out, "SHOW");
                protocol::append_ready_for_query(out, client_tx_status_);
                co_return co_await answer_locally(std::move(out));
            }
            case admin_show::none:
                break;
        }
    }
    if (u.query) {
        if (auto command = router::parse_node_command(u.text)) {
            std::string answer = co_await node_control(*command);
            co_return co_await answer_locally(std::move(answer));
        }
    }

    // The Sync after an extended-protocol COPY FROM STDIN: it completes the batch that started
    // the COPY (the server ignored that batch's own Sync).
    if (!u.continuation && u.messages.size() == 1 && u.messages[0].tag == 'S' && active_ >= 0 &&
        links_[std::size_t(active_)].absorb_sync) {
        auto& link = links_[std::size_t(active_)];
        link.absorb_sync = false;
        std::string out = u.bytes;
        if (link.lsn_owed == backend_link::deferred_lsn::after_copy_sync)
            append_lsn_query(link, out, true);
        auto ec = co_await write_all(link.conn->socket, out);
        if (ec) {
            end_detail_ = "write to backend: " + ec.message();
            co_return session_end::backend_disconnected;
        }
        co_return session_end::client_terminated;
    }
    classify_unit(u);
    int node = -1;
    bool move = false;
    if (u.continuation) {
        node = unit_node_;
    } else {
        retire_links();
        const auto started = std::chrono::steady_clock::now();
        // Made when a connect is retried: a timer costs a reactor lock to destroy.
        std::optional<net::steady_timer> pause;
        for (;;) {
            auto chosen = choose_node_now(u, move);
            if (!chosen) chosen = co_await choose_node(u, move);
            if (!chosen) {
                const std::string reason =
                    router::route_to_primary(*shared_.registry.snapshot()).reason;
                co_await send_fatal(protocol::sqlstate::connection_failure,
                                    fmt::format("pgpilot: {}", reason));
                co_return session_end::no_backend;
            }
            if (route_.in_transaction && *chosen == tx_node_) {
                auto snapshot = shared_.registry.snapshot();
                const auto& n = snapshot->nodes.at(std::size_t(*chosen));
                if (n.status != router::node_status::up) {
                    // Its node failed or was detached (a switchover): the transaction cannot
                    // go on anywhere else, and must not commit on a node that is not the
                    // primary any more.
                    end_detail_ = fmt::format("node {} of the open transaction is {}", *chosen,
                                              router::to_string(n.status));
                    std::string message = fmt::format(
                        "terminating connection because node {} of the open transaction is {}: {}",
                        *chosen, router::to_string(n.status), n.status_reason);
                    co_await send_fatal(protocol::sqlstate::admin_shutdown, std::move(message));
                    co_return session_end::no_backend;
                }
            }
            // Only one node has answers in flight at a time: the client reads them in order.
            if (*chosen != active_ && active_ >= 0 && !links_[std::size_t(active_)].queue.empty()) {
                co_await wait_drained();
                continue;  // the transaction state may have changed meanwhile: decide again
            }
            bool ready = link_ready_now(*chosen);
            if (!ready) ready = co_await ensure_link(*chosen);
            if (ready) {
                node = *chosen;
                break;
            }
            auto& failure = links_[std::size_t(*chosen)].failure;
            const bool tx_here = route_.in_transaction && tx_node_ == *chosen;
            if (current_primary() == *chosen || tx_here) {
                // The primary cannot be reached: the health check confirms that at once (a
                // session's report) and a failover begins; until then, or hold_timeout, the
                // statement waits and tries again, as it would while the failover runs.
                const bool node_trouble = failure.unreachable || failure.local;
                if (!tx_here && node_trouble &&
                    std::chrono::steady_clock::now() - started < shared_.registry.hold_timeout()) {
                    if (!pause) pause.emplace(client_.get_executor());
                    pause->expires_after(std::chrono::milliseconds(20));
                    co_await pause->async_wait(use_tuple);
                    if (shared_.stopping.load()) co_return session_end::admin_shutdown;
                    continue;
                }
                end_detail_ = failure.message;
                if (!failure.error_frame.empty()) {
                    co_await send_client(failure.error_frame);
                } else {
                    const std::string code =
                        failure.sqlstate.empty()
                            ? std::string(protocol::sqlstate::connection_failure)
                            : failure.sqlstate;
                    std::string message = "pgpilot: " + failure.message;
                    co_await send_fatal(code, std::move(message));
                }
                co_return session_end::no_backend;
            }
            // A standby we cannot use (down, database not there yet, full): the primary reads.
            if (lb_node_ == *chosen) lb_node_ = -1;
            links_[std::size_t(*chosen)].retry_after =
                std::chrono::steady_clock::now() + std::chrono::seconds(1);
        }
        switch_to(node);
        unit_node_ = node;
    }

    auto& link = links_[std::size_t(node)];
    std::string out;
    if (!u.continuation) {
        build_prefix(node, move, out);
        response r{response::kind::client};
        r.extended = !u.messages.empty();
        link.queue.push_back(r);
    }
    if (u.ends_batch && !link.queue.empty()) {
        link.queue.back().synced = true;
        link.queue.back().pgpilot_sync = u.pgpilot_sync;
    }
    if (u.messages.empty())
        out += u.bytes;
    else
        inject_statements(node, u, out);
    if (u.query) link.conn->statements.erase("");  // a simple Query drops the unnamed statement

    after_dispatch(u, node);
    if (!u.continuation) batch_infos_.clear();
    batch_infos_.insert(batch_infos_.end(), u.infos.begin(), u.infos.end());
    // After a write that commits on the primary, learn its WAL position before the client
    // hears ReadyForQuery, so that no later read (from any session) can miss it.
    const auto& lb = shared_.settings.load_balance;
    if (u.ends_batch && !u.pgpilot_sync && lb.enabled &&
        lb.consistency != config::consistency_mode::eventual && current_primary() == node) {
        const auto batch = router::summarize(batch_infos_);
        const bool wrote = batch.cls == router::statement_class::write ||
                           batch.cls == router::statement_class::unknown || tx_wrote_;
        const bool commits =
            route_.in_transaction ? batch.ends_transaction : !batch.opens_transaction;
        if (wrote && commits) {
            // Nothing may follow a message still streaming, or a COPY FROM STDIN before its
            // end: the query waits for that.
            using owed = backend_link::deferred_lsn;
            if (u.streamed)
                link.lsn_owed = owed::after_stream;
            else if (u.copy_in)
                link.lsn_owed = u.messages.empty() ? owed::after_copy_done : owed::after_copy_sync;
            else
                append_lsn_query(link, out, true);
        }
    }
    keep_for_replay(u, node);
    auto ec = co_await write_all(link.conn->socket, out);
    if (ec) {
        if (ec == net::error::operation_aborted) co_return session_end::admin_shutdown;
        end_detail_ = "write to backend: " + ec.message();
        co_return session_end::backend_disconnected;
    }
    co_return session_end::client_terminated;
}

}  // namespace pgpilot::proxy
