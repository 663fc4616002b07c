#include "proxy/pool.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <tuple>

#include <fmt/format.h>

#include "protocol/messages.hpp"

namespace pgpilot::proxy {

namespace {
void say_goodbye(ha::backend_connection& c) {
    // Best effort, non-blocking: a Terminate lets the backend exit without logging an
    // "unexpected EOF on client connection".
    std::string bye;
    protocol::append_terminate(bye);
    error_code ec;
    c.socket.non_blocking(true, ec);
    c.socket.send(net::buffer(bye), 0, ec);
    c.socket.close(ec);
}

/// Moves an idle connection's socket onto `ex` (another worker's event loop).
void rebind(ha::backend_connection& c, const net::any_io_executor& ex) {
    error_code ec;
    if (!c.protocol) {
        c.protocol = c.socket.local_endpoint(ec).protocol();  // once per connection
        if (ec) return;  // broken: the session finds out on first use
    }
    int fd = c.socket.release(ec);
    if (ec) return;
    c.socket = stream(ex, *c.protocol, fd);
}

std::string group_key(int node, std::string_view user, std::string_view database) {
    return fmt::format("{}|{}:{}|{}", node, user.size(), user, database);
}
}  // namespace

std::string pool_key(int node, const ha::startup_params& params) {
    // Sorted, and each name and value length-prefixed, so that no two different parameter
    // sets share a key whatever characters their values hold.
    std::vector<const std::pair<std::string, std::string>*> sorted;
    sorted.reserve(params.size());
    std::size_t size = 8;
    for (const auto& p : params) {
        sorted.push_back(&p);
        size += p.first.size() + p.second.size() + 24;
    }
    std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return *a < *b; });
    std::string key = std::to_string(node);
    key.reserve(size);
    for (const auto* p : sorted) {
        key += '|';
        key += std::to_string(p->first.size());
        key += ':';
        key += p->first;
        key += std::to_string(p->second.size());
        key += ':';
        key += p->second;
    }
    return key;
}

server_hello::server_hello(const ha::startup_params& params) {
    for (const auto& [name, value] : params) {
        if (name == "application_name") {
            has_application_name_ = true;
            application_name_ = value;
            continue;
        }
        if (name == "is_superuser") superuser = value == "on";
        protocol::append_parameter_status(has_application_name_ ? after_ : before_, name, value);
    }
}

void server_hello::append_to(std::string& out, const std::string* client_application_name) const {
    out += before_;
    if (has_application_name_)
        protocol::append_parameter_status(
            out, "application_name",
            client_application_name ? *client_application_name : application_name_);
    out += after_;
}

bool looks_closed(ha::backend_connection& conn) {
    // The server answered everything on this connection and its event loop has had no word
    // from it since: a close or unsolicited data would have brought one, so no need to ask the
    // kernel. (A close in the same instant as the last answer is not seen here; the next
    // write's reset shows it, and that client gets an error, as with a close just after a
    // peek.)
    if (known_empty(conn.socket)) return false;
    char byte;
    ssize_t n = ::recv(conn.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;                            // orderly close
    if (n > 0) return true;                             // unsolicited data: not in a known state
    return !(errno == EAGAIN || errno == EWOULDBLOCK);  // reset or other error
}

backend_pool::counted::~counted() {
    try {
        if (!released) pool->on_closed(*g);
    } catch (...) {  // a destructor must not throw (std::mutex::lock can)
    }
}

backend_pool::backend_pool(std::size_t nodes, limits l)
    : limits_(l), open_per_node_(nodes, 0), waiters_(nodes) {}

backend_pool::~backend_pool() {
    try {
        clear();
    } catch (...) {  // a destructor must not throw (std::mutex::lock can)
    }
}

backend_pool::idle_list& backend_pool::idle_for(std::string_view key) {
    auto it = idle_.find(key);
    if (it == idle_.end()) {
        it = idle_.try_emplace(std::string(key)).first;
        it->second.key = it->first;
    }
    return it->second;
}

pool_entry* backend_pool::resolve(std::string_view key) {
    std::lock_guard lock(mutex_);
    return reinterpret_cast<pool_entry*>(&idle_for(key));
}

std::string_view backend_pool::key_of(const pool_entry* entry) {
    return reinterpret_cast<const idle_list*>(entry)->key;
}

backend_pool::idle_list& backend_pool::list_of(std::string_view key, pool_entry* entry) {
    return entry ? *reinterpret_cast<idle_list*>(entry) : idle_for(key);
}

backend_pool::idle_list& backend_pool::entry_for(const pool_request& r) {
    auto& list = list_of(r.key, r.entry);
    if (!list.g) {
        auto& g = groups_[group_key(r.node, r.user, r.database)];
        if (!g) {
            g = std::make_unique<group>();
            g->node = r.node;
            g->user = r.user;
            g->database = r.database;
            g->first = r;
            g->first.key = list.key;  // the map's key: it outlives the request
        }
        list.g = g.get();
    }
    // The latest session's view ([[pool.override]] gives one value per user and database).
    list.g->pool_size = r.pool_size;
    list.g->min_pool_size = r.min_pool_size;
    return list;
}

bool backend_pool::has_waiters(const group& g) const {
    const auto& queue = waiters_[std::size_t(g.node)];
    return std::any_of(queue.begin(), queue.end(), [&g](const auto& w) { return w->g == &g; });
}

bool backend_pool::has_room(const group& g) const {
    return g.open < g.pool_size &&
           open_per_node_[std::size_t(g.node)] < limits_.max_backend_connections;
}

backend_pool::slot backend_pool::grant(group& g) {
    ++g.open;
    ++g.connects;
    ++open_per_node_[std::size_t(g.node)];
    return std::make_shared<counted>(this, &g);
}

bool backend_pool::stale(const ha::backend_connection& c, steady_clock::time_point now) const {
    return (limits_.life_time.count() > 0 && now - c.created >= limits_.life_time) ||
           (limits_.idle_time.count() > 0 && now - c.last_used >= limits_.idle_time);
}

void backend_pool::uncount(ha::backend_connection& c) {
    auto cnt = std::static_pointer_cast<counted>(c.budget);
    if (!cnt || cnt->released) return;
    cnt->released = true;
    --cnt->g->open;
    --open_per_node_[std::size_t(cnt->g->node)];
}

bool backend_pool::make_room(group& g, conn_list& doomed) {
    // Past its own pool_size only another key of the same pool can give way (other startup
    // parameters); past the node's budget, any idle connection to the node.
    const bool group_full = g.open >= g.pool_size;
    for (auto& [key, list] : idle_) {
        if (list.conns.empty() || list.g->node != g.node) continue;
        if (group_full && list.g != &g) continue;
        auto c = std::move(list.conns.front());  // the least recently used
        list.conns.erase(list.conns.begin());
        --list.g->idle;
        uncount(*c);
        doomed.push_back(std::move(c));
        return true;
    }
    return false;
}

void backend_pool::wake(const std::shared_ptr<waiter>& w) {
    // Timers are not thread-safe: cancel on the waiter's own worker, at once when this is it
    // (a connection released to a waiter of the same worker).
    const auto* io = w->timer.get_executor().target<net::io_context::executor_type>();
    if (io && io->running_in_this_thread()) {
        w->timer.cancel();
        return;
    }
    net::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
}

void backend_pool::grant_waiters(int node) {
    auto& queue = waiters_[std::size_t(node)];
    for (auto it = queue.begin(); it != queue.end();) {
        if (open_per_node_[std::size_t(node)] >= limits_.max_backend_connections) return;
        auto& w = *it;
        if (!has_room(*w->g)) {
            ++it;
            continue;
        }
        w->permit = grant(*w->g);
        w->served = true;
        wake(w);
        it = queue.erase(it);
    }
}

void backend_pool::on_closed(group& g) {
    std::lock_guard lock(mutex_);
    --g.open;
    --open_per_node_[std::size_t(g.node)];
    if (!stopping_) grant_waiters(g.node);
}

void backend_pool::close_all(conn_list& doomed) {
    for (auto& c : doomed)
        say_goodbye(*c);
    doomed.clear();
}

void backend_pool::remember_startup_parameters(pool_entry* entry, const ha::startup_params& p) {
    auto hello = std::make_shared<const server_hello>(p);
    std::lock_guard lock(mutex_);
    reinterpret_cast<idle_list*>(entry)->hello = std::move(hello);
}

std::shared_ptr<const server_hello> backend_pool::known_hello(const pool_entry* entry) const {
    std::lock_guard lock(mutex_);
    return reinterpret_cast<const idle_list*>(entry)->hello;
}

std::shared_ptr<void> backend_pool::pin(const ha::backend_connection& conn) {
    auto cnt = std::static_pointer_cast<counted>(conn.budget);
    if (!cnt) return nullptr;
    group* g = cnt->g;
    {
        std::lock_guard lock(mutex_);
        ++g->pinned;
    }
    return {nullptr, [this, g](void*) {
                std::lock_guard lock(mutex_);
                --g->pinned;
            }};
}

void backend_pool::adopt(ha::backend_connection& conn, slot permit) {
    conn.budget = std::move(permit);
}

std::unique_ptr<ha::backend_connection> backend_pool::take_idle_locked(
    idle_list& entry, const net::any_io_executor& ex, steady_clock::time_point now,
    conn_list& doomed) {
    auto& list = entry.conns;
    // The most recently used connection on this worker first (no move between event loops),
    // else the most recently used one.
    auto local = std::find_if(list.rbegin(), list.rend(),
                              [&](const auto& c) { return c->socket.get_executor() == ex; });
    if (local != list.rend() && local != list.rbegin()) std::iter_swap(local, list.rbegin());
    while (!list.empty()) {
        auto c = std::move(list.back());
        list.pop_back();
        --entry.g->idle;
        if (!stale(*c, now) && !looks_closed(*c)) return c;
        doomed.push_back(std::move(c));  // its slot frees the budget
    }
    return nullptr;
}

std::unique_ptr<ha::backend_connection> backend_pool::take_idle(const pool_request& r,
                                                                const net::any_io_executor& ex) {
    conn_list doomed;
    std::unique_ptr<ha::backend_connection> conn;
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return nullptr;
        conn = take_idle_locked(entry_for(r), ex, steady_clock::now(), doomed);
    }
    close_all(doomed);
    if (conn && conn->socket.get_executor() != ex) rebind(*conn, ex);
    return conn;
}

net::awaitable<backend_pool::lease> backend_pool::acquire(const pool_request& r) {
    const auto ex = co_await net::this_coro::executor;
    lease out;
    conn_list doomed;
    std::shared_ptr<waiter> w;
    {
        std::lock_guard lock(mutex_);
        if (stopping_) co_return out;
        auto& entry = entry_for(r);
        auto& g = *entry.g;
        const auto now = steady_clock::now();
        out.conn = take_idle_locked(entry, ex, now, doomed);
        if (out.conn) {
            out.result = lease::outcome::idle;
        } else {
            // Nobody overtakes a client already waiting for this pool.
            const bool queued = has_waiters(g);
            if (!queued && !has_room(g)) make_room(g, doomed);
            if (!queued && has_room(g)) {
                out.permit = grant(g);
                out.result = lease::outcome::may_connect;
            } else {
                w = std::make_shared<waiter>(ex);
                w->g = &g;
                w->key = r.key;
                w->since = now;
                w->timer.expires_at(r.wait.count() > 0 ? now + r.wait
                                                       : steady_clock::time_point::max());
                waiters_[std::size_t(r.node)].push_back(w);
                ++g.waits;
            }
        }
    }
    close_all(doomed);
    if (w) {
        // Served by put() or on_closed() (which cancel the timer), or timed out, or cancelled.
        auto [ec] = co_await w->timer.async_wait(net::as_tuple(net::use_awaitable));
        std::lock_guard lock(mutex_);
        if (w->served) {
            out.conn = std::move(w->conn);
            out.permit = std::move(w->permit);
            out.result = out.conn ? lease::outcome::idle : lease::outcome::may_connect;
        } else {
            auto& queue = waiters_[std::size_t(w->g->node)];
            queue.erase(std::remove(queue.begin(), queue.end(), w), queue.end());
            if (!ec && !stopping_) {
                ++w->g->timeouts;
                out.result = lease::outcome::timed_out;
            }
        }
    }
    if (out.conn && out.conn->socket.get_executor() != ex) rebind(*out.conn, ex);
    co_return out;
}

void backend_pool::put(std::string_view key, std::unique_ptr<ha::backend_connection> conn,
                       std::size_t max_idle, pool_entry* entry) {
    conn_list doomed;
    {
        std::lock_guard lock(mutex_);
        auto cnt = std::static_pointer_cast<counted>(conn->budget);
        if (!cnt || cnt->released || stopping_) {
            doomed.push_back(std::move(conn));
        } else {
            group& g = *cnt->g;
            auto& queue = waiters_[std::size_t(g.node)];
            auto it =
                std::find_if(queue.begin(), queue.end(), [&](const auto& w) { return w->g == &g; });
            const auto here = conn->socket.get_executor();  // the releasing worker
            if (it != queue.end() && (*it)->timer.get_executor() != here) {
                const auto limit = (*it)->since + same_worker_preference;
                for (auto l = std::next(it); l != queue.end() && (*l)->since <= limit; ++l) {
                    if ((*l)->g == &g && (*l)->timer.get_executor() == here) {
                        it = l;
                        break;
                    }
                }
            }
            if (it != queue.end()) {
                // The longest waiter of this pool gets it; one with other startup parameters
                // gets its budget instead, and opens its own.
                auto w = *it;
                queue.erase(it);
                w->served = true;
                if (w->key == key) {
                    conn->last_used = steady_clock::now();
                    w->conn = std::move(conn);
                } else {
                    w->permit = std::move(conn->budget);
                    doomed.push_back(std::move(conn));
                }
                wake(w);
            } else if (!queue.empty() &&
                       open_per_node_[std::size_t(g.node)] >= limits_.max_backend_connections) {
                // Others wait for the node's budget: this connection gives way to them.
                uncount(*conn);
                doomed.push_back(std::move(conn));
                grant_waiters(g.node);
            } else {
                auto& list = list_of(key, entry);
                list.g = &g;
                if (list.conns.size() < max_idle) {
                    conn->last_used = steady_clock::now();
                    list.conns.push_back(std::move(conn));
                    ++g.idle;
                } else {
                    doomed.push_back(std::move(conn));
                }
            }
        }
    }
    close_all(doomed);
}

std::size_t backend_pool::sweep() {
    conn_list doomed;
    {
        std::lock_guard lock(mutex_);
        const auto now = steady_clock::now();
        for (auto& [key, list] : idle_) {
            auto& conns = list.conns;
            auto dead = std::stable_partition(conns.begin(), conns.end(), [&](auto& c) {
                return !(stale(*c, now) || looks_closed(*c));
            });
            for (auto it = dead; it != conns.end(); ++it)
                doomed.push_back(std::move(*it));
            list.g->idle -= std::size_t(conns.end() - dead);
            conns.erase(dead, conns.end());
        }
    }
    const std::size_t n = doomed.size();
    close_all(doomed);
    return n;
}

std::vector<std::pair<pool_request, backend_pool::slot>> backend_pool::below_minimum() {
    std::vector<std::pair<pool_request, slot>> out;
    std::lock_guard lock(mutex_);
    if (stopping_) return out;
    for (auto& [name, g] : groups_) {
        const bool queued = has_waiters(*g);
        while (!queued && g->open < g->min_pool_size && has_room(*g))
            out.emplace_back(g->first, grant(*g));
    }
    return out;
}

void backend_pool::clear() {
    conn_list doomed;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        for (auto& [key, list] : idle_) {
            for (auto& c : list.conns)
                doomed.push_back(std::move(c));
            list.g->idle = 0;
            list.conns.clear();
        }
        for (auto& queue : waiters_) {
            for (auto& w : queue)
                wake(w);
            queue.clear();
        }
    }
    close_all(doomed);
}

std::size_t backend_pool::idle_count() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [key, list] : idle_)
        n += list.conns.size();
    return n;
}

std::vector<pool_stats> backend_pool::stats() const {
    std::vector<pool_stats> out;
    std::lock_guard lock(mutex_);
    const auto now = steady_clock::now();
    for (const auto& [name, g] : groups_) {
        pool_stats s;
        s.node = g->node;
        s.user = g->user;
        s.database = g->database;
        s.open = g->open;
        s.idle = g->idle;
        s.pinned = g->pinned;
        s.pool_size = g->pool_size;
        s.waits = g->waits;
        s.timeouts = g->timeouts;
        s.connects = g->connects;
        for (const auto& w : waiters_[std::size_t(g->node)]) {
            if (w->g != g.get()) continue;
            ++s.waiting;
            s.max_wait =
                std::max(s.max_wait, std::chrono::duration<double>(now - w->since).count());
        }
        out.push_back(std::move(s));
    }
    std::sort(out.begin(), out.end(), [](const pool_stats& a, const pool_stats& b) {
        return std::tie(a.database, a.user, a.node) < std::tie(b.database, b.user, b.node);
    });
    return out;
}

}  // namespace pgpilot::proxy
