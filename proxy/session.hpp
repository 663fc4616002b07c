// One client connection, from its first byte to its close: negotiation, authentication,
// backend lease, relay, and one place that handles every way it can end.
#pragma once

#include <boost/asio.hpp>
#include <boost/container/small_vector.hpp>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ha/connector.hpp"
#include "ha/frame_io.hpp"
#include "proxy/context.hpp"
#include "router/classify.hpp"
#include "router/node_command.hpp"
#include "router/session_route.hpp"

namespace pgpilot::proxy {

/// Every way a session ends; `finish()` decides from it what the client is told and whether
/// the backend connection goes back to the pool.
enum class session_end {
    client_terminated,            ///< Terminate message: the normal end
    client_disconnected,          ///< EOF or reset from the client without Terminate
    client_protocol_violation,    ///< malformed or unexpected message from the client
    startup_rejected,             ///< bad startup packet, version or parameters (client told)
    authentication_failed,        ///< wrong password, unknown user (client told)
    authentication_timeout,       ///< no complete startup + authentication in time
    too_many_clients,             ///< refused: reserved_connections (client told 53300)
    client_idle_timeout,          ///< idle outside a transaction longer than client_idle_limit
    idle_in_transaction_timeout,  ///< idle in a transaction longer than idle_in_transaction_timeout
    cancel_request,               ///< the connection only carried a CancelRequest
    no_backend,                   ///< no primary, or connecting to it failed (client told)
    backend_disconnected,         ///< the backend closed or failed mid-session
    backend_protocol_violation,   ///< malformed message from the backend
    admin_shutdown,               ///< pgpilot is shutting down
    internal_error,               ///< a bug: logged with the exception
    /// Not an end: the client is idle between transactions and holds no backend connection;
    /// the session waits for it without a coroutine (session::park()).
    parked,
};

const char* to_string(session_end);

/// One backend connection of a session and what pgpilot knows of its state.
struct backend_link {
    std::unique_ptr<ha::backend_connection> conn;
    /// Responses still to come, oldest first; one entry per ReadyForQuery expected.
    struct response {
        enum class kind : std::uint8_t { client, hidden, lsn };
        kind k = kind::client;
        std::uint16_t swallow_parse = 0;  ///< ParseComplete of Parses pgpilot injected
        std::uint16_t swallow_close = 0;  ///< CloseComplete of Closes pgpilot injected
        bool replace_ready = false;       ///< the following lsn entry's ReadyForQuery stands in
        bool forward_ready = false;       ///< lsn: its ReadyForQuery goes to the client
        bool extended = false;            ///< client: an extended-protocol batch
        bool synced = false;              ///< client, extended: its Sync was sent
        bool started = false;             ///< some of its answer went to the client
        bool pgpilot_sync = false;  ///< client, extended: ended by pgpilot's Sync, not the client's
    };
    /// A FIFO of responses that keeps its first few in place: a transaction expects one to
    /// three (pgpilot's own statements, the client's, a WAL position query), and with
    /// transaction pooling the link is new for each one, so a queue that allocates (a deque
    /// allocated twice) did so for every transaction. Longer queues (a client pipelining
    /// many queries) spill to the heap; the consumed head is dropped when it is most of it.
    class response_queue {
      public:
        bool empty() const noexcept { return head_ == items_.size(); }
        response& front() noexcept { return items_[head_]; }
        response& back() noexcept { return items_.back(); }
        const response& back() const noexcept { return items_.back(); }
        auto begin() const noexcept { return items_.begin() + std::ptrdiff_t(head_); }
        auto end() const noexcept { return items_.end(); }
        void push_back(const response& r) {
            if (empty()) clear();
            items_.push_back(r);
        }
        void pop_front() noexcept {
            if (++head_ == items_.size()) {
                clear();
            } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
                items_.erase(items_.begin(), items_.begin() + std::ptrdiff_t(head_));
                head_ = 0;
            }
        }
        void clear() noexcept {
            items_.clear();
            head_ = 0;
        }
        /// Empties it and frees what it spilled to the heap (a parked session keeps none).
        void release() {
            boost::container::small_vector<response, 3> none;
            items_.swap(none);
            head_ = 0;
        }

      private:
        boost::container::small_vector<response, 3> items_;
        std::size_t head_ = 0;
    };
    response_queue queue;
    std::size_t settings_applied = 0;  ///< entries of the session's set log run here
    bool partial_write = false;        ///< a client message was forwarded here only in part
    std::chrono::steady_clock::time_point retry_after{};  ///< after a failed connect
    ha::connect_failure failure;                          ///< why the last connect failed
    /// A WAL position query is owed once the client's unit is complete on this connection.
    enum class deferred_lsn : std::uint8_t { none, after_stream, after_copy_done, after_copy_sync };
    deferred_lsn lsn_owed = deferred_lsn::none;
    /// The server ignores Sync during COPY FROM STDIN in extended mode; the client's next Sync
    /// (after CopyDone) is the one it answers: it belongs to the batch that started the COPY.
    bool absorb_sync = false;
    /// The connection holds state pgpilot cannot rebuild elsewhere (temporary objects, LISTEN,
    /// statements prepared with SQL): losing it must end the session.
    bool holds_state = false;
    /// The backend sent FATAL while the session expected nothing (its node shutting down): the
    /// SQLSTATE, until the connection closes.
    std::string unsolicited_fatal;
    /// While holds_state in transaction pooling: counts the session as pinned (SHOW POOLS).
    std::shared_ptr<void> pin;
};

/// A statement that changed session state outside a transaction (SET, RESET, DISCARD...).
struct session_setting {
    std::string text;
    /// What running it does to prepared statements: "" nothing, "*" drops them all, else the
    /// name of the one it drops.
    std::string drops;
};

/// A prepared statement the client created with Parse.
struct prepared_statement {
    std::string parse_frame;  ///< the whole Parse message, to run it again elsewhere
    router::statement_info info;
    std::string text;
    router::text_markers markers;  ///< of text, found when the Parse arrived
};

/// A timer on a worker's io_context: 72 bytes where net::steady_timer (any executor) takes 120,
/// which counts in every idle session.
using worker_timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                               net::wait_traits<std::chrono::steady_clock>,
                                               net::io_context::executor_type>;

/// A client session. Owned by a shared_ptr held by its worker and its coroutine.
class session : public std::enable_shared_from_this<session> {
  public:
    session(worker& w, stream client, std::uint64_t id);
    /// Starts the session's coroutine on its worker.
    void start();
    /// Shutdown hook, on the worker's thread: cancels whatever the session awaits.
    void stop();
    /// Called every park_after by the worker: a login still going on past
    /// authentication_timeout ends; a client silent since its last answer for longer than
    /// client_idle_limit or idle_in_transaction_timeout (by its transaction state) is ended; a
    /// session that has waited for its client since before `now - park_after` with nothing in
    /// flight and no backend connection parks.
    void tick(std::chrono::steady_clock::time_point now);
    std::uint64_t id() const { return id_; }

  private:
    /// Where run() begins: the whole session, the relay after a park, or its end.
    enum class step { start, resume, end };
    /// Runs (part of) the session's life on a new coroutine; the session leaves its worker's
    /// map when the coroutine ends, unless it parked.
    void spawn(step from, session_end end = session_end::client_terminated);
    /// The session's life from `from`; never throws.
    net::awaitable<void> run(step from, session_end end);
    /// Nothing of the client's in flight: it has had every answer and pgpilot waits for it.
    bool waits_for_client() const;
    /// Nothing in flight, no backend connection: the relay may end until the client speaks.
    bool can_park() const;
    /// links_ has one entry per node (park() may have dropped them).
    void ensure_links();
    /// Frees what an idle session does not need and waits for the client with a plain handler
    /// (an idle client then costs this object and its socket, no coroutine frames).
    void park();
    /// The parked wait ended: the client sent something (or closed), the idle limit passed, or
    /// pgpilot is stopping.
    void unpark();
    net::awaitable<session_end> negotiate_and_authenticate();
    /// Runs a step of the login under authentication_timeout (checked by tick(): a timer and a
    /// parallel group per step cost more than the rest of a short-lived client's login).
    net::awaitable<session_end> within_authentication_timeout(net::awaitable<session_end> step);
    net::awaitable<session_end> negotiate();
    net::awaitable<session_end> authenticate();
    net::awaitable<session_end> handle_cancel_request(std::uint32_t pid, std::uint32_t key);
    net::awaitable<session_end> attach_backend();
    net::awaitable<session_end> relay();
    net::awaitable<session_end> client_to_backend();
    net::awaitable<session_end> backend_to_client();
    net::awaitable<void> finish(session_end end);
    net::awaitable<bool> reset_backend(ha::backend_connection& conn);

    // Routing (proxy/route.cpp).
    struct unit;
    net::awaitable<session_end> dispatch(unit& u);
    net::awaitable<session_end> dispatch_one(unit& u);
    void classify_unit(unit& u) const;
    /// The unit's node when it can be told without waiting (most statements), else nullopt:
    /// then choose_node() decides, waiting for a primary or for a standby to catch up. Not a
    /// coroutine, so the usual statement allocates no frame for it.
    std::optional<int> choose_node_now(const unit& u, bool& move_transaction);
    net::awaitable<std::optional<int>> choose_node(unit& u, bool& move_transaction);
    /// A standby for a read (drawn by weight, or the session's), whether it has replayed what
    /// the read must see; node -1 = none may serve it (the primary then).
    struct read_choice {
        int node = -1;
        std::uint64_t required = 0;
        bool caught_up = false;
    };
    read_choice pick_read_node();
    net::awaitable<std::optional<int>> read_node();
    /// ensure_link() without waiting: true when the session has a usable connection to `node`
    /// (its own, or an idle one from the pool); false leaves it to ensure_link().
    bool link_ready_now(int node);
    net::awaitable<bool> ensure_link(int node);
    pool_request pool_request_for(int node);
    /// Takes an idle connection from the pool as the link to `node`.
    void reuse(int node, std::unique_ptr<ha::backend_connection> conn);
    /// The primary when there is one and no failover runs, else nullopt (see await_primary).
    std::optional<int> primary_now() const;
    /// The primary, waiting while a failover runs ([failover] hold_timeout) or while none is
    /// known yet (timeouts.primary_wait); nullopt when there is still none.
    net::awaitable<std::optional<int>> await_primary();
    /// Whether what is in flight on `link` is the client's one unit (after pgpilot's own
    /// statements) and none of its answer went to the client yet.
    static bool replayable_queue(const backend_link& link);
    /// How many idle connections per pool key the pool keeps of what this session gives back:
    /// max_pool in session mode; in transaction mode pool_size bounds them.
    std::size_t idle_limit() const;
    /// Whether the session survives losing its connection to `node` while it is idle.
    bool may_lose_link(int node) const;
    /// Forgets the (idle) connection to `node`, telling ha/ what happened to it.
    void lose_link(int node, ha::backend_failure kind, const std::string& reason);
    /// Closes idle connections to nodes that are no longer up.
    void retire_links();
    net::awaitable<void> wait_drained();
    void switch_to(int node);
    void build_prefix(int node, bool move_transaction, std::string& out);
    void inject_statements(int node, unit& u, std::string& out);
    void after_dispatch(const unit& u, int node);
    void keep_for_replay(const unit& u, int node);
    /// Appends a setting to set_log_ (once), as run on `ran_on` already.
    void record_setting(session_setting setting, backend_link& ran_on);
    /// The fingerprint of the first `applied` entries of set_log_ (0 for none).
    std::uint64_t settings_fingerprint(std::size_t applied) const;
    /// Transaction pooling: gives idle backend connections back to the worker's pool when the
    /// client is between transactions and nothing ties it to them.
    void release_idle_links();
    net::awaitable<session_end> answer_locally(std::string response);
    /// Transaction pooling: the unit only prepares new named statements (Parse... Sync) and
    /// the client is between transactions with no connection: pgpilot can answer it.
    bool parse_only_between_transactions(const unit& u) const;
    /// Appends the WAL position query owed on `link` to `out`, if the client's unit is still
    /// waiting for its ReadyForQuery, the query's stands in for it.
    void append_lsn_query(backend_link& link, std::string& out, bool replaces_ready);
    net::awaitable<session_end> send_owed_lsn(backend_link& link);
    std::string show_pool_nodes() const;
    /// SHOW POOLS: one row per (database, user, node) pool.
    std::string show_pools() const;
    std::optional<int> current_primary() const;
    /// PGPOOL ATTACH/DETACH/PROMOTE NODE, from the client port: the response to send.
    net::awaitable<std::string> node_control(const router::node_command& command);
    /// The node of the client's open transaction (-1: none), counted in shared_state.
    void set_tx_node(int node);
    /// A ReadyForQuery went to the client: the transaction state it carries.
    void on_client_ready(char status);
    /// What the classifier needs to know of functions: built once the database's volatile
    /// functions are known, then kept (they are read once per database); rebuilt on every
    /// call before that. Freed when the session parks.
    const router::function_policy& policy() const;
    mutable std::unique_ptr<router::function_policy> policy_;
    mutable bool policy_final_ = false;

    /// Sends a whole message (our own errors, authentication requests...) to the client.
    net::awaitable<error_code> send_client(std::string_view bytes);
    net::awaitable<void> send_fatal(std::string_view code, std::string message);
    bool link_clean(const struct backend_link& link) const;

    worker& worker_;
    shared_state& shared_;
    stream client_;
    std::uint64_t id_;
    net::cancellation_signal cancel_signal_;
    frame_reader client_reader_;

    // From the startup packet.
    ha::startup_params params_;
    /// The startup parameters backend connections are opened with (transaction pooling:
    /// without application_name, which is SET instead).
    ha::startup_params backend_params_;
    std::string user_;
    std::string database_;
    std::string application_name_;
    std::optional<std::string> backend_password_;
    /// [pool] with this user's and database's [[pool.override]] entries applied.
    config::pool_settings pool_;

    // The client's identity for cancellation.
    std::uint32_t proxy_pid_ = 0;
    std::uint32_t proxy_key_ = 0;

    /// One connection per node the session uses, by node id; connected on first use. Empty
    /// while parked with nothing worth keeping (see ensure_links()).
    std::vector<backend_link> links_;
    /// Per node, the pool's entry for pool_key(node, backend_params_) (fixed after the startup
    /// packet): resolved once, and kept while parked (the pool keeps the key).
    std::vector<pool_entry*> pool_entries_;
    pool_entry* pool_entry_of(int node);
    std::string_view pool_key_of(int node) { return backend_pool::key_of(pool_entry_of(node)); }
    int active_ = -1;   ///< the node the last unit went to; its responses are being relayed
    int reading_ = -1;  ///< the node backend_to_client reads from (active_ once at a boundary)
    int lb_node_ = -1;  ///< the session's read node (statement_level: none kept)
    int tx_node_ = -1;  ///< the node the client's open transaction runs on
    char client_tx_status_ = 'I';  ///< from the last ReadyForQuery the client got
    router::session_route_state route_;
    bool tx_wrote_ = false;
    std::uint64_t session_lsn_ = 0;     ///< the WAL position of this session's last write
    std::uint64_t statement_tick_ = 0;  ///< uses of prepared statements, for their LRU
    /// set_log_'s fingerprint (0: empty): a pooled connection with the same one needs no SET.
    std::uint64_t set_fingerprint_ = 0;
    /// Statements that change session state, run outside a transaction, in order: every node
    /// the session uses runs them before its first unit there.
    std::vector<session_setting> set_log_;
    /// The statements that opened the current transaction and changed its state (BEGIN,
    /// SAVEPOINT, SET LOCAL...), replayed on the primary when the transaction moves there.
    std::vector<std::string> tx_log_;
    /// Session-level settings (SET, not SET LOCAL) made in the current transaction: they join
    /// set_log_ if it commits.
    std::vector<session_setting> tx_settings_;
    bool tx_commits_ = false;  ///< the statement that ends the transaction commits it
    /// Prepared statements (protocol level) the client has, by name ("" = unnamed).
    std::unordered_map<std::string, prepared_statement> prepared_;

    /// Wakes client_to_backend when the active node's responses have all reached the client.
    worker_timer drained_;
    /// Wakes backend_to_client when it waits for the active node's connection (lost while
    /// idle) to be replaced.
    worker_timer link_ready_;
    bool cancel_target_stale_ = false;  ///< the active node's connection was replaced
    bool superuser_ = false;            ///< the backend said is_superuser = on
    /// dispatch() is running (the relay's reader may run one too, to retry a read): one at a
    /// time, the other waits for dispatch_done_.
    bool dispatching_ = false;
    worker_timer dispatch_done_;
    /// The last unit, while it is a read a standby runs outside a transaction: if that
    /// connection breaks before any of its answer reached the client, it runs elsewhere.
    struct unit_copy;
    std::unique_ptr<unit_copy> replay_;
    bool local_writing_ = false;  ///< client_to_backend writes a local answer to the client
    worker_timer local_done_;

    // Relay state.
    bool in_unit_ = false;  ///< an extended-protocol batch is open (no Sync yet)
    int unit_node_ = -1;    ///< where the open batch goes
    /// The statements of the open batch so far (a batch split by Flush is one transaction
    /// step: whether it wrote decides the WAL position query after its Sync).
    std::vector<router::statement_info> batch_infos_;
    bool client_at_boundary_ = true;   ///< what the client received ends on a message boundary
    std::string end_detail_;           ///< human text for the log / client error
    bool holds_slot_ = false;          ///< holds one of max_client_connections
    bool backend_sent_fatal_ = false;  ///< a backend told the client FATAL itself

    // Parking (idle clients without a coroutine).
    /// While client_to_backend waits for the client with nothing of it buffered, and while
    /// parked: since when (the epoch otherwise).
    std::chrono::steady_clock::time_point client_wait_since_{};
    bool park_requested_ = false;  ///< tick() cancelled the client wait to park
    /// When the client last got a ReadyForQuery, while client_idle_limit or
    /// idle_in_transaction_timeout is set (the epoch otherwise, and once the client sends
    /// more): tick() ends a client that stays silent past the limit of its transaction state.
    std::chrono::steady_clock::time_point client_idle_since_{};
    /// Set by tick() with the limit that ran out; the client read it cancelled ends with it.
    std::optional<session_end> idle_timeout_;
    /// While a login step runs under authentication_timeout: when tick() ends it.
    std::chrono::steady_clock::time_point login_deadline_{};
    /// AuthenticationOk, held back to go out with the next bytes to the client (send_client()).
    std::string owed_client_;
    bool login_expired_ = false;  ///< tick() cancelled the login: it took too long
    bool parked_ = false;         ///< waiting in park(): no coroutine runs
    bool idle_expired_ = false;   ///< parked longer than client_idle_limit
    bool ended_ = false;          ///< finish() ran: the session leaves its worker
    /// client_idle_limit while parked.
    worker_timer idle_timer_;
};

/// One routing unit of client traffic: a Query, a FunctionCall, or an extended-protocol batch
/// (up to Sync, or the part before a Flush), with what routing needs to know about it.
struct session::unit {
    struct message {
        char tag = 0;
        std::size_t offset = 0;  ///< where it starts in bytes
        std::size_t size = 0;    ///< its bytes in `bytes` (all of it unless streamed)
        std::string name;        ///< P: statement; B: statement; D/C: statement or portal
        char kind = 0;           ///< D/C: 'S' or 'P'
    };
    struct parse {
        std::string name;
        router::statement_info info;
        std::string text;
        router::text_markers markers;  ///< of text
    };
    std::string bytes;              ///< the client's messages, as received
    std::vector<message> messages;  ///< extended protocol, in order
    std::vector<parse> parsed;      ///< the batch's Parse messages, in order
    std::string_view text;          ///< Query: the SQL text (a view into bytes' source)
    bool query = false;             ///< a simple Query with text
    bool function_call = false;     ///< FunctionCall: primary
    bool unclassified = false;      ///< too large or unreadable to classify: primary
    bool ends_batch = false;        ///< a ReadyForQuery answers it
    bool streamed = false;          ///< its last message streams on after these bytes
    bool copy_in = false;           ///< may start COPY FROM STDIN (classify_unit())
    /// Its Query or Parse texts hold session state (classify_unit(); router::markers_of()).
    bool holds_session_state = false;
    bool continuation = false;  ///< the rest of a batch already sent in part (after Flush)
    bool pgpilot_sync = false;  ///< continuation: pgpilot's own Sync ending the batch
    // Filled by classify_unit():
    std::vector<router::statement_info> infos;  ///< the statements it runs (or parses)
    router::unit_summary summary;
};

struct session::unit_copy {
    unit u;
    int node = -1;
};

/// Starts a session on a worker (the socket's executor must be the worker's).
void start_session(worker& w, stream client);

/// How long a client waits between transactions, without a backend connection, before its
/// session parks (frees its coroutines; see session::park()); also how often each worker
/// looks. Short, so that few sessions hold coroutine frames at once (frames that live long
/// get interleaved with other sessions' long-lived objects, and their pages cannot go back
/// to the system when they are freed); long against the gaps between a busy client's
/// transactions, which do not park.
inline constexpr std::chrono::milliseconds park_after{100};

}  // namespace pgpilot::proxy
