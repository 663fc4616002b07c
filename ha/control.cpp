// node_registry: node control (PGPOOL ATTACH/DETACH/PROMOTE NODE), run on the registry's
// io_context for callers on any executor.
// GCC 12 reports a false -Wmismatched-new-delete at the end of some coroutines here: Asio's
// awaitable frames are allocated by their own operator new (through its recycling allocator,
// which GCC inlines) and freed by the matching operator delete.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

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
            // Not the write position (pg_current_wal_lsn()): with synchronous_commit = off a
            // commit is acknowledged once its record is inserted, and the WAL writer writes it
            // out up to wal_writer_delay later; promoted at the write position, node `id`
            // could miss the last acknowledged commits. The insert position, read after a
            // transaction of pgpilot's own that emits a record and commits with
            // synchronous_commit = local: that commit flushes all WAL before it at once, so
            // the standby need not wait for the WAL writer. The position is read after the
            // commit so that it covers the commit record too: a record past it could reach
            // another standby and not the promoted one, and that standby could not follow.
            // A user who may not emit the record: the same position, and the wait.
            auto f = co_await query_within(
                *oc.conn,
                "BEGIN READ WRITE; SET LOCAL synchronous_commit = local; SELECT "
                "pg_catalog.pg_logical_emit_message(true, 'pgpilot', 'switchover') IS NOT NULL; "
                "COMMIT",
                ort.health_timeout);
            if (f.error && !f.io)
                log::info("switchover: node {}: {}; waiting for its WAL writer", old_primary,
                          failure_text(f));
            auto l = co_await query_within(
                *oc.conn,
                f.error ? "ROLLBACK; SELECT pg_catalog.pg_current_wal_insert_lsn()::text"
                        : "SELECT pg_catalog.pg_current_wal_insert_lsn()::text",
                ort.health_timeout);
            const text_row* lsn = single_row(l, 1);
            if (!ended || !lsn) {
                why = failure_text(ended ? l : t);
                break;
            }
            log::info("switchover: node {} ended {} sessions; its WAL ends at {}", old_primary,
                      *(*ended)[0], *(*lsn)[0]);
            target = router::parse_lsn(*(*lsn)[0]);
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
