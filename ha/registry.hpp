// The node registry: the one owner of what pgpilot believes about each backend node. Health
// checks, replication checks and failover run on ha's own event loop; sessions on any worker
// read the latest immutable snapshot. See docs/ha.md.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "ha/command.hpp"
#include "ha/connector.hpp"
#include "ha/replication.hpp"
#include "router/cluster.hpp"

namespace pgpilot::ha {

/// How pgpilot logs in to a node for its own checks (pgpool's health_check_* and sr_check_*).
struct probe_login {
    std::string user = "postgres";
    std::string password;
    std::string database = "postgres";
    std::string application_name = "pgpilot";
    std::chrono::milliseconds connect_timeout{10000};
};

/// Start-up choices that are not in the configuration file.
struct registry_options {
    bool discard_status_file = false;  ///< pgpilot -D: ignore [failover] status_file
};

/// What a session saw go wrong with a backend node (report_backend_failure).
enum class backend_failure {
    connect,   ///< could not connect or log in: refused, unreachable, timed out, 57P03
    io,        ///< an established connection broke (read or write failed, no FATAL first)
    shutdown,  ///< the node sent FATAL 57P01/57P02 (administrator or crash shutdown)
};

/// The outcome of a node control request (PGPOOL ATTACH/DETACH/PROMOTE NODE).
struct control_result {
    bool ok = false;
    std::string message;  ///< what was done, or why not: for the client
};

/// Owns node state; publishes snapshots; checks health and replication; fails over.
///
/// Everything but the constructor, snapshot(), address(), hold_timeout() and the request_*(),
/// report_*() and stop() calls runs on the registry's io_context (one thread): no locks
/// inside, and sessions never wait for it.
class node_registry {
  public:
    /// Nodes come from settings.backends (ids in file order); nodes down in the status file
    /// start down. Nothing runs until detect() and start().
    node_registry(net::io_context& ctx, const config::settings& settings,
                  registry_options options = {});
    ~node_registry();
    node_registry(const node_registry&) = delete;
    node_registry& operator=(const node_registry&) = delete;

    /// The current state of every node; cheap, lock-free, callable from any thread.
    router::snapshot_ptr snapshot() const { return snapshot_.load(std::memory_order_acquire); }

    /// Probes every node that is not down once, all at the same time (one attempt each), and
    /// publishes the result. Runs on the registry's io_context; for start-up.
    net::awaitable<void> detect();

    /// Starts the background work on the io_context: the health check and the replication
    /// check of every node. Call once, after detect().
    void start();

    /// Ends the background work (from any thread); the io_context then runs out of work, but
    /// for a command that is still running.
    void stop();

    /// Runs the health check of every node that is not down now, from any thread (e.g. when a
    /// session finds no primary). Requests made while a check runs are folded into one more.
    void request_detect();

    /// Asks for a replication check of every up node now, from any thread, when a session
    /// needs fresher WAL positions than the snapshot has. Never more than one check per node is
    /// in flight: requests made while one runs are folded into one more check that starts
    /// after it (so its result is at least as fresh as the request). Once every node answered,
    /// each node_state::lsn_checked is later than the call.
    void request_replication_check();

    /// A session's connection to `node` failed. With [failover] on_backend_error (for connect
    /// and io) or on_backend_shutdown (for shutdown), the node is health-checked at once, one
    /// attempt without retries, and failed if that attempt fails too; otherwise only logged.
    /// Callable from any thread; a node that is not up is left alone.
    void report_backend_failure(int node, backend_failure kind, std::string reason);

    // Node control, for PGPOOL ATTACH/DETACH/PROMOTE NODE and the admin API. Each can be
    // awaited from a coroutine on any executor (it runs on the registry's io_context and
    // completes on the caller's); a request made while a failover runs is refused.

    /// PGPOOL ATTACH NODE id: a node that is not up gets one health check; when it passes the
    /// node is up again (or, a primary while another is, fenced) and failback_command runs.
    net::awaitable<control_result> attach_node(int id);

    /// PGPOOL DETACH NODE id: the node goes down as if it had failed (failover_command runs;
    /// a primary is failed over). Refused for a node whose flag is not ALLOW_TO_FAILOVER and
    /// for a primary no standby could replace. Sessions on it are the caller's business.
    net::awaitable<control_result> detach_node(int id);

    /// PGPOOL PROMOTE NODE id [SWITCHOVER]: standby `id` becomes the primary and the old
    /// primary goes down; the other standbys follow `id` (as after a failover). With
    /// `switchover`, the old primary first stops taking writes (ALTER SYSTEM SET
    /// default_transaction_read_only = on) and `id` replays all its WAL before the promotion
    /// (within hold_timeout), so nothing committed is lost; the old primary then follows `id`
    /// only through follow_primary_command, and stays down (and read-only) otherwise.
    net::awaitable<control_result> promote_node(int id, bool switchover);

    /// The address of node `id` (fixed by the configuration).
    node_address address(int id) const;

    /// [failover] hold_timeout: how long primary-bound statements should wait while
    /// cluster_snapshot::failover_in_progress is set.
    std::chrono::milliseconds hold_timeout() const { return hold_timeout_; }

  private:
    struct node_runtime;
    struct probe_result;
    struct job {
        enum class kind { primary_failed, standby_failed, failback } what;
        int node;
    };

    // Snapshots and status.
    void publish();
    void set_status(int id, router::node_status status, std::string reason);
    void save_status_file();
    int current_primary(int except = -1) const;
    bool has_up_standby(int except) const;
    net::awaitable<connect_result> connect_to(int id);
    placeholder_node placeholder(int id) const;

    // Health.
    net::awaitable<void> health_loop(int id);
    net::awaitable<probe_result> check_health(int id, int attempts);
    /// One attempt on each of `ids`, all at once; an attempt that threw is logged and nullopt.
    net::awaitable<std::vector<std::optional<probe_result>>> check_at_once(std::vector<int> ids);
    /// After a health check of `id` timed out: checks it again together with every other node
    /// that is not down (all at once); the timeout stands only if `id` fails again while
    /// another node answers. Returns the result to apply.
    net::awaitable<probe_result> confirm_timeout(int id, probe_result first);
    void apply_health(int id, const probe_result& r);
    void node_failed(int id, const std::string& reason);
    void fence_false_primary(int id, int primary);
    void wake_health(int id, bool confirm);

    // Replication.
    net::awaitable<void> replication_loop(int id);
    net::awaitable<void> check_replication(int id);
    void replication_failed(int id, const std::string& why);
    void apply_replication(int id, const replication_sample& sample);

    // Failover.
    void enqueue(job j);
    net::awaitable<void> run_jobs();
    net::awaitable<void> fail_over(int failed);
    net::awaitable<int> take_over(int old_primary, std::optional<int> chosen,
                                  bool old_primary_follows);
    net::awaitable<void> standby_failed(int failed);
    net::awaitable<void> failed_back(int id);
    net::awaitable<std::optional<std::uint64_t>> promotion_position(int id);
    net::awaitable<bool> builtin_promote(int id);
    net::awaitable<int> search_primary(int failed, std::chrono::steady_clock::time_point deadline);
    net::awaitable<void> builtin_follow(int id, int primary);
    net::awaitable<bool> run_user_command(const std::string& what, const std::string& command);
    void end_failover();

    // Node control (control.cpp).
    net::awaitable<control_result> attach_on_ha(int id);
    net::awaitable<control_result> detach_on_ha(int id);
    net::awaitable<control_result> promote_on_ha(int id, bool switchover);
    net::awaitable<control_result> prepare_switchover(int old_primary, int id);
    net::awaitable<bool> set_read_only(int id, bool on);
    void finish_exclusive();

    void spawn(net::awaitable<void> task, const char* what);

    net::io_context& ctx_;
    const config::failover_settings failover_;
    probe_login replication_login_;
    std::chrono::milliseconds replication_period_;
    std::chrono::milliseconds replication_timeout_;
    std::chrono::milliseconds hold_timeout_;
    std::string status_file_;
    std::atomic<std::shared_ptr<const router::cluster_snapshot>> snapshot_;
    std::atomic<bool> replication_requested_{false};
    std::atomic<bool> detect_requested_{false};

    // Only touched on ctx_'s thread.
    std::vector<router::node_state> nodes_;
    std::vector<std::unique_ptr<node_runtime>> runtime_;
    std::uint64_t version_ = 0;
    bool failover_in_progress_ = false;
    std::chrono::steady_clock::time_point failover_started_{};
    std::string saved_status_;
    std::deque<job> jobs_;
    bool jobs_running_ = false;
    bool stopping_ = false;
};

}  // namespace pgpilot::ha
