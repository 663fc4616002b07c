#include "proxy/session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <netinet/in.h>

#include <array>
#include <cstring>
#include <filesystem>

#include "ha/log.hpp"
#include "ha/replication.hpp"
#include "protocol/auth.hpp"
#include "protocol/messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"
#include "router/cluster.hpp"

namespace pgpilot::proxy {

namespace {

using namespace net::experimental::awaitable_operators;
namespace sqlstate = protocol::sqlstate;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

constexpr std::size_t relay_buffer_size = relay_buffers::size;
/// Bytes read into a session's own small buffer after a wait (see client_to_backend).
constexpr std::size_t small_read_size = 512;
/// Fairness: a client that keeps its socket full (a long pipeline, COPY FROM STDIN) is relayed
/// by reads and writes that succeed without waiting, so client_to_backend() would never give
/// its worker back to the other sessions, the accept loop and the timers. After this many
/// messages, or this many bytes, relayed without a wait it lets them run once.
constexpr int messages_per_turn = 64;
constexpr std::size_t bytes_per_turn = 256 * 1024;
/// client_idle_limit's FATAL (57P05), as PostgreSQL words its idle_session_timeout.
constexpr const char* idle_session_text = "terminating connection due to idle-session timeout";
/// What a client ended by client_idle_limit or idle_in_transaction_timeout is told.
const char* idle_end_text(session_end why) {
    return why == session_end::client_idle_timeout
               ? idle_session_text
               : "terminating connection due to idle-in-transaction timeout";
}
/// Largest message accepted while authenticating (PasswordMessage, SASL messages).
constexpr std::uint32_t max_auth_message = 64 * 1024;

bool is_cancelled(const error_code& ec) {
    return ec == net::error::operation_aborted;
}

/// Where a client connects from, for [auth] hba_file: the address to match, and the host and
/// file as the refusal names them (PostgreSQL: no pg_hba.conf entry for host "[local]", ...).
struct hba_origin {
    config::client_origin origin;
    std::string host;
    std::string file;
};
hba_origin origin_of(const stream& client, const std::string& hba_file) {
    hba_origin out;
    out.file = std::filesystem::path(hba_file).filename().string();
    error_code ec;
    const auto ep = client.remote_endpoint(ec);
    const auto* sa = ep.data();
    if (ec || sa->sa_family == AF_UNIX) {
        out.origin.local = true;
        out.host = "[local]";
    } else if (sa->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        out.origin.ipv6 = true;
        std::memcpy(out.origin.address.data(), &in6->sin6_addr, 16);
        out.host = net::ip::address_v6(out.origin.address).to_string();
    } else {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
        std::memcpy(out.origin.address.data(), &in4->sin_addr, 4);
        out.host = net::ip::address_v4(ntohl(in4->sin_addr.s_addr)).to_string();
    }
    return out;
}

protocol::auth_method to_protocol(config::auth_method m) {
    switch (m) {
        case config::auth_method::trust:
            return protocol::auth_method::trust;
        case config::auth_method::password:
            return protocol::auth_method::password;
        case config::auth_method::md5:
            return protocol::auth_method::md5;
        case config::auth_method::scram_sha_256:
            return protocol::auth_method::scram_sha_256;
    }
    return protocol::auth_method::scram_sha_256;
}

std::string error_message(std::string_view severity, std::string_view code, std::string text) {
    std::string out;
    protocol::append_error_response(out, {severity, code, std::move(text), {}, {}});
    return out;
}

}  // namespace

const char* to_string(session_end e) {
    switch (e) {
        case session_end::client_terminated:
            return "client terminated";
        case session_end::client_disconnected:
            return "client disconnected";
        case session_end::client_protocol_violation:
            return "client protocol violation";
        case session_end::startup_rejected:
            return "startup rejected";
        case session_end::authentication_failed:
            return "authentication failed";
        case session_end::authentication_timeout:
            return "authentication timeout";
        case session_end::too_many_clients:
            return "too many clients";
        case session_end::client_idle_timeout:
            return "client idle timeout";
        case session_end::idle_in_transaction_timeout:
            return "idle-in-transaction timeout";
        case session_end::cancel_request:
            return "cancel request";
        case session_end::no_backend:
            return "no backend";
        case session_end::backend_disconnected:
            return "backend disconnected";
        case session_end::backend_protocol_violation:
            return "backend protocol violation";
        case session_end::admin_shutdown:
            return "admin shutdown";
        case session_end::internal_error:
            return "internal error";
        case session_end::parked:
            return "parked";
    }
    return "?";
}

session::session(worker& w, stream client, std::uint64_t id)
    : worker_(w),
      shared_(w.shared),
      client_(std::move(client)),
      id_(id),
      drained_(w.ctx, std::chrono::steady_clock::time_point::max()),
      link_ready_(w.ctx, std::chrono::steady_clock::time_point::max()),
      dispatch_done_(w.ctx, std::chrono::steady_clock::time_point::max()),
      local_done_(w.ctx, std::chrono::steady_clock::time_point::max()),
      idle_timer_(w.ctx) {}

net::awaitable<error_code> session::send_client(std::string_view bytes) {
    client_at_boundary_ = false;
    error_code ec;
    if (owed_client_.empty()) {
        ec = co_await write_all(client_, bytes);
    } else {
        owed_client_.append(bytes);
        ec = co_await write_all(client_, owed_client_);
        std::string().swap(owed_client_);
    }
    if (!ec) client_at_boundary_ = true;
    co_return ec;
}

net::awaitable<void> session::send_fatal(std::string_view code, std::string message) {
    end_detail_ = message;
    const std::string frame = error_message("FATAL", code, std::move(message));
    co_await send_client(frame);
}

// ---------------------------------------------------------------------------------------------
// Startup and authentication

net::awaitable<session_end> session::within_authentication_timeout(
    net::awaitable<session_end> step) {
    const auto limit = shared_.timeouts.authentication;
    if (limit.count() > 0) login_deadline_ = std::chrono::steady_clock::now() + limit;
    auto end = co_await std::move(step);
    login_deadline_ = {};
    if (login_expired_) {
        // PostgreSQL closes such a connection without a message (authentication_timeout).
        end_detail_ = "no startup and authentication within the timeout";
        co_return session_end::authentication_timeout;
    }
    co_return end;
}

net::awaitable<session_end> session::negotiate_and_authenticate() {
    auto end = co_await within_authentication_timeout(negotiate());
    if (end != session_end::client_terminated) co_return end;
    // The client slot is taken after the startup packet, so that CancelRequests are never
    // queued, and the wait for it does not count against authentication_timeout.
    switch (co_await shared_.slots.acquire()) {
        case client_slots::outcome::granted:
            holds_slot_ = true;
            break;
        case client_slots::outcome::refused:
            co_await send_fatal(sqlstate::too_many_connections, "sorry, too many clients already");
            co_return session_end::too_many_clients;
        case client_slots::outcome::cancelled:
            co_return session_end::admin_shutdown;
    }
    co_return co_await within_authentication_timeout(authenticate());
}

// https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.3
// Returns client_terminated to mean "go on" (a startup packet was accepted).
net::awaitable<session_end> session::negotiate() {
    for (;;) {
        auto parsed = protocol::parse_startup(client_reader_.pending());
        if (parsed.st == protocol::startup_result::need_more) {
            if (auto ec = co_await client_reader_.fill(client_)) {
                end_detail_ = ec.message();
                co_return session_end::client_disconnected;
            }
            continue;
        }
        if (parsed.st == protocol::startup_result::malformed) {
            co_await send_fatal(sqlstate::protocol_violation, parsed.error);
            co_return session_end::startup_rejected;
        }
        client_reader_.consume(parsed.consumed);
        auto& p = parsed.packet;
        switch (p.kind) {
            case protocol::startup_kind::ssl_request:
            case protocol::startup_kind::gssenc_request:
                // No TLS or GSSAPI encryption yet: 'N' tells the client to go on in clear text.
                if (auto ec = co_await write_all(client_, "N"))
                    co_return session_end::client_disconnected;
                continue;
            case protocol::startup_kind::cancel_request:
                co_return co_await handle_cancel_request(p.cancel_pid, p.cancel_key);
            case protocol::startup_kind::startup:
                break;
        }
        if (p.major != 3) {
            co_await send_fatal(sqlstate::feature_not_supported,
                                fmt::format("unsupported frontend protocol {}.{}: server supports "
                                            "3.0 to 3.0",
                                            p.major, p.minor));
            co_return session_end::startup_rejected;
        }
        std::vector<std::string> unrecognized;
        for (auto& kv : p.params) {
            if (kv.first.starts_with("_pq_."))
                unrecognized.push_back(kv.first);
            else
                params_.push_back(std::move(kv));
        }
        if (p.minor > 0 || !unrecognized.empty()) {
            std::string v;
            protocol::append_negotiate_protocol_version(v, 0, unrecognized);
            if (auto ec = co_await send_client(v)) co_return session_end::client_disconnected;
        }
        for (const auto& [k, v] : params_) {
            if (k == "user") user_ = v;
            if (k == "database") database_ = v;
        }
        if (user_.empty()) {
            co_await send_fatal(sqlstate::invalid_authorization_specification,
                                "no PostgreSQL user name specified in startup packet");
            co_return session_end::startup_rejected;
        }
        if (database_.empty()) {
            database_ = user_;
            params_.emplace_back("database", database_);
        }
        pool_ = shared_.settings.pool_for(user_, database_);
        backend_params_ = params_;
        if (pool_.mode == config::pool_mode::transaction) {
            // Transaction pooling: application_name is applied with SET on whichever
            // connection runs the client's transaction, so clients that name themselves
            // differently (psql, pgbench, an admin tool) share one pool.
            auto it = std::find_if(backend_params_.begin(), backend_params_.end(),
                                   [](const auto& kv) { return kv.first == "application_name"; });
            if (it != backend_params_.end()) {
                set_log_.push_back({"SET application_name = " + ha::sql_literal(it->second), {}});
                set_fingerprint_ = settings_fingerprint(set_log_.size());
                backend_params_.erase(it);
            }
        }
        co_return session_end::client_terminated;
    }
}

net::awaitable<session_end> session::handle_cancel_request(std::uint32_t pid, std::uint32_t key) {
    end_detail_ = fmt::format("for pid {}", pid);
    auto target = shared_.cancels.find(pid, key);
    if (target && target->pid == 0) {
        // Transaction pooling, between transactions: nothing of that client runs anywhere.
        log::debug("s{} cancel request for pid {}, which has nothing running", id_, pid);
        co_return session_end::cancel_request;
    }
    if (!target) {
        // A wrong key is ignored silently, as PostgreSQL does (no oracle for guessing).
        log::debug("s{} cancel request with unknown pid/key {}", id_, pid);
        co_return session_end::cancel_request;
    }
    auto ec = co_await ha::send_cancel(target->address, target->pid, target->key);
    if (ec)
        log::warning("s{} could not forward cancel to {}:{}: {}", id_, target->address.host,
                     target->address.port, ec.message());
    else
        log::info("s{} forwarded cancel for pid {} to backend pid {}", id_, pid, target->pid);
    co_return session_end::cancel_request;
}

net::awaitable<session_end> session::authenticate() {
    const auto login = shared_.login_settings();  // the latest reload's [auth] and users
    const auto& cfg = *login;
    auto method = cfg.auth.method;
    if (!cfg.auth.hba_file.empty()) {
        // [auth] hba_file: the first rule for this connection decides (none: refused).
        const auto from = origin_of(client_, cfg.auth.hba_file);
        const auto* rule = config::match_hba(cfg.auth.hba, from.origin, database_, user_);
        if (!rule || !rule->method) {
            const auto text = fmt::format("{} for host \"{}\", user \"{}\", database \"{}\"",
                                          rule ? fmt::format("{} rejects connection", from.file)
                                               : fmt::format("no {} entry", from.file),
                                          from.host, user_, database_);
            log::warning("s{} {}", id_, text);
            co_await send_fatal(sqlstate::invalid_authorization_specification, text);
            co_return session_end::authentication_failed;
        }
        method = *rule->method;
    }
    const config::user_settings* entry = cfg.find_user(user_);
    std::optional<std::string> stored;
    if (entry) stored = entry->password;
    protocol::client_authenticator auth(to_protocol(method), user_, stored);
    auto step = auth.start();
    for (;;) {
        using kind = protocol::client_authenticator::step;
        if (step.k == kind::fail) {
            log::warning("s{} authentication failed for user \"{}\": {}", id_, user_, step.error);
            co_await send_fatal(auth.failure_sqlstate(), step.error);
            co_return session_end::authentication_failed;
        }
        if (step.k == kind::send_and_done_ok) {
            // AuthenticationOk goes out with the greeting (attach_backend()): one write, and
            // one wake-up of the client instead of two.
            owed_client_ = std::move(step.to_send);
            break;
        }
        if (auto ec = co_await send_client(step.to_send))
            co_return session_end::client_disconnected;
        protocol::whole_frame f;
        if (auto ec = co_await client_reader_.read_frame(client_, f, max_auth_message)) {
            if (ec == boost::system::errc::bad_message) {
                co_await send_fatal(sqlstate::protocol_violation,
                                    "invalid message length during authentication");
                co_return session_end::client_protocol_violation;
            }
            // libpq closes the connection when it has no password to give (psql then asks
            // for one and reconnects): not worth a warning.
            end_detail_ = "client closed the connection during authentication";
            co_return session_end::client_disconnected;
        }
        step = auth.on_message(f.tag, f.body);
    }

    // The password pgpilot gives a backend that asks for one: the configured backend
    // password, else the user's own secret from the configuration (cleartext or md5 hash),
    // else what the client typed (password method: pass-through).
    if (!cfg.auth.backend_password.empty()) {
        backend_password_ = cfg.auth.backend_password;
    } else if (entry &&
               protocol::classify_secret(entry->password) != protocol::secret_kind::scram) {
        backend_password_ = entry->password;
    } else if (auto clear = auth.cleartext_password()) {
        backend_password_ = *clear;
    }
    co_return session_end::client_terminated;
}

// ---------------------------------------------------------------------------------------------
// Backend

pool_entry* session::pool_entry_of(int node) {
    if (pool_entries_.empty()) pool_entries_.resize(shared_.registry.snapshot()->nodes.size());
    auto& entry = pool_entries_.at(std::size_t(node));
    if (!entry) entry = shared_.pool.resolve(pool_key(node, backend_params_));
    return entry;
}

std::optional<int> session::current_primary() const {
    return router::route_to_primary(*shared_.registry.snapshot()).node;
}

pool_request session::pool_request_for(int node) {
    pool_request want;
    want.node = node;
    want.user = user_;
    want.database = database_;
    want.key = pool_key_of(node);
    want.entry = pool_entry_of(node);
    want.pool_size = std::size_t(pool_.pool_size);
    want.min_pool_size = std::size_t(pool_.min_pool_size);
    want.wait = seconds_to_duration(pool_.query_wait_timeout);
    if (want.min_pool_size > 0) {
        want.params = backend_params_;
        want.password = backend_password_;
    }
    return want;
}

void session::reuse(int node, std::unique_ptr<ha::backend_connection> conn) {
    auto& link = links_[std::size_t(node)];
    link.conn = std::move(conn);  // checked by the pool: not closed
    log::debug("s{} reusing backend pid {} on node {}", id_, link.conn->pid, node);
    // Transaction pooling: it may already have this session's settings.
    if (link.conn->settings_fingerprint == set_fingerprint_)
        link.settings_applied = set_log_.size();
}

bool session::link_ready_now(int node) {
    auto& link = links_.at(std::size_t(node));
    if (link.conn) return node == reading_ || !link.queue.empty() || !looks_closed(*link.conn);
    if (std::chrono::steady_clock::now() < link.retry_after) return false;
    auto conn = shared_.pool.take_idle(pool_request_for(node), worker_.ctx.get_executor());
    if (!conn) return false;
    link = backend_link{};
    reuse(node, std::move(conn));
    return true;
}

net::awaitable<bool> session::ensure_link(int node) {
    auto& link = links_.at(std::size_t(node));
    if (link.conn) {
        // Nobody reads an idle connection the session is not using: its node may have gone
        // away meanwhile (the primary killed while the session was reading from a standby).
        if (node == reading_ || !link.queue.empty() || !looks_closed(*link.conn)) co_return true;
        if (!may_lose_link(node)) {
            link.failure = {std::string(sqlstate::admin_shutdown),
                            fmt::format("terminating connection: the connection to node {} was "
                                        "lost with session state on it",
                                        node),
                            {},
                            false};
            shared_.registry.report_backend_failure(node, ha::backend_failure::io,
                                                    "connection found closed");
            co_return false;
        }
        lose_link(node, ha::backend_failure::io, "connection found closed");
    }
    const auto now = std::chrono::steady_clock::now();
    if (now < link.retry_after) co_return false;
    link = backend_link{};
    const pool_request want = pool_request_for(node);
    auto lease = co_await shared_.pool.acquire(want);
    using outcome = backend_pool::lease::outcome;
    if (lease.result == outcome::idle) {
        reuse(node, std::move(lease.conn));
        co_return true;
    }
    if (lease.result != outcome::may_connect) {
        if (lease.result == outcome::timed_out) {
            link.failure = {
                std::string(sqlstate::protocol_violation),
                fmt::format("query_wait_timeout: no connection to node {} for user "
                            "\"{}\" database \"{}\" came free within {} s "
                            "(pool_size {})",
                            node, user_, database_, pool_.query_wait_timeout, pool_.pool_size),
                {},
                false};
            log::warning("s{} {}", id_, link.failure.message);
        } else {
            link.failure = {std::string(sqlstate::admin_shutdown),
                            "terminating connection due to administrator command",
                            {},
                            false};
        }
        co_return false;
    }
    auto snapshot = shared_.registry.snapshot();
    const auto& n = snapshot->nodes.at(std::size_t(node));
    const ha::node_address address{n.host, n.port};
    auto r = co_await ha::connect_backend(address, backend_params_, backend_password_,
                                          shared_.timeouts.backend_connect);
    if (!r.conn) {
        log::warning("s{} cannot connect to node {} for user \"{}\" database \"{}\": {}", id_, node,
                     user_, database_, r.failure.message);
        if (r.failure.unreachable)
            shared_.registry.report_backend_failure(node, ha::backend_failure::connect,
                                                    r.failure.message);
        link.retry_after = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        link.failure = std::move(r.failure);
        co_return false;
    }
    backend_pool::adopt(*r.conn, std::move(lease.permit));
    shared_.pool.remember_startup_parameters(pool_entry_of(node), r.conn->parameters);
    link.conn = std::move(r.conn);
    link.conn->node = node;
    log::debug("s{} connected to node {} backend pid {}", id_, node, link.conn->pid);
    co_return true;
}

bool session::replayable_queue(const backend_link& link) {
    int clients = 0;
    for (const auto& r : link.queue) {
        if (r.started) return false;
        if (r.k == backend_link::response::kind::client) ++clients;
    }
    return clients == 1 && link.queue.back().k == backend_link::response::kind::client;
}

void session::release_idle_links() {
    if (pool_.mode != config::pool_mode::transaction) return;
    if (client_tx_status_ != 'I' || dispatching_ || in_unit_ || route_.in_transaction) return;
    for (const auto& link : links_) {
        if (!link.conn) continue;
        if (!link.queue.empty() || link.partial_write || link.absorb_sync || link.holds_state ||
            link.lsn_owed != backend_link::deferred_lsn::none || link.conn->tx_status != 'I')
            return;
    }
    int released = 0;
    for (std::size_t i = 0; i < links_.size(); ++i) {
        auto& link = links_[i];
        if (!link.conn) continue;
        // The whole log's fingerprint is kept up to date: no need to hash it again for the
        // usual connection that has every setting.
        link.conn->settings_fingerprint = link.settings_applied == set_log_.size()
                                              ? set_fingerprint_
                                              : settings_fingerprint(link.settings_applied);
        shared_.pool.put(pool_key_of(int(i)), std::move(link.conn), idle_limit(),
                         pool_entry_of(int(i)));
        link = backend_link{};
        if (int(i) == active_) cancel_target_stale_ = true;
        ++released;
    }
    if (released == 0) return;
    // Nothing runs for this client now: its cancel key must not reach the connection's next
    // user.
    shared_.cancels.set(proxy_pid_, proxy_key_, cancel_target{});
    log::debug("s{} released {} backend connection(s) between transactions", id_, released);
}

std::size_t session::idle_limit() const {
    return pool_.mode == config::pool_mode::transaction ? std::size_t(pool_.pool_size)
                                                        : std::size_t(pool_.max_pool);
}

bool session::may_lose_link(int node) const {
    const auto& link = links_[std::size_t(node)];
    return !link.holds_state && !(route_.in_transaction && tx_node_ == node);
}

void session::lose_link(int node, ha::backend_failure kind, const std::string& reason) {
    auto& link = links_[std::size_t(node)];
    log::info("s{} lost its connection to node {}: {}", id_, node, reason);
    shared_.registry.report_backend_failure(node, kind, reason);
    // Destroying the connection cancels a read backend_to_client may have pending on it.
    link = backend_link{};
    if (node == active_) cancel_target_stale_ = true;
}

void session::retire_links() {
    auto snapshot = shared_.registry.snapshot();
    for (std::size_t i = 0; i < links_.size() && i < snapshot->nodes.size(); ++i) {
        auto& link = links_[i];
        if (!link.conn || snapshot->nodes[i].status == router::node_status::up) continue;
        if (!link.queue.empty() || link.partial_write || !may_lose_link(int(i))) continue;
        log::info("s{} closes its connection to node {}: the node is {}", id_, i,
                  router::to_string(snapshot->nodes[i].status));
        link = backend_link{};
        if (int(i) == active_) cancel_target_stale_ = true;
    }
}

std::optional<int> session::primary_now() const {
    auto snapshot = shared_.registry.snapshot();
    auto primary = router::route_to_primary(*snapshot).node;
    if (primary && !snapshot->failover_in_progress) return primary;
    return std::nullopt;
}

net::awaitable<std::optional<int>> session::await_primary() {
    if (auto primary = primary_now()) co_return primary;
    auto snapshot = shared_.registry.snapshot();
    auto primary = router::route_to_primary(*snapshot).node;
    if (primary && !snapshot->failover_in_progress) co_return primary;
    if (!primary && !snapshot->failover_in_progress) shared_.registry.request_detect();
    const auto start = std::chrono::steady_clock::now();
    net::steady_timer t(client_.get_executor());
    bool said = false;
    for (;;) {
        const auto limit =
            start + (snapshot->failover_in_progress
                         ? std::max(shared_.registry.hold_timeout(), shared_.timeouts.primary_wait)
                         : shared_.timeouts.primary_wait);
        if (std::chrono::steady_clock::now() >= limit) co_return std::nullopt;
        if (!said && snapshot->failover_in_progress) {
            log::debug("s{} holds a statement for the primary: failover in progress", id_);
            said = true;
        }
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(use_tuple);
        if (shared_.stopping.load()) co_return std::nullopt;
        snapshot = shared_.registry.snapshot();
        primary = router::route_to_primary(*snapshot).node;
        if (primary && !snapshot->failover_in_progress) {
            if (said) log::debug("s{} releases its held statement to node {}", id_, *primary);
            co_return primary;
        }
    }
}

// Reads pg_proc's volatile functions of this database once, on the session's first backend
// connection, for the classifier (function calls that write go to the primary).
net::awaitable<void> load_volatile_functions(shared_state& shared, ha::backend_connection& conn,
                                             const std::string& database) {
    if (shared.volatiles.find(database)) co_return;
    auto q = co_await ha::query_rows(
        conn,
        "SELECT p.proname FROM pg_catalog.pg_proc p WHERE p.provolatile = 'v' UNION "
        "SELECT n.nspname || '.' || p.proname FROM pg_catalog.pg_proc p JOIN "
        "pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.provolatile = 'v'");
    auto names = std::make_shared<volatile_functions::set>();
    if (!q.io && !q.error) {
        for (auto& r : q.rows)
            if (!r.empty() && r.front()) names->insert(std::move(*r.front()));
    } else {
        log::warning("cannot read volatile functions of database \"{}\": {}", database,
                     q.io ? q.io.message() : q.error.value_or("?"));
    }
    shared.volatiles.store(database, std::move(names));
}

void session::ensure_links() {
    if (links_.empty()) links_.resize(shared_.registry.snapshot()->nodes.size());
}

net::awaitable<session_end> session::attach_backend() {
    ensure_links();
    const auto started = std::chrono::steady_clock::now();
    net::steady_timer pause(client_.get_executor());
    int node = -1;
    std::shared_ptr<const server_hello> hello;  // what the client is told in ParameterStatus
    char tx_status = 'I';
    cancel_target cancel;  // none until a connection runs something for the client
    for (;;) {
        auto route = co_await await_primary();
        if (!route) {
            const std::string reason =
                router::route_to_primary(*shared_.registry.snapshot()).reason;
            co_await send_fatal(sqlstate::connection_failure, fmt::format("pgpilot: {}", reason));
            co_return session_end::no_backend;
        }
        node = *route;
        // Transaction pooling: once a connection of this pool has said what the server reports
        // at startup, later clients are told the same without taking a connection (PgBouncer
        // does the same): a client that only connects does not wait for a busy pool.
        if (pool_.mode == config::pool_mode::transaction &&
            (!shared_.settings.load_balance.enabled || shared_.volatiles.find(database_))) {
            if (auto known = shared_.pool.known_hello(pool_entry_of(node))) {
                hello = std::move(known);
                cancel_target_stale_ = true;  // set by the first statement's connection
                break;
            }
        }
        if (co_await ensure_link(node)) {
            const auto& conn = *links_[std::size_t(node)].conn;
            hello = std::make_shared<const server_hello>(conn.parameters);
            tx_status = conn.tx_status;
            cancel = cancel_target{conn.address, conn.pid, conn.key};
            if (shared_.settings.load_balance.enabled)
                co_await load_volatile_functions(shared_, *links_[std::size_t(node)].conn,
                                                 database_);
            break;
        }
        auto& failure = links_[std::size_t(node)].failure;
        // The primary cannot be reached: probably a failover to come (the session's report
        // starts the check); wait for it as a statement would (hold_timeout).
        if ((failure.unreachable || failure.local) &&
            std::chrono::steady_clock::now() - started < shared_.registry.hold_timeout()) {
            pause.expires_after(std::chrono::milliseconds(20));
            co_await pause.async_wait(use_tuple);
            if (shared_.stopping.load()) co_return session_end::admin_shutdown;
            continue;
        }
        end_detail_ = failure.message;
        if (!failure.error_frame.empty())
            co_await send_client(failure.error_frame);
        else
            co_await send_fatal(failure.sqlstate, "pgpilot: " + failure.message);
        co_return session_end::no_backend;
    }
    superuser_ = hello->superuser;
    active_ = reading_ = node;
    // The client's application_name is what the server would report once the SET has run
    // (transaction pooling).
    const std::string* client_application_name = nullptr;
    for (const auto& [k, v] : params_) {
        if (k != "application_name") continue;
        application_name_ = v;
        client_application_name = &application_name_;
    }

    shared_.cancels.set(proxy_pid_, proxy_key_, cancel);
    std::string greeting;
    greeting.reserve(512);
    hello->append_to(greeting, client_application_name);
    protocol::append_backend_key_data(greeting, proxy_pid_, proxy_key_);
    protocol::append_ready_for_query(greeting, tx_status);
    client_tx_status_ = tx_status;
    if (auto ec = co_await send_client(greeting)) co_return session_end::client_disconnected;
    release_idle_links();
    co_return session_end::client_terminated;
}

// ---------------------------------------------------------------------------------------------
// Relay: both directions at once; whichever ends first cancels the other.

net::awaitable<session_end> session::relay() {
    auto r = co_await (client_to_backend() || backend_to_client());
    co_return std::visit([](session_end e) { return e; }, r);
}

namespace {

/// Messages up to this size are read whole and routed; a larger Query or batch goes to the
/// primary (or to where its batch goes) and streams through in pieces.
constexpr std::size_t max_routed_message = std::size_t{1024} * 1024;

/// Whether `bytes`, from a message boundary, end right after a whole message the server
/// always answers (Query, Sync, FunctionCall, CopyDone, CopyFail): the client waits for that
/// answer, and if it closed along with sending it, writing the answer brings back a reset that
/// epoll reports. After anything else (COPY data, a batch without Sync) nothing is written to
/// the client, and a close that came with the bytes would go unseen (see expect_empty()).
bool ends_with_answered_message(std::string_view bytes) {
    char last = 0;
    std::size_t pos = 0;
    while (pos < bytes.size()) {
        const auto h = protocol::parse_frame_header(protocol::as_bytes(bytes.substr(pos)));
        if (h.status != protocol::frame_status::header || bytes.size() - pos < h.total())
            return false;
        last = h.tag;
        pos += h.total();
    }
    return last == 'Q' || last == 'S' || last == 'F' || last == 'c' || last == 'f';
}

}  // namespace

// Frontend messages are checked (type and length), grouped into units (a Query, a
// FunctionCall, or an extended-protocol batch up to Sync or Flush), routed unit by unit, and
// forwarded. COPY data follows the unit that started the COPY.
// https://www.postgresql.org/docs/15/protocol-message-formats.html
net::awaitable<session_end> session::client_to_backend() {
    std::string in = client_reader_.take_pending();
    // The first bytes after a wait land here (in the coroutine frame, freed when the session
    // parks): an async read into it costs no epoll_ctl, unlike async_wait, and most queries fit.
    // More is read at once into a buffer the worker lends.
    std::array<char, small_read_size> first{};
    bool read_at_once = false;  // the last read filled its buffer: more is likely there
    unit batch;                 // the extended-protocol batch being collected
    std::uint64_t skip = 0;     // bytes of a message still to stream to skip_node
    int skip_node = -1;
    // After a read that did not fill its buffer, and before anything else runs on this event
    // loop: a client that now waits for an answer has nothing more to send (see
    // expect_empty(), ends_with_answered_message()).
    auto note_drained = [&] {
        if (skip == 0 && ends_with_answered_message(in)) expect_empty(client_);
    };
    int messages_this_turn = 0;  // relayed since this coroutine last waited (see messages_per_turn)
    std::size_t bytes_this_turn = 0;
    for (;;) {
        std::size_t pos = 0;
        while (pos < in.size()) {
            if (++messages_this_turn > messages_per_turn || bytes_this_turn > bytes_per_turn) {
                co_await net::post(client_.get_executor(), use_tuple);
                // backend_to_client() may have ended the relay meanwhile; a post has no
                // cancellation slot to hear it on.
                if ((co_await net::this_coro::cancellation_state).cancelled() !=
                    net::cancellation_type::none)
                    co_return session_end::admin_shutdown;
                messages_this_turn = 1;
                bytes_this_turn = 0;
            }
            if (skip > 0) {
                const auto take = std::size_t(std::min<std::uint64_t>(skip, in.size() - pos));
                if (skip_node < 0) {  // the rest of a message that is dropped
                    pos += take;
                    skip -= take;
                    continue;
                }
                auto& link = links_[std::size_t(skip_node)];
                auto ec =
                    co_await write_all(link.conn->socket, std::string_view(in).substr(pos, take));
                if (ec) {
                    if (!is_cancelled(ec)) end_detail_ = "write to backend: " + ec.message();
                    co_return is_cancelled(ec) ? session_end::admin_shutdown
                                               : session_end::backend_disconnected;
                }
                pos += take;
                skip -= take;
                link.partial_write = skip > 0;
                if (skip == 0 && link.lsn_owed == backend_link::deferred_lsn::after_stream) {
                    if (auto end = co_await send_owed_lsn(link);
                        end != session_end::client_terminated)
                        co_return end;
                }
                continue;
            }
            const protocol::byte_view rest = protocol::as_bytes(std::string_view(in).substr(pos));
            auto h = protocol::parse_frame_header(rest);
            if (h.status == protocol::frame_status::need_more) break;
            if (!protocol::is_frontend_tag(h.tag)) {
                end_detail_ = fmt::format("invalid frontend message type {}", int(h.tag));
                co_return session_end::client_protocol_violation;
            }
            if (h.status == protocol::frame_status::malformed ||
                h.length > protocol::max_frontend_length(h.tag)) {
                end_detail_ = fmt::format("invalid message length {} for message type \"{}\"",
                                          h.length, h.tag);
                co_return session_end::client_protocol_violation;
            }
            const bool whole = rest.size() >= h.total();
            if (!whole && h.total() <= max_routed_message) break;  // read the rest first
            const std::size_t have = whole ? h.total() : rest.size();
            const std::string_view frame = std::string_view(in).substr(pos, have);

            if (h.tag == 'X') co_return session_end::client_terminated;

            if (h.tag == 'd' || h.tag == 'c' || h.tag == 'f' || h.tag == 'p') {
                // COPY data and the like: they belong to the unit that is running.
                int node = in_unit_ ? unit_node_ : active_;
                auto& link = links_[std::size_t(node)];
                if (!link.conn) {
                    // No COPY can be running on a connection that is gone: the server ignores
                    // stray COPY messages, and so does pgpilot.
                    pos += have;
                    skip = whole ? 0 : h.total() - have;
                    skip_node = -1;
                    continue;
                }
                auto ec = co_await write_all(link.conn->socket, frame);
                if (ec) {
                    if (!is_cancelled(ec)) end_detail_ = "write to backend: " + ec.message();
                    co_return is_cancelled(ec) ? session_end::admin_shutdown
                                               : session_end::backend_disconnected;
                }
                pos += have;
                if (!whole) {
                    skip = h.total() - have;
                    skip_node = node;
                    link.partial_write = true;
                } else if ((h.tag == 'c' || h.tag == 'f') &&
                           link.lsn_owed == backend_link::deferred_lsn::after_copy_done) {
                    if (auto end = co_await send_owed_lsn(link);
                        end != session_end::client_terminated)
                        co_return end;
                }
                continue;
            }

            if (h.tag == 'Q' || h.tag == 'F') {
                if (in_unit_ && batch.bytes.empty()) {
                    // A Query after a Flush (asyncpg prepares with Parse, Describe, Flush): the
                    // server ends the open batch's implicit transaction and runs the query on
                    // its own, so pgpilot routes it on its own, ending the batch on its node
                    // with a Sync of its own.
                    unit closing;
                    protocol::append_sync(closing.bytes);
                    closing.messages.push_back({'S', 0, closing.bytes.size(), {}, 0});
                    closing.continuation = true;
                    closing.ends_batch = true;
                    closing.pgpilot_sync = true;
                    if (auto end = co_await dispatch(closing);
                        end != session_end::client_terminated)
                        co_return end;
                    in_unit_ = false;
                    batch = unit{};
                }
                if (in_unit_ || !batch.bytes.empty()) {
                    // A Query inside an unfinished batch: the batch's node runs it, as a
                    // server would run it after the batch; its ReadyForQuery ends the batch.
                    batch.bytes.append(frame);
                    batch.ends_batch = true;
                    if (auto end = co_await dispatch(batch); end != session_end::client_terminated)
                        co_return end;
                    batch = unit{};
                    in_unit_ = false;
                } else {
                    unit q;
                    q.bytes.assign(frame);
                    q.ends_batch = true;
                    q.streamed = !whole;
                    if (h.tag == 'F') {
                        q.function_call = true;
                    } else if (!whole) {
                        q.unclassified = true;
                    } else {
                        q.query = true;
                        auto body = rest.subspan(protocol::header_size, h.body_size());
                        if (auto text = protocol::parse_query(body))
                            q.text = *text;
                        else
                            q.unclassified = true;
                    }
                    if (auto end = co_await dispatch(q); end != session_end::client_terminated)
                        co_return end;
                    if (!whole) {
                        skip = h.total() - have;
                        skip_node = active_;
                        links_[std::size_t(active_)].partial_write = true;
                    }
                }
                pos += have;
                continue;
            }

            // Extended protocol: collect the batch up to Sync or Flush.
            unit::message m{h.tag, batch.bytes.size(), have, {}, 0};
            auto body = rest.subspan(protocol::header_size,
                                     std::min(h.body_size(), rest.size() - protocol::header_size));
            if (h.tag == 'P' && whole) {
                if (auto parsed = protocol::parse_parse(body)) {
                    m.name = parsed->name;
                    // Braces: clang 14 (clang-tidy) has no parenthesised aggregate init.
                    batch.parsed.push_back(unit::parse{
                        std::string(parsed->name), router::classify_one(parsed->query, policy()),
                        std::string(parsed->query), router::markers_of(parsed->query)});
                } else {
                    batch.unclassified = true;
                }
            } else if (h.tag == 'B') {
                if (auto b = protocol::parse_bind_header(body))
                    m.name = b->statement;
                else
                    batch.unclassified = true;
            } else if ((h.tag == 'D' || h.tag == 'C') && whole) {
                if (auto d = protocol::parse_describe_or_close(body)) {
                    m.kind = d->kind;
                    m.name = d->name;
                }
            } else if (h.tag == 'P') {
                batch.unclassified = true;  // a Parse too large to read: primary
            }
            batch.messages.push_back(std::move(m));
            batch.bytes.append(frame);
            pos += have;
            in_unit_ = true;
            const bool sync = h.tag == 'S';
            if (sync || h.tag == 'H' || !whole || batch.bytes.size() > max_routed_message) {
                batch.ends_batch = sync;
                batch.streamed = !whole;
                if (auto end = co_await dispatch(batch); end != session_end::client_terminated)
                    co_return end;
                batch = unit{};
                batch.continuation = !sync;
                if (sync) in_unit_ = false;
                if (!whole) {
                    skip = h.total() - have;
                    skip_node = unit_node_;
                    links_[std::size_t(unit_node_)].partial_write = true;
                }
            }
        }
        in.erase(0, pos);

        // Read more from the client. The waits that a timeout bounds: idle outside a transaction
        // (client_idle_limit) and idle inside one (idle_in_transaction_timeout).
        const bool waiting_for_client = !in_unit_ && links_[std::size_t(active_)].queue.empty();
        std::chrono::milliseconds limit{0};
        session_end on_timeout = session_end::client_idle_timeout;
        if (waiting_for_client && client_tx_status_ == 'I') {
            limit = shared_.timeouts.client_idle;
        } else if (waiting_for_client) {
            limit = shared_.timeouts.idle_in_transaction;
            on_timeout = session_end::idle_in_transaction_timeout;
        }
        error_code ec;
        std::size_t n = 0;
        if (!read_at_once) {
            // A large buffer is not kept while waiting; a small one is (most queries need one,
            // and a parking session frees it with the coroutine).
            if (in.empty() && in.capacity() > 512) std::string().swap(in);
            // Nothing of the client's buffered: once its answers are in and the connection
            // released, tick() may end the relay (can_park() checks the rest).
            client_wait_since_ = !in_unit_ && in.empty() && batch.bytes.empty() && skip == 0
                                     ? std::chrono::steady_clock::now()
                                     : std::chrono::steady_clock::time_point{};
            const auto space = net::buffer(first);
            const bool plain_read = limit.count() == 0;
            if (!plain_read) {
                net::steady_timer t(client_.get_executor(), limit);
                auto r =
                    co_await (client_.async_read_some(space, use_tuple) || t.async_wait(use_tuple));
                if (r.index() == 1) {
                    end_detail_ = idle_end_text(on_timeout);
                    co_return on_timeout;
                }
                std::tie(ec, n) = std::get<0>(r);
            } else {
                std::tie(ec, n) = co_await client_.async_read_some(space, use_tuple);
            }
            const auto waited_since = std::exchange(client_wait_since_, {});  // not waiting now
            if (n > 0) client_idle_since_ = {};
            if (idle_timeout_ && is_cancelled(ec)) {
                end_detail_ = idle_end_text(*idle_timeout_);
                co_return *idle_timeout_;
            }
            messages_this_turn = 0;
            bytes_this_turn = n;
            if (!ec) in.append(first.data(), n);
            read_at_once = n == first.size();
            // Not after the read raced against a timer: the coroutine resumes only once the
            // timer's cancellation has run.
            if (plain_read && !ec && !read_at_once) note_drained();
            if (std::exchange(park_requested_, false) && is_cancelled(ec) &&
                (co_await net::this_coro::cancellation_state).cancelled() ==
                    net::cancellation_type::none) {
                if (can_park()) {
                    client_wait_since_ = waited_since;  // the idle limit counts from there
                    co_return session_end::parked;
                }
                continue;  // something started meanwhile: wait again
            }
        } else {
            auto buf = worker_.buffers.take();
            std::tie(ec, n) = read_available(client_, buf.data(), relay_buffer_size);
            bytes_this_turn += n;
            if (!ec) in.append(buf.chars(), n);
            read_at_once = n == relay_buffer_size;
            if (!ec && !read_at_once) note_drained();
            if (ec == net::error::would_block) continue;  // that was all
        }
        if (ec) {
            if (!is_cancelled(ec)) end_detail_ = ec.message();
            co_return is_cancelled(ec) ? session_end::admin_shutdown
                                       : session_end::client_disconnected;
        }
    }
}

net::awaitable<session_end> session::send_owed_lsn(backend_link& link) {
    std::string out;
    append_lsn_query(link, out, true);
    auto ec = co_await write_all(link.conn->socket, out);
    if (ec) {
        if (!is_cancelled(ec)) end_detail_ = "write to backend: " + ec.message();
        co_return is_cancelled(ec) ? session_end::admin_shutdown
                                   : session_end::backend_disconnected;
    }
    co_return session_end::client_terminated;
}

// Backend messages stream through from the node the session is reading; pgpilot's own
// queries' answers are dropped on the way; ReadyForQuery, ParameterStatus and ErrorResponse are
// looked at (transaction status, parameters to replay, FATALs).
net::awaitable<session_end> session::backend_to_client() {
    // Borrowed from the worker while bytes are buffered or answers are expected; an idle
    // session waits for its backend without one.
    relay_buffers::lease buf;
    std::array<std::byte, small_read_size> first{};  // as in client_to_backend
    std::size_t filled = 0;
    std::uint64_t skip = 0;
    bool skip_drop = false;
    for (;;) {
        if (filled == 0 && skip == 0) reading_ = active_;  // switch nodes at a boundary
        auto& link = links_[std::size_t(reading_)];
        if (!link.conn) {
            // The connection was lost while idle; dispatch() makes a new one (switch_to()
            // wakes us) before anything is sent.
            link_ready_.expires_at(std::chrono::steady_clock::time_point::max());
            co_await link_ready_.async_wait(use_tuple);
            if ((co_await net::this_coro::cancellation_state).cancelled() !=
                net::cancellation_type::none)
                co_return session_end::admin_shutdown;
            continue;
        }
        error_code ec;
        std::size_t n = 0;
        bool drained = false;  // the read left nothing in the socket (it did not fill the buffer)
        if (buf) {
            std::tie(ec, n) = co_await link.conn->socket.async_read_some(
                net::buffer(buf.data() + filled, relay_buffer_size - filled), use_tuple);
            drained = n < relay_buffer_size - filled;
        } else {
            std::tie(ec, n) =
                co_await link.conn->socket.async_read_some(net::buffer(first), use_tuple);
            drained = n < first.size();
            if (!ec) {
                buf = worker_.buffers.take();  // filled is 0 without a buffer
                std::memcpy(buf.data(), first.data(), n);
            }
        }
        if (ec) {
            if (is_cancelled(ec)) {
                // switch_to() woke us to read another node, or the connection was dropped
                // (lose_link, retire_links); otherwise the session is ending.
                if ((co_await net::this_coro::cancellation_state).cancelled() ==
                    net::cancellation_type::none)
                    continue;
                co_return session_end::admin_shutdown;
            }
            const bool idle = link.queue.empty() && filled == 0 && skip == 0 && !link.partial_write;
            const bool shutdown = link.unsolicited_fatal == sqlstate::admin_shutdown ||
                                  link.unsolicited_fatal == sqlstate::crash_shutdown;
            if (!idle && replay_ && replay_->node == reading_ && !dispatching_ && skip == 0 &&
                !link.partial_write && replayable_queue(link)) {
                // A read on a standby broke before any of its answer reached the client: run
                // it on another node, as if it had gone there in the first place.
                const int failed = reading_;
                auto again = std::move(replay_);
                filled = 0;
                lose_link(failed, ha::backend_failure::io, "read from backend: " + ec.message());
                links_[std::size_t(failed)].retry_after =
                    std::chrono::steady_clock::now() + std::chrono::seconds(1);
                if (lb_node_ == failed) lb_node_ = -1;
                log::info("s{} runs its read again elsewhere: node {} failed", id_, failed);
                if (auto end = co_await dispatch(again->u); end != session_end::client_terminated)
                    co_return end;
                continue;
            }
            if (idle && may_lose_link(reading_)) {
                // An idle connection closed (its node going down, or a terminated backend):
                // the session goes on; the next statement finds another connection.
                lose_link(reading_,
                          shutdown ? ha::backend_failure::shutdown : ha::backend_failure::io,
                          link.unsolicited_fatal.empty()
                              ? "connection closed: " + ec.message()
                              : "closed after FATAL " + link.unsolicited_fatal);
                continue;
            }
            if (!backend_sent_fatal_ || shutdown)
                shared_.registry.report_backend_failure(
                    reading_, shutdown ? ha::backend_failure::shutdown : ha::backend_failure::io,
                    "read from backend: " + ec.message());
            end_detail_ = "read from backend: " + ec.message();
            co_return session_end::backend_disconnected;
        }
        filled += n;
        std::size_t pos = 0;
        std::size_t out = 0;  // bytes [0, out) are kept for the client
        auto keep = [&](std::size_t from, std::size_t len) {
            if (out != from) std::memmove(buf.data() + out, buf.data() + from, len);
            out += len;
        };
        char last_tag = 0;
        while (pos < filled) {
            if (skip > 0) {
                auto take = std::size_t(std::min<std::uint64_t>(skip, filled - pos));
                if (!skip_drop) keep(pos, take);
                pos += take;
                skip -= take;
                continue;
            }
            protocol::byte_view rest{buf.data() + pos, filled - pos};
            auto h = protocol::parse_frame_header(rest);
            if (h.status == protocol::frame_status::need_more) break;
            if (h.status == protocol::frame_status::malformed) {
                end_detail_ = fmt::format("invalid message length {} from backend", h.length);
                co_return session_end::backend_protocol_violation;
            }
            if (!protocol::is_backend_tag(h.tag)) {
                end_detail_ = fmt::format("invalid message type {} from backend", int(h.tag));
                co_return session_end::backend_protocol_violation;
            }
            last_tag = h.tag;
            using kind = backend_link::response::kind;
            auto* front = link.queue.empty() ? nullptr : &link.queue.front();
            const bool hidden = front && front->k != kind::client;
            bool drop = hidden;
            if (front && !hidden) {
                if (h.tag == '1' && front->swallow_parse > 0) {
                    --front->swallow_parse;
                    drop = true;
                } else if (h.tag == '3' && front->swallow_close > 0) {
                    --front->swallow_close;
                    drop = true;
                }
            }
            // Nothing of the answer to a read went to the client yet: it could run elsewhere.
            const bool could_replay = front && !front->started && replay_ &&
                                      replay_->node == reading_ && replayable_queue(link);
            if (front && !drop) front->started = true;
            if (h.tag == 'G' && front && front->extended && front->synced) link.absorb_sync = true;
            const bool inspect = h.tag == 'Z' || h.tag == 'S' || h.tag == 'E' ||
                                 (h.tag == 'D' && front && front->k == kind::lsn);
            if (inspect && h.total() <= relay_buffer_size) {
                if (rest.size() < h.total()) break;  // wait for the whole (small) frame
                auto body = rest.subspan(protocol::header_size, h.body_size());
                if (h.tag == 'Z') {
                    const char status = protocol::parse_ready_for_query(body).value_or('I');
                    link.conn->tx_status = status;
                    if (front) {
                        // The client's ReadyForQuery: its own, or the one of the WAL position
                        // query pgpilot ran right after its write (same status, and the
                        // client must not go on before the position is known).
                        drop = front->k == kind::hidden || front->replace_ready ||
                               front->pgpilot_sync ||
                               (front->k == kind::lsn && !front->forward_ready);
                        link.queue.pop_front();
                    }
                    if (!drop) on_client_ready(status);
                } else if (h.tag == 'S') {
                    if (auto p = protocol::parse_parameter_status(body))
                        link.conn->set_parameter(p->first, p->second);
                } else if (h.tag == 'D') {
                    if (auto v = protocol::parse_data_row_first(body); v && *v) {
                        if (auto lsn = router::parse_lsn(**v)) {
                            session_lsn_ = std::max(session_lsn_, *lsn);
                            shared_.written_lsn.advance(*lsn);
                        }
                    }
                } else if (auto e = protocol::parse_error_response(body)) {
                    const bool fatal = e->severity == "FATAL" || e->severity == "PANIC";
                    if (hidden) {
                        log::debug("s{} node {}: pgpilot's own statement failed: {}", id_, reading_,
                                   e->message);
                    } else if (fatal && could_replay &&
                               (e->sqlstate == sqlstate::admin_shutdown ||
                                e->sqlstate == sqlstate::crash_shutdown)) {
                        // The node shut down instead of running a read nothing of which went
                        // to the client yet: the read runs elsewhere once the close arrives.
                        log::info("s{} node {} sent FATAL instead of an answer: {} ({})", id_,
                                  reading_, e->message, e->sqlstate);
                        link.unsolicited_fatal = std::string(e->sqlstate);
                        front->started = false;
                        drop = true;
                    } else if (fatal && !front && may_lose_link(reading_)) {
                        // Nothing asked for it: the node is shutting down or the backend was
                        // terminated while idle. The session can go on elsewhere; the client
                        // need not hear of it (the close follows).
                        log::info("s{} node {} sent FATAL while idle: {} ({})", id_, reading_,
                                  e->message, e->sqlstate);
                        link.unsolicited_fatal = std::string(e->sqlstate);
                        drop = true;
                    } else if (fatal) {
                        backend_sent_fatal_ = true;
                        if (!front) link.unsolicited_fatal = std::string(e->sqlstate);
                    }
                }
                if (!drop) keep(pos, h.total());
                pos += h.total();
            } else if (rest.size() >= h.total()) {
                if (!drop) keep(pos, h.total());
                pos += h.total();
            } else {
                if (!drop) keep(pos, rest.size());
                skip = h.total() - rest.size();
                skip_drop = drop;
                pos = filled;
            }
        }
        if (drained && last_tag == 'Z' && pos == filled && skip == 0 && link.queue.empty() &&
            link.conn && link.unsolicited_fatal.empty() && !backend_sent_fatal_) {
            // Everything sent has been answered and the read ended on that ReadyForQuery: the
            // server has nothing more to say until it is asked again, so its next read waits
            // for epoll instead of trying a recv that fails, and the pool need not peek at the
            // connection (expect_empty(), known_empty()). Not after other reads: a close that
            // came with the bytes (a FATAL, a crash mid-answer) is reported once, with them. A
            // close right behind this ReadyForQuery shows when the connection is next written
            // to (the reset that answers). Called before the write below waits.
            expect_empty(link.conn->socket);
        }
        if (out > 0) {
            while (local_writing_)
                co_await local_done_.async_wait(use_tuple);
            client_at_boundary_ = false;
            auto wec = co_await write_all(client_, std::string_view(buf.chars(), out));
            if (wec) {
                if (!is_cancelled(wec)) end_detail_ = "write to client: " + wec.message();
                co_return is_cancelled(wec) ? session_end::admin_shutdown
                                            : session_end::client_disconnected;
            }
            client_at_boundary_ = skip == 0 || skip_drop;
        }
        if (pos < filled) std::memmove(buf.data(), buf.data() + pos, filled - pos);
        filled -= pos;
        if (link.queue.empty()) drained_.cancel();
        if (filled == 0 && skip == 0) {
            if (link.queue.empty()) buf.reset();
            release_idle_links();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The end

bool session::link_clean(const backend_link& link) const {
    return link.conn && link.queue.empty() && !link.partial_write && !backend_sent_fatal_ &&
           !in_unit_;
}

net::awaitable<bool> session::reset_backend(ha::backend_connection& conn) {
    // DISCARD ALL cannot run in a transaction block, and a multi-statement Query is one
    // implicit block: abort first, as its own Query.
    if (conn.tx_status != 'I') {
        auto q = co_await ha::simple_query(conn, "ABORT");
        if (q.io || q.tx_status != 'I') co_return false;
    }
    auto q = co_await ha::simple_query(conn, "DISCARD ALL");
    conn.statements.clear();
    conn.settings_fingerprint = 0;
    co_return !q.io && !q.error && q.tx_status == 'I';
}

net::awaitable<void> session::finish(session_end end) {
    if (shared_.stopping.load() && end != session_end::cancel_request &&
        end != session_end::authentication_failed && end != session_end::startup_rejected &&
        end != session_end::too_many_clients && end != session_end::no_backend)
        end = session_end::admin_shutdown;

    // What the client is told, when it can still be told something cleanly.
    std::optional<std::pair<std::string_view, std::string>> tell;
    switch (end) {
        case session_end::admin_shutdown:
            tell = {
                {sqlstate::admin_shutdown, "terminating connection due to administrator command"}};
            break;
        case session_end::client_protocol_violation:
            tell = {{sqlstate::protocol_violation, end_detail_}};
            break;
        case session_end::client_idle_timeout:
            tell = {{sqlstate::idle_session_timeout, end_detail_}};
            break;
        case session_end::idle_in_transaction_timeout:
            tell = {{sqlstate::idle_in_transaction_session_timeout, end_detail_}};
            break;
        case session_end::backend_disconnected:
        case session_end::backend_protocol_violation:
            if (!backend_sent_fatal_)
                tell = {{sqlstate::connection_failure,
                         "pgpilot: lost connection to the database server: " + end_detail_}};
            break;
        case session_end::internal_error:
            tell = {{sqlstate::internal_error, "pgpilot: internal error"}};
            break;
        default:
            break;
    }
    if (tell && client_at_boundary_ && client_.is_open()) {
        net::steady_timer t(client_.get_executor(), shared_.timeouts.goodbye);
        const std::string frame = error_message("FATAL", tell->first, tell->second);
        co_await (send_client(frame) || t.async_wait(use_tuple));  // after any owed bytes
    }
    error_code ignored;
    client_.close(ignored);  // sends the FIN (no shutdown() first: one system call less)

    // From here on the client's cancel key must not reach a backend: it is being reset or
    // closed, and a late cancel would hit DISCARD ALL or the next session's query.
    if (proxy_pid_ != 0) shared_.cancels.release(proxy_pid_);
    set_tx_node(-1);
    if (holds_slot_) {
        shared_.slots.release();
        holds_slot_ = false;
    }

    // A backend connection goes back to the pool only when the client left it idle and the
    // reset succeeds; anything else (a query in flight, a broken connection) closes it.
    const bool client_left = end == session_end::client_terminated ||
                             end == session_end::client_disconnected ||
                             end == session_end::client_idle_timeout;
    int pooled = 0;
    for (auto& link : links_) {
        if (!link.conn) continue;
        if (client_left && link_clean(link)) {
            net::steady_timer t(client_.get_executor(), shared_.timeouts.reset);
            auto r = co_await (reset_backend(*link.conn) || t.async_wait(use_tuple));
            if (r.index() == 0 && std::get<0>(r) && !shared_.stopping.load()) {
                const int node = link.conn->node;
                shared_.pool.put(pool_key_of(node), std::move(link.conn), idle_limit(),
                                 pool_entry_of(node));
                ++pooled;
            }
        } else if (client_left && !link.queue.empty()) {
            // The client went away mid-query: stop the backend's work too.
            net::steady_timer t(client_.get_executor(), shared_.timeouts.goodbye);
            co_await (ha::send_cancel(link.conn->address, link.conn->pid, link.conn->key) ||
                      t.async_wait(use_tuple));
        }
        if (link.conn) {
            link.conn->socket.close(ignored);
            link.conn.reset();
        }
    }
    links_.clear();  // their pins and budgets go now, not when the last handler is gone
    bool expected = end == session_end::client_terminated || end == session_end::cancel_request;
    if (expected)
        log::debug("s{} ended: {}{}", id_, to_string(end),
                   pooled ? fmt::format(" ({} backend connection(s) pooled)", pooled) : "");
    else
        log::info("s{} ended: {}{}{}", id_, to_string(end), end_detail_.empty() ? "" : ": ",
                  end_detail_);
}

net::awaitable<void> session::run(step from, session_end end) {
    try {
        if (from == step::start) {
            end = co_await negotiate_and_authenticate();
            if (end == session_end::client_terminated) {
                std::tie(proxy_pid_, proxy_key_) = shared_.cancels.allocate();
                end = co_await attach_backend();
            }
        }
        if (from == step::start && end == session_end::client_terminated &&
            client_reader_.empty() && can_park()) {
            // Logged in without a backend connection (transaction pooling) and nothing sent yet:
            // wait for the first query parked, without ever starting the relay.
            client_wait_since_ = std::chrono::steady_clock::now();
            end = session_end::parked;
        }
        if (from == step::resume) ensure_links();
        if (from != step::end && end == session_end::client_terminated) end = co_await relay();
    } catch (const boost::system::system_error& e) {
        // Awaiting after a shutdown's (or tick()'s) cancellation throws operation_aborted.
        end = login_expired_           ? session_end::authentication_timeout
              : is_cancelled(e.code()) ? session_end::admin_shutdown
                                       : session_end::internal_error;
        end_detail_ = e.what();
    } catch (const std::exception& e) {
        log::error("s{} internal error: {}", id_, e.what());
        end_detail_ = e.what();
        end = session_end::internal_error;
    }
    if (end == session_end::parked) {
        if (!shared_.stopping.load()) {
            park();
            co_return;
        }
        end = session_end::admin_shutdown;  // stop() came while the relay was ending
    }
    try {
        co_await net::this_coro::reset_cancellation_state();
        co_await finish(end);
    } catch (const std::exception& e) {
        log::error("s{} error while ending the session: {}", id_, e.what());
    }
    ended_ = true;
}

void session::spawn(step from, session_end end) {
    net::co_spawn(worker_.ctx, run(from, end),
                  net::bind_cancellation_slot(
                      cancel_signal_.slot(), [self = shared_from_this()](std::exception_ptr e) {
                          if (e) {
                              try {
                                  std::rethrow_exception(e);
                              } catch (const std::exception& ex) {
                                  log::error("s{} escaped: {}", self->id_, ex.what());
                              }
                          }
                          if (e || self->ended_) {
                              self->worker_.sessions.erase(self->id_);
                              self->worker_.released();
                          }
                      }));
}

void session::start() {
    spawn(step::start);
}

void session::stop() {
    if (!parked_) {
        cancel_signal_.emit(net::cancellation_type::terminal);
        return;
    }
    error_code ignored;
    client_.cancel(ignored);  // unpark() sees shared_.stopping
}

bool session::waits_for_client() const {
    if (in_unit_ || dispatching_ || local_writing_) return false;
    return std::none_of(links_.begin(), links_.end(),
                        [](const backend_link& l) { return !l.queue.empty() || l.partial_write; });
}

bool session::can_park() const {
    return client_tx_status_ == 'I' && waits_for_client() &&
           std::none_of(links_.begin(), links_.end(),
                        [](const backend_link& l) { return bool(l.conn); });
}

void session::tick(std::chrono::steady_clock::time_point now) {
    if (login_deadline_ != std::chrono::steady_clock::time_point{} && now >= login_deadline_ &&
        !login_expired_) {
        login_expired_ = true;
        cancel_signal_.emit(net::cancellation_type::terminal);  // the step's wait ends
        return;
    }
    if (!parked_ && !idle_timeout_ &&
        client_idle_since_ != std::chrono::steady_clock::time_point{} &&
        client_wait_since_ != std::chrono::steady_clock::time_point{} && waits_for_client()) {
        // The relay waits in its client read with nothing of the client's buffered, the client
        // has had its answers and sends nothing. A read that began while they were still
        // coming has no timer of its own: this ends it.
        const bool in_transaction = client_tx_status_ != 'I';
        const auto limit =
            in_transaction ? shared_.timeouts.idle_in_transaction : shared_.timeouts.client_idle;
        if (limit.count() > 0 && now - client_idle_since_ >= limit) {
            idle_timeout_ = in_transaction ? session_end::idle_in_transaction_timeout
                                           : session_end::client_idle_timeout;
            error_code ignored;
            client_.cancel(ignored);  // client_to_backend's read ends with operation_aborted
            return;
        }
    }
    if (parked_ || park_requested_ || client_wait_since_ == std::chrono::steady_clock::time_point{})
        return;
    if (now - client_wait_since_ < park_after || !can_park()) return;
    park_requested_ = true;
    error_code ignored;
    client_.cancel(ignored);  // client_to_backend's wait ends with operation_aborted
}

void session::park() {
    log::debug("s{} parked: idle between transactions without a backend connection", id_);
    parked_ = true;
    idle_expired_ = false;
    worker_.released();
    // What a session between transactions without a connection keeps only for its next unit.
    replay_.reset();
    client_reader_.release_if_empty();
    std::vector<router::statement_info>().swap(batch_infos_);
    std::vector<std::string>().swap(tx_log_);
    std::vector<session_setting>().swap(tx_settings_);
    const auto now = std::chrono::steady_clock::now();
    if (std::all_of(links_.begin(), links_.end(),
                    [&](const backend_link& l) { return l.retry_after <= now; }))
        std::vector<backend_link>().swap(links_);  // nothing but defaults: made again on resume
    for (auto& link : links_)
        link.queue.release();
    policy_.reset();
    policy_final_ = false;
    const auto memory = worker_.parked_ops.get_allocator();
    client_.async_wait(net::socket_base::wait_read,
                       net::bind_allocator(memory, [self = shared_from_this()](const error_code&) {
                           self->unpark();
                       }));
    if (const auto limit = shared_.timeouts.client_idle; limit.count() > 0) {
        idle_timer_.expires_at(client_wait_since_ + limit);
        idle_timer_.async_wait(
            net::bind_allocator(memory, [self = shared_from_this()](const error_code& ec) {
                if (ec || !self->parked_) return;
                self->idle_expired_ = true;
                error_code ignored;
                self->client_.cancel(ignored);
            }));
    }
}

void session::unpark() {
    if (!parked_) return;
    parked_ = false;
    idle_timer_.cancel();
    if (shared_.stopping.load()) {
        spawn(step::end, session_end::admin_shutdown);
    } else if (idle_expired_) {
        end_detail_ = idle_session_text;
        spawn(step::end, session_end::client_idle_timeout);
    } else {
        spawn(step::resume);  // a read error or EOF shows there
    }
}

void start_session(worker& w, stream client) {
    auto id = w.shared.next_session_id.fetch_add(1, std::memory_order_relaxed);
    auto s = std::make_shared<session>(w, std::move(client), id);
    w.sessions.emplace(id, s);
    s->start();
}

}  // namespace pgpilot::proxy
