// node_registry: failover (promote a standby, find the new primary, make the other standbys
// follow it), commands for failed standbys, failback. One job at a time, in order.
// GCC 12 reports a false -Wmismatched-new-delete at the end of some coroutines here: Asio's
// awaitable frames are allocated by their own operator new (through its recycling allocator,
// which GCC inlines) and freed by the matching operator delete.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <limits>

#include "ha/failover_policy.hpp"
#include "ha/log.hpp"
#include "ha/registry_internal.hpp"

namespace pgpilot::ha {

namespace {

/// How often nodes are probed while looking for the new primary. pg_promote(true) would tell
/// when the promotion is done, but it only looks every 100 ms; the search looks more often.
constexpr std::chrono::milliseconds search_interval{20};

constexpr std::string_view promotion_position_sql =
    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, "
    "pg_last_wal_replay_lsn()::text";

void log_output(const std::string& what, const char* stream, const std::string& text) {
    std::string_view rest = text;
    while (!rest.empty()) {
        auto eol = rest.find('\n');
        auto line = rest.substr(0, eol);
        rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
        if (!line.empty()) log::info("{} {}: {}", what, stream, line);
    }
}

}  // namespace

void node_registry::enqueue(job j) {
    jobs_.push_back(j);
    if (jobs_running_) return;
    jobs_running_ = true;
    spawn(run_jobs(), "failover");
}

net::awaitable<void> node_registry::run_jobs() {
    while (!jobs_.empty() && !stopping_) {
        const job j = jobs_.front();
        jobs_.pop_front();
        try {
            switch (j.what) {
                case job::kind::primary_failed:
                    co_await fail_over(j.node);
                    break;
                case job::kind::standby_failed:
                    co_await standby_failed(j.node);
                    break;
                case job::kind::failback:
                    co_await failed_back(j.node);
                    break;
            }
        } catch (const std::exception& e) {
            log::error("failover job for node {} failed: {}", j.node, e.what());
            if (j.what == job::kind::primary_failed) end_failover();
        }
    }
    jobs_running_ = false;
}

void node_registry::end_failover() {
    failover_in_progress_ = false;
    publish();
}

net::awaitable<void> node_registry::fail_over(int failed) {
    log::warning("failover: primary node {} failed; choosing the standby to promote", failed);

    // 1. The standby that has the most WAL.
    std::vector<promotion_candidate> candidates;
    for (std::size_t j = 0; j < nodes_.size(); ++j) {
        const auto& n = nodes_[j];
        if (int(j) == failed || n.status != router::node_status::up ||
            n.role != router::node_role::standby)
            continue;
        auto position = co_await promotion_position(int(j));
        if (stopping_) co_return;
        if (position) candidates.push_back({int(j), *position});
    }
    co_await take_over(failed, choose_promotion(candidates), false);
}

net::awaitable<int> node_registry::take_over(int old_primary, std::optional<int> chosen,
                                             bool old_primary_follows) {
    placeholder_values v;
    v.node = placeholder(old_primary);
    v.old_main = old_primary;
    v.old_primary = placeholder(old_primary);
    if (chosen) v.new_main = placeholder(*chosen);

    // 2. Promote it.
    bool promoted = false;
    if (!failover_.command.empty()) {
        std::string what = fmt::format("failover command for node {}", old_primary);
        std::string command = expand_placeholders(failover_.command, v);
        promoted = co_await run_user_command(what, command);
    } else if (!chosen) {
        log::error("failover: no standby answered: nothing to promote");
    } else if (failover_.builtin_promote) {
        promoted = co_await builtin_promote(*chosen);
    } else {
        log::info(
            "failover: no [failover] command and builtin_promote = false: waiting for a "
            "standby to be promoted by something else");
        promoted = true;
    }
    if (stopping_) co_return -1;

    // 3. Find the new primary; after a failed promotion, look once.
    auto deadline = steady_clock::now();
    if (promoted)
        deadline = failover_.search_primary_node_timeout > 0
                       ? deadline + to_ms(failover_.search_primary_node_timeout)
                       : steady_clock::time_point::max();
    const int primary = co_await search_primary(old_primary, deadline);
    if (stopping_) co_return -1;
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() -
                                                                               failover_started_);
    if (primary < 0) {
        if (promoted)
            log::error(
                "failover: no new primary within search_primary_node_timeout ({} s); "
                "node {} stays down",
                failover_.search_primary_node_timeout, old_primary);
        else
            log::error(
                "failover: the promotion failed and no node is the primary; node {} stays "
                "down",
                old_primary);
        end_failover();
        co_return -1;
    }
    log::info("failover: node {} is the new primary, {} ms after node {} was found failed", primary,
              elapsed.count(), old_primary);
    end_failover();

    // 4. The other standbys follow it (and the old primary, when asked and a command can).
    for (std::size_t j = 0; j < nodes_.size(); ++j) {
        const auto& n = nodes_[j];
        const bool old = int(j) == old_primary;
        if (old ? !old_primary_follows || failover_.follow_primary_command.empty()
                : int(j) == primary || n.status != router::node_status::up ||
                      n.role != router::node_role::standby)
            continue;
        if (!failover_.follow_primary_command.empty()) {
            placeholder_values f;
            f.node = placeholder(int(j));
            f.new_main = placeholder(primary);
            f.old_main = old_primary;
            f.old_primary = placeholder(old_primary);
            std::string what = fmt::format("follow primary command for node {}", j);
            std::string command = expand_placeholders(failover_.follow_primary_command, f);
            co_await run_user_command(what, command);
        } else if (failover_.builtin_follow) {
            co_await builtin_follow(int(j), primary);
        }
        if (stopping_) co_return primary;
    }
    co_return primary;
}

net::awaitable<void> node_registry::standby_failed(int failed) {
    if (failover_.command.empty()) co_return;
    // pgpool-II runs failover_command for every failed node; scripts tell a standby by
    // comparing %d with %P.
    const int primary = current_primary();
    placeholder_values v;
    v.node = placeholder(failed);
    v.new_main = placeholder(primary);
    v.old_main = primary;
    v.old_primary = placeholder(primary);
    std::string what = fmt::format("failover command for node {}", failed);
    std::string command = expand_placeholders(failover_.command, v);
    co_await run_user_command(what, command);
}

net::awaitable<void> node_registry::failed_back(int id) {
    if (failover_.failback_command.empty()) co_return;
    const int primary = current_primary();
    placeholder_values v;
    v.node = placeholder(id);
    v.new_main = placeholder(primary);
    v.old_main = primary;
    v.old_primary = placeholder(primary);
    std::string what = fmt::format("failback command for node {}", id);
    std::string command = expand_placeholders(failover_.failback_command, v);
    co_await run_user_command(what, command);
}

net::awaitable<std::optional<std::uint64_t>> node_registry::promotion_position(int id) {
    const auto& rt = *runtime_[std::size_t(id)];
    auto c = co_await connect_to(id);
    if (!c.conn) {
        log::warning("failover: node {} is not a candidate: {}", id, c.failure.message);
        co_return std::nullopt;
    }
    auto q = co_await query_within(*c.conn, promotion_position_sql, rt.health_timeout);
    const text_row* answer = single_row(q, 3);
    if (!answer) {
        log::warning("failover: node {} is not a candidate: {}", id, failure_text(q));
        co_return std::nullopt;
    }
    co_await say_goodbye(*c.conn);
    const auto& row = *answer;
    if (*row[0] == "f") {
        log::info("failover: node {} is already out of recovery", id);
        co_return std::numeric_limits<std::uint64_t>::max();
    }
    std::uint64_t position = 0;
    for (std::size_t i : {std::size_t(1), std::size_t(2)})
        if (row[i])
            if (auto lsn = router::parse_lsn(*row[i])) position = std::max(position, *lsn);
    log::info("failover: node {} has WAL up to {}", id, router::format_lsn(position));
    co_return position;
}

net::awaitable<bool> node_registry::builtin_promote(int id) {
    const auto& rt = *runtime_[std::size_t(id)];
    const auto started = steady_clock::now();
    log::info("failover: promoting node {} with pg_promote()", id);
    auto c = co_await connect_to(id);
    if (!c.conn) {
        log::error("failover: cannot promote node {}: {}", id, c.failure.message);
        co_return false;
    }
    // Without waiting: the search finds the promoted node sooner than pg_promote(true) says.
    auto q = co_await query_within(*c.conn, "SELECT pg_promote(false)", rt.health_timeout);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started)
            .count();
    const text_row* row = single_row(q, 1);
    if (!row || (*row)[0] != "t") {
        log::error("failover: pg_promote() on node {} failed: {}", id,
                   failure_text(q, "it could not signal the promotion"));
        co_return false;
    }
    co_await say_goodbye(*c.conn);
    log::info("failover: node {} is being promoted (requested in {} ms)", id, ms);
    co_return true;
}

net::awaitable<int> node_registry::search_primary(int failed,
                                                  std::chrono::steady_clock::time_point deadline) {
    net::steady_timer pause(ctx_);
    for (;;) {
        if (int p = current_primary(); p >= 0) co_return p;
        // The health check decides roles, here as always: one attempt on every live node.
        for (std::size_t j = 0; j < nodes_.size(); ++j) {
            if (int(j) == failed || nodes_[j].status == router::node_status::down) continue;
            auto r = co_await check_health(int(j), 1);
            if (stopping_) co_return -1;
            apply_health(int(j), r);
            if (int p = current_primary(); p >= 0) co_return p;
        }
        if (steady_clock::now() >= deadline) co_return -1;
        pause.expires_after(search_interval);
        co_await pause.async_wait(use_tuple);
        if (stopping_) co_return -1;
    }
}

net::awaitable<void> node_registry::builtin_follow(int id, int primary) {
    const auto& rt = *runtime_[std::size_t(id)];
    const auto& p = nodes_[std::size_t(primary)];
    auto c = co_await connect_to(id);
    if (!c.conn) {
        log::error("follow: cannot reach node {}: {}", id, c.failure.message);
        co_return;
    }
    auto shown = co_await query_within(*c.conn, "SHOW primary_conninfo", rt.health_timeout);
    std::optional<conninfo> ci;
    if (const text_row* row = single_row(shown, 1)) ci = parse_conninfo(*(*row)[0]);
    if (!ci) {
        log::error(
            "follow: cannot rewrite node {}'s primary_conninfo ({}); use "
            "follow_primary_command",
            id, failure_text(shown, "not a key=value connection string"));
        co_return;
    }
    set_conninfo_value(*ci, "host", p.host);
    set_conninfo_value(*ci, "port", std::to_string(p.port));
    set_conninfo_value(*ci, "hostaddr", std::nullopt);
    if (!rt.configured_application_name.empty() && !conninfo_value(*ci, "application_name"))
        set_conninfo_value(*ci, "application_name", rt.configured_application_name);
    // A replication slot the standby streams from must exist on the new primary too (slots
    // are not replicated). Made before the standby is pointed there: a WAL receiver that finds
    // no slot tries again only after wal_retrieve_retry_interval (5 s by default).
    auto slot = co_await query_within(*c.conn, "SHOW primary_slot_name", rt.health_timeout);
    if (const text_row* row = single_row(slot, 1); row && !(*row)[0]->empty()) {
        const std::string name = *(*row)[0];
        const auto& prt = *runtime_[std::size_t(primary)];
        auto pc = co_await connect_to(primary);
        rows_outcome created;
        if (pc.conn) {
            created = co_await query_within(
                *pc.conn,
                fmt::format("SELECT pg_create_physical_replication_slot({0}) WHERE NOT EXISTS "
                            "(SELECT 1 FROM pg_replication_slots WHERE slot_name = {0})",
                            sql_literal(name)),
                prt.health_timeout);
            if (!created.io) co_await say_goodbye(*pc.conn);
        }
        if (!pc.conn || created.io || created.error)
            log::error("follow: cannot create replication slot \"{}\" on node {}: {}", name,
                       primary, pc.conn ? failure_text(created) : pc.failure.message);
    }
    // ALTER SYSTEM cannot run in a transaction block: two separate queries.
    const std::string alter =
        "ALTER SYSTEM SET primary_conninfo = " + sql_literal(format_conninfo(*ci));
    auto altered = co_await query_within(*c.conn, alter, rt.health_timeout);
    if (altered.io || altered.error) {
        log::error("follow: ALTER SYSTEM on node {} failed: {}", id, failure_text(altered));
        co_return;
    }
    auto reloaded = co_await query_within(*c.conn, "SELECT pg_reload_conf()", rt.health_timeout);
    if (reloaded.io || reloaded.error) {
        log::error("follow: pg_reload_conf() on node {} failed: {}", id, failure_text(reloaded));
        co_return;
    }
    co_await say_goodbye(*c.conn);
    log::info(
        "follow: node {} now streams from node {} ({}:{}): primary_conninfo rewritten and "
        "reloaded",
        id, primary, p.host, p.port);
}

net::awaitable<bool> node_registry::run_user_command(const std::string& what,
                                                     const std::string& command) {
    log::info("{}: running: {}", what, command);
    auto r = co_await run_command(command);
    log_output(what, "stdout", r.out);
    log_output(what, "stderr", r.err);
    if (r.ok())
        log::info("{} succeeded in {} ms", what, r.elapsed.count());
    else
        log::error("{} failed: {} after {} ms", what, r.describe(), r.elapsed.count());
    co_return r.ok();
}

}  // namespace pgpilot::ha
