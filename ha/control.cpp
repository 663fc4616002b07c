// node_registry: node control (PGPOOL ATTACH/DETACH/PROMOTE NODE), run on the registry's
// io_context for callers on any executor.
// GCC 12 reports a false -Wmismatched-new-delete at the end of some coroutines here: Asio's
// awaitable frames are allocated by their own operator new (through its recycling allocator,
// which GCC inlines) and freed by the matching operator delete.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "ha/log.hpp"
#include "ha/registry_internal.hpp"

namespace pgpilot::ha {

namespace {

/// How often the switchover looks at the new primary's replay position.
constexpr std::chrono::milliseconds catch_up_poll{20};
/// pg_reload_conf() only signals the postmaster, which then signals every backend; a backend
/// applies the new default_transaction_read_only before its next command. Transactions that
/// start later than this after the reload are taken to be read-only.
constexpr std::chrono::milliseconds reload_grace{100};

control_result refused(std::string why) {
    return {false, std::move(why)};
}

/// Where the old primary's WAL must be replayed to for nothing acknowledged to be lost, once
/// no transaction writes there any more (`lsn`); or why it cannot be known.
struct wal_end {
    std::optional<std::uint64_t> lsn;
    std::string why;
};

/// Not the write position (pg_current_wal_lsn()): with synchronous_commit = off a commit is
/// acknowledged once its record is inserted, and the WAL writer writes it out up to
/// wal_writer_delay later: a standby promoted at the write position could miss the last
/// acknowledged commits. Nor the insert position read now: the WAL writer writes out only up
/// to the last asynchronous commit and whole pages, and a record after those (a snapshot of
/// running transactions the background writer logs) may stay unwritten for minutes, and no
/// standby gets past it. So pgpilot writes a record of its own and commits it with
/// synchronous_commit = local, which writes out and flushes all WAL up to its commit record
/// at once, then reads the insert and the flush position: the lesser is at or past that
/// commit record (past every acknowledged commit, and no standby can have received WAL the
/// promoted one lacks), and written. The record: a logical decoding message, or, for a user
/// who may not emit one, a temporary table's catalog rows.
net::awaitable<wal_end> flushed_wal_end(backend_connection& conn, int node,
                                        std::chrono::milliseconds timeout) {
    static constexpr std::array<std::string_view, 2> records{
        "SELECT pg_catalog.pg_logical_emit_message(true, 'pgpilot', 'switchover') IS NOT NULL",
        "CREATE TEMPORARY TABLE pgpilot_switchover () ON COMMIT DROP"};
    wal_end out;
    for (auto record : records) {
        auto w = co_await query_within(
            conn,
            fmt::format("BEGIN READ WRITE; SET LOCAL synchronous_commit = local; {}; COMMIT",
                        record),
            timeout);
        if (w.io) {
            out.why = failure_text(w);
            co_return out;
        }
        if (w.error || w.tx_status != 'I') {
            out.why = "cannot write a WAL record: " + failure_text(w, "no commit");
            log::info("switchover: node {}: {}", node, out.why);
            if (w.tx_status != 'I') {
                auto r = co_await query_within(conn, "ROLLBACK", timeout);
                if (r.io || r.error) {
                    out.why = failure_text(r);
                    co_return out;
                }
            }
            continue;
        }
        auto l = co_await query_within(conn,
                                       "SELECT LEAST(pg_catalog.pg_current_wal_insert_lsn(), "
                                       "pg_catalog.pg_current_wal_flush_lsn())::text",
                                       timeout);
        const text_row* lsn = single_row(l, 1);
        if (!lsn) {
            out.why = failure_text(l);
            co_return out;
        }
        out.lsn = router::parse_lsn(*(*lsn)[0]);
        if (!out.lsn) out.why = "unexpected WAL position " + *(*lsn)[0];
        co_return out;
    }
    co_return out;
}

}  // namespace

net::awaitable<control_result> node_registry::attach_node(int id) {
    auto task = attach_on_ha(id);
    co_return co_await net::co_spawn(ctx_, std::move(task), net::use_awaitable);
}

net::awaitable<control_result> node_registry::detach_node(int id) {
    auto task = detach_on_ha(id);
    co_return co_await net::co_spawn(ctx_, std::move(task), net::use_awaitable);
}

net::awaitable<control_result> node_registry::promote_node(int id, bool switchover) {
    auto task = promote_on_ha(id, switchover);
    co_return co_await net::co_spawn(ctx_, std::move(task), net::use_awaitable);
}

net::awaitable<control_result> node_registry::attach_on_ha(int id) {
    if (id < 0 || std::size_t(id) >= nodes_.size())
        co_return refused(fmt::format("there is no node {}", id));
    if (jobs_running_ || failover_in_progress_)
        co_return refused("a failover is in progress; try again when it is over");
    if (nodes_[std::size_t(id)].status == router::node_status::up)
        co_return control_result{true, fmt::format("node {} is already up", id)};
    auto r = co_await check_health(id, 1);
    if (!r.ok) co_return refused(fmt::format("node {} does not answer: {}", id, r.detail));
    auto& n = nodes_[std::size_t(id)];
    if (n.status == router::node_status::up)
        co_return control_result{true, fmt::format("node {} is already up", id)};
    set_status(id, router::node_status::waiting, "attach requested");
    apply_health(id, r);
    if (n.status != router::node_status::up)
        co_return refused(
            fmt::format("node {} is {}: {}", id, router::to_string(n.status), n.status_reason));
    n.status_reason = "attached by request";
    publish();
    enqueue({job::kind::failback, id});
    co_return control_result{
        true, fmt::format("node {} attached, role {}", id, router::to_string(n.role))};
}

net::awaitable<control_result> node_registry::detach_on_ha(int id) {
    if (id < 0 || std::size_t(id) >= nodes_.size())
        co_return refused(fmt::format("there is no node {}", id));
    if (jobs_running_ || failover_in_progress_)
        co_return refused("a failover is in progress; try again when it is over");
    const auto& n = nodes_[std::size_t(id)];
    if (n.status == router::node_status::down)
        co_return control_result{true, fmt::format("node {} is already down", id)};
    const auto flag = runtime_[std::size_t(id)]->flag;
    if (flag != config::backend_flag::allow_to_failover)
        co_return refused(
            fmt::format("node {} has flag {}: it is never detached", id, config::to_string(flag)));
    if (n.role == router::node_role::primary && n.status == router::node_status::up &&
        !has_up_standby(id))
        co_return refused(fmt::format("node {} is the primary and no standby is up", id));
    node_failed(id, "detached by request");
    publish();
    co_return control_result{true, fmt::format("node {} detached", id)};
}

net::awaitable<control_result> node_registry::promote_on_ha(int id, bool switchover) {
    if (id < 0 || std::size_t(id) >= nodes_.size())
        co_return refused(fmt::format("there is no node {}", id));
    if (jobs_running_ || failover_in_progress_)
        co_return refused("a failover is in progress; try again when it is over");
    const auto& n = nodes_[std::size_t(id)];
    if (n.status != router::node_status::up || n.role != router::node_role::standby)
        co_return refused(fmt::format("node {} is not an up standby (it is {}, {})", id,
                                      router::to_string(n.status), router::to_string(n.role)));
    const int old = current_primary();
    // Like a failover: sessions hold primary-bound statements, failures wait their turn.
    jobs_running_ = true;
    failover_in_progress_ = true;
    failover_started_ = steady_clock::now();
    publish();
    log::warning("{}: promoting node {}{}", switchover ? "switchover" : "promotion", id,
                 old >= 0 ? fmt::format(" in place of node {}", old) : std::string());
    if (switchover && old >= 0) {
        auto ready = co_await prepare_switchover(old, id);
        if (!ready.ok) {
            end_failover();
            finish_exclusive();
            co_return ready;
        }
    }
    if (old >= 0)
        set_status(old, router::node_status::down,
                   fmt::format("detached: node {} is promoted in its place", id));
    publish();
    const int primary = co_await take_over(old, id, switchover);
    finish_exclusive();
    if (primary != id)
        co_return refused(primary < 0
                              ? fmt::format("node {} was not promoted; no primary", id)
                              : fmt::format("node {} is the primary, not node {}", primary, id));
    co_return control_result{true, fmt::format("node {} is the primary", id)};
}

void node_registry::finish_exclusive() {
    jobs_running_ = false;
    // Failures found meanwhile were queued behind the promotion.
    if (!jobs_.empty() && !stopping_) {
        jobs_running_ = true;
        spawn(run_jobs(), "failover");
    }
}

net::awaitable<control_result> node_registry::prepare_switchover(int old_primary, int id) {
    // Stop new writes on the old primary, wait for the transactions that were running, then
    // let the standby replay everything the old primary wrote.
    if (!co_await set_read_only(old_primary, true))
        co_return refused(fmt::format("cannot make node {} read-only", old_primary));
    const auto deadline = steady_clock::now() + hold_timeout_;
    const auto& ort = *runtime_[std::size_t(old_primary)];
    net::steady_timer pause(ctx_);
    std::optional<std::uint64_t> target;
    std::string why;
    auto oc = co_await connect_to(old_primary);
    if (!oc.conn) why = oc.failure.message;
    std::string since;
    if (oc.conn) {
        pause.expires_after(reload_grace);
        co_await pause.async_wait(use_tuple);
        auto q =
            co_await query_within(*oc.conn, "SELECT clock_timestamp()::text", ort.health_timeout);
        if (const text_row* row = single_row(q, 1))
            since = *(*row)[0];
        else
            why = "cannot read its clock: " + failure_text(q);
    }
    // Transactions that began before default_transaction_read_only may still write.
    const std::string running = fmt::format(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "AND xact_start <= {}::timestamptz",
        sql_literal(since));
    while (oc.conn && why.empty() && !stopping_) {
        auto q = co_await query_within(*oc.conn, running, ort.health_timeout);
        const text_row* row = single_row(q, 1);
        if (!row || !(*row)[0]) {
            why = failure_text(q);
            break;
        }
        if (*(*row)[0] == "0") {
            // A backend applies the reloaded default_transaction_read_only only between
            // commands, after the postmaster passed the SIGHUP on: on a busy machine one may
            // still start a writing transaction after `since`. End every other session (each
            // termination awaited) so that nothing commits after the position read below.
            auto t = co_await query_within(
                *oc.conn,
                "SELECT count(pg_catalog.pg_terminate_backend(pid, 5000)) FROM "
                "pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_catalog.pg_backend_pid()",
                ort.health_timeout + std::chrono::seconds(5));
            const text_row* ended = single_row(t, 1);
            if (!ended) {
                why = failure_text(t);
                break;
            }
            auto end = co_await flushed_wal_end(*oc.conn, old_primary, ort.health_timeout);
            if (!end.lsn) {
                why = std::move(end.why);
                break;
            }
            log::info("switchover: node {} ended {} sessions; its WAL ends at {}", old_primary,
                      *(*ended)[0], router::format_lsn(*end.lsn));
            target = end.lsn;
            break;
        }
        if (steady_clock::now() >= deadline) {
            why = fmt::format("{} transactions still running after hold_timeout", *(*row)[0]);
            break;
        }
        pause.expires_after(catch_up_poll);
        co_await pause.async_wait(use_tuple);
    }
    if (oc.conn) co_await say_goodbye(*oc.conn);
    if (!target) {
        co_await set_read_only(old_primary, false);
        co_return refused(fmt::format("cannot stop writes on node {}: {}", old_primary, why));
    }

    const auto& rt = *runtime_[std::size_t(id)];
    auto c = co_await connect_to(id);
    std::uint64_t replayed = 0;
    while (c.conn && steady_clock::now() < deadline && !stopping_) {
        auto q = co_await query_within(*c.conn, "SELECT pg_last_wal_replay_lsn()::text",
                                       rt.health_timeout);
        const text_row* row = single_row(q, 1);
        if (!row) break;
        replayed = router::parse_lsn(*(*row)[0]).value_or(0);
        if (replayed >= *target) {
            co_await say_goodbye(*c.conn);
            log::info("switchover: node {} has replayed node {}'s WAL up to {}", id, old_primary,
                      router::format_lsn(*target));
            co_return control_result{true, ""};
        }
        pause.expires_after(catch_up_poll);
        co_await pause.async_wait(use_tuple);
    }
    co_await set_read_only(old_primary, false);
    co_return refused(fmt::format("node {} did not replay node {}'s WAL up to {} in time (at {})",
                                  id, old_primary, router::format_lsn(*target),
                                  router::format_lsn(replayed)));
}

net::awaitable<bool> node_registry::set_read_only(int id, bool on) {
    const auto& rt = *runtime_[std::size_t(id)];
    auto c = co_await connect_to(id);
    if (!c.conn) {
        log::error("node {}: cannot connect to change default_transaction_read_only: {}", id,
                   c.failure.message);
        co_return false;
    }
    const std::string_view sql = on ? "ALTER SYSTEM SET default_transaction_read_only = on"
                                    : "ALTER SYSTEM RESET default_transaction_read_only";
    auto q = co_await query_within(*c.conn, sql, rt.health_timeout);
    if (!q.io && !q.error)
        q = co_await query_within(*c.conn, "SELECT pg_reload_conf()", rt.health_timeout);
    if (q.io || q.error) {
        log::error("node {}: cannot change default_transaction_read_only: {}", id, failure_text(q));
        co_return false;
    }
    co_await say_goodbye(*c.conn);
    log::info("node {}: default_transaction_read_only {}", id, on ? "on (no new writes)" : "reset");
    co_return true;
}

}  // namespace pgpilot::ha
