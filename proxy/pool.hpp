// Backend connections shared by every worker: the idle ones kept for reuse, and the budgets
// that bound how many exist (pool_size per user, database and node; max_backend_connections
// per node), with a first-come-first-served queue of clients waiting for one.
#pragma once

#include <boost/asio.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ha/connector.hpp"

namespace pgpilot::proxy {

namespace net = boost::asio;
using steady_clock = std::chrono::steady_clock;

/// A configured number of seconds as a clock duration.
inline steady_clock::duration seconds_to_duration(double seconds) {
    return std::chrono::duration_cast<steady_clock::duration>(
        std::chrono::duration<double>(seconds));
}

/// The pool key: every startup parameter matters, because the backend applied them.
std::string pool_key(int node, const ha::startup_params& params);

/// True when the backend has closed the connection or sent something unasked (e.g. the
/// FATAL of pg_terminate_backend), checked without blocking.
bool looks_closed(ha::backend_connection& conn);

/// One row of SHOW POOLS: a (user, database, node) pool.
struct pool_stats {
    int node = -1;
    std::string user;
    std::string database;
    std::size_t open = 0;     ///< server connections, idle or in use
    std::size_t idle = 0;     ///< of which idle in the pool
    std::size_t waiting = 0;  ///< clients waiting for a connection now
    std::size_t pinned = 0;   ///< transaction pooling: clients holding one for their session
    std::size_t pool_size = 0;
    double max_wait = 0;         ///< seconds the longest waiter has waited so far
    std::uint64_t waits = 0;     ///< clients that had to wait, since start
    std::uint64_t timeouts = 0;  ///< waits that ended with query_wait_timeout
    std::uint64_t connects = 0;  ///< server connections opened
};

/// A pool key as the pool knows it (backend_pool::resolve()): opaque, never dereferenced
/// outside the pool.
struct pool_entry;

/// What a server reported at startup (ParameterStatus), encoded once for the clients it is
/// told to. Each client sets its own application_name, so the messages are kept in two parts
/// around that one (in the server's order).
struct server_hello {
    explicit server_hello(const ha::startup_params& params);
    /// Appends the ParameterStatus messages to `out`; a non-null `client_application_name`
    /// stands in for the server's application_name (when the server reported one).
    void append_to(std::string& out, const std::string* client_application_name) const;

    bool superuser = false;  ///< is_superuser = on

  private:
    std::string before_;  ///< the messages before application_name (all when there is none)
    std::string after_;   ///< the messages after it
    std::string application_name_;
    bool has_application_name_ = false;
};

/// What a session asks the pool for.
struct pool_request {
    int node = -1;
    std::string user;
    std::string database;
    /// pool_key(node, startup parameters); the caller keeps it alive while acquire() runs.
    std::string_view key;
    /// resolve(key), when the caller keeps it: the pool then neither hashes nor compares the
    /// key (a few hundred bytes of startup parameters) on every transaction.
    pool_entry* entry = nullptr;
    std::size_t pool_size = 20;
    std::size_t min_pool_size = 0;
    steady_clock::duration wait{};  ///< query_wait_timeout; zero = wait for ever
    /// How to open connections for min_pool_size (the session's startup parameters and the
    /// password pgpilot presents).
    ha::startup_params params;
    std::optional<std::string> password;
};

class backend_pool {
  public:
    struct limits {
        std::size_t max_backend_connections = 100;  ///< per node
        steady_clock::duration life_time{};         ///< connection_life_time; zero = none
        steady_clock::duration idle_time{};         ///< server_idle_timeout; zero = none
    };
    /// How much later than the oldest waiter of a pool a waiter on the releasing worker may have
    /// started waiting and still be served first: a connection that stays on its worker's event
    /// loop saves moving its descriptor between epoll sets (two epoll_ctl calls and an ioctl) and
    /// a wake-up of the other thread, and no waiter is overtaken by one that came more than this
    /// after it. With 256 clients on 20 connections and two workers, waits run to tens of
    /// milliseconds and a worker's waiters arrive in bursts: a 2 ms window still moved the
    /// connection in one transaction of five, 20 ms in one of twenty to fifty.
    static constexpr std::chrono::milliseconds same_worker_preference{20};

    backend_pool(std::size_t nodes, limits l);
    ~backend_pool();
    backend_pool(const backend_pool&) = delete;
    backend_pool& operator=(const backend_pool&) = delete;

    /// A permission to open one server connection, counted against the budgets until the
    /// connection it is given to is destroyed (or, unused, until it is destroyed itself).
    using slot = std::shared_ptr<void>;

    struct lease {
        enum class outcome : std::uint8_t { idle, may_connect, timed_out, cancelled };
        outcome result = outcome::cancelled;
        /// outcome::idle: a healthy idle connection, on the caller's executor.
        std::unique_ptr<ha::backend_connection> conn;
        /// outcome::may_connect: pass it to adopt() with the new connection.
        slot permit;
    };

    /// An idle connection for `r.key`, or the right to open one; waits first come first
    /// served while the budgets are used up, at most `r.wait`. The wait ends early, with
    /// outcome::cancelled, when the awaiting coroutine is cancelled.
    net::awaitable<lease> acquire(const pool_request& r);
    /// acquire()'s first step without a coroutine: a healthy idle connection for `r.key`, on
    /// `ex`, or null (then acquire() decides between connecting and waiting).
    std::unique_ptr<ha::backend_connection> take_idle(const pool_request& r,
                                                      const net::any_io_executor& ex);
    /// Counts `conn` (opened under `permit`) until it is destroyed.
    static void adopt(ha::backend_connection& conn, slot permit);
    /// Gives an idle connection back: to the longest waiter that can use it, else kept idle
    /// (at most `max_idle` for its key), else closed. `entry`: resolve(key), if known.
    void put(std::string_view key, std::unique_ptr<ha::backend_connection> conn,
             std::size_t max_idle, pool_entry* entry = nullptr);
    /// The pool's entry for `key`, valid as long as the pool (entries are never removed).
    pool_entry* resolve(std::string_view key);
    /// The key `entry` was resolved from (valid as long as the pool).
    static std::string_view key_of(const pool_entry* entry);
    /// What a new connection of `entry`'s pool reported at startup (ParameterStatus), kept so
    /// that transaction pooling can greet a client without a connection.
    void remember_startup_parameters(pool_entry* entry, const ha::startup_params& p);
    std::shared_ptr<const server_hello> known_hello(const pool_entry* entry) const;
    /// Counts the session holding `conn` as pinned to it (transaction pooling) while the
    /// returned token lives.
    std::shared_ptr<void> pin(const ha::backend_connection& conn);
    /// Closes idle connections past connection_life_time or server_idle_timeout, or closed by
    /// their backend; returns how many.
    std::size_t sweep();
    /// For pools below their min_pool_size: what it takes to open a connection for them, and
    /// the budget to open it under (one entry per connection missing).
    std::vector<std::pair<pool_request, slot>> below_minimum();
    /// Closes every idle connection and ends every wait (shutdown).
    void clear();

    std::size_t idle_count() const;
    std::vector<pool_stats> stats() const;

  private:
    struct group {
        int node = -1;
        std::string user;
        std::string database;
        std::size_t pool_size = 0;
        std::size_t min_pool_size = 0;
        std::size_t open = 0;
        std::size_t idle = 0;
        std::size_t pinned = 0;
        std::uint64_t waits = 0;
        std::uint64_t timeouts = 0;
        std::uint64_t connects = 0;
        pool_request first;  ///< how the pool was first asked for (min_pool_size connects)
    };
    struct idle_list {
        std::string_view key;  ///< its key in idle_ (a map's keys do not move)
        group* g = nullptr;
        std::vector<std::unique_ptr<ha::backend_connection>> conns;  // most recent last
        std::shared_ptr<const server_hello> hello;  ///< remember_startup_parameters()
    };
    struct waiter {
        explicit waiter(const net::any_io_executor& ex) : timer(ex) {}
        net::steady_timer timer;
        group* g = nullptr;
        std::string_view key;  ///< the request's (alive while the waiter is queued)
        steady_clock::time_point since;
        // Set under mutex_ by whoever serves it:
        bool served = false;
        std::unique_ptr<ha::backend_connection> conn;
        slot permit;
    };
    /// What a slot points to: destroyed with the connection, it gives the budget back.
    struct counted {
        backend_pool* pool = nullptr;
        group* g = nullptr;
        bool released = false;  ///< its budget was already given back (mutex_ held)
        counted(backend_pool* p, group* gr) : pool(p), g(gr) {}
        ~counted();
        counted(const counted&) = delete;
        counted& operator=(const counted&) = delete;
    };
    using conn_list = std::vector<std::unique_ptr<ha::backend_connection>>;

    // All with mutex_ held:
    /// The idle list of `key`, made empty when there is none yet.
    idle_list& idle_for(std::string_view key);
    /// The idle list of `r.key`, bound to the group of (node, user, database).
    idle_list& entry_for(const pool_request& r);
    bool has_room(const group& g) const;
    /// Whether clients wait for a connection of `g` (nobody overtakes them).
    bool has_waiters(const group& g) const;
    slot grant(group& g);
    bool stale(const ha::backend_connection& c, steady_clock::time_point now) const;
    /// Gives the budget of `c` back now (it is about to be closed).
    void uncount(ha::backend_connection& c);
    /// Closes one idle connection that stands in the way of `g` growing; false if none.
    bool make_room(group& g, conn_list& doomed);
    /// The idle list of `entry` if the caller resolved it, else of `key` (mutex_ held).
    idle_list& list_of(std::string_view key, pool_entry* entry);
    /// The idle connection take_idle() and acquire() hand out (mutex_ held); stale and closed
    /// ones met on the way go to `doomed`.
    std::unique_ptr<ha::backend_connection> take_idle_locked(idle_list& entry,
                                                             const net::any_io_executor& ex,
                                                             steady_clock::time_point now,
                                                             conn_list& doomed);
    /// Hands freed budget to waiters, oldest first.
    void grant_waiters(int node);
    static void wake(const std::shared_ptr<waiter>& w);

    void on_closed(group& g);
    /// Says goodbye to and destroys connections (mutex_ not held: their slots lock it).
    static void close_all(conn_list& doomed);

    const limits limits_;
    mutable std::mutex mutex_;
    std::vector<std::size_t> open_per_node_;
    std::unordered_map<std::string, std::unique_ptr<group>> groups_;  // by node|user|database
    /// Hashes std::string and std::string_view alike (lookups by a request's key copy nothing).
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view k) const {
            return std::hash<std::string_view>{}(k);
        }
    };
    // By pool key; an entry, once made, stays (sessions' requests find their group through it).
    std::unordered_map<std::string, idle_list, key_hash, std::equal_to<>> idle_;
    std::vector<std::deque<std::shared_ptr<waiter>>> waiters_;  // per node, oldest first
    bool stopping_ = false;
};

}  // namespace pgpilot::proxy
