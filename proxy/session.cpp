#include "proxy/session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <cstring>

#include "ha/log.hpp"
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

/// Relay buffer per direction. Frames larger than this stream through in pieces.
constexpr std::size_t relay_buffer_size = 64 * 1024;
/// Largest message accepted while authenticating (PasswordMessage, SASL messages).
constexpr std::uint32_t max_auth_message = 64 * 1024;

bool is_cancelled(const error_code& ec) {
    return ec == net::error::operation_aborted;
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
    }
    return "?";
}

session::session(worker& w, stream client, std::uint64_t id)
    : worker_(w), shared_(w.shared), client_(std::move(client)), id_(id) {}

net::awaitable<error_code> session::send_client(std::string_view bytes) {
    client_at_boundary_ = false;
    auto ec = co_await write_all(client_, bytes);
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
    if (shared_.timeouts.authentication.count() == 0) co_return co_await std::move(step);
    net::steady_timer timer(client_.get_executor(), shared_.timeouts.authentication);
    auto r = co_await (std::move(step) || timer.async_wait(use_tuple));
    if (r.index() == 0) co_return std::get<0>(r);
    // PostgreSQL closes such a connection without a message (authentication_timeout).
    end_detail_ = "no startup and authentication within the timeout";
    co_return session_end::authentication_timeout;
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
        co_return session_end::client_terminated;
    }
}

net::awaitable<session_end> session::handle_cancel_request(std::uint32_t pid, std::uint32_t key) {
    end_detail_ = fmt::format("for pid {}", pid);
    auto target = shared_.cancels.find(pid, key);
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
    const auto& cfg = shared_.settings;
    const config::user_settings* entry = cfg.find_user(user_);
    std::optional<std::string> stored;
    if (entry) stored = entry->password;
    protocol::client_authenticator auth(to_protocol(cfg.auth.method), user_, stored);
    auto step = auth.start();
    for (;;) {
        using kind = protocol::client_authenticator::step;
        if (step.k == kind::fail) {
            log::warning("s{} authentication failed for user \"{}\": {}", id_, user_, step.error);
            co_await send_fatal(auth.failure_sqlstate(), step.error);
            co_return session_end::authentication_failed;
        }
        if (auto ec = co_await send_client(step.to_send))
            co_return session_end::client_disconnected;
        if (step.k == kind::send_and_done_ok) break;
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

net::awaitable<session_end> session::attach_backend() {
    auto snapshot = shared_.registry.snapshot();
    auto route = router::route_to_primary(*snapshot);
    if (!route.node) {
        // The primary may be being (re)detected: wait a little for a snapshot that has one.
        shared_.registry.request_detect();
        net::steady_timer t(client_.get_executor());
        auto deadline = std::chrono::steady_clock::now() + shared_.timeouts.primary_wait;
        while (!route.node && std::chrono::steady_clock::now() < deadline) {
            t.expires_after(std::chrono::milliseconds(50));
            auto [ec] = co_await t.async_wait(use_tuple);
            if (ec) co_return session_end::admin_shutdown;
            snapshot = shared_.registry.snapshot();
            route = router::route_to_primary(*snapshot);
        }
        if (!route.node) {
            co_await send_fatal(sqlstate::connection_failure,
                                fmt::format("pgpilot: {}", route.reason));
            co_return session_end::no_backend;
        }
    }
    int node = *route.node;
    const auto& n = snapshot->nodes.at(std::size_t(node));
    pool_key_ = pool_key(node, params_);
    auto life = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(shared_.settings.pool.connection_life_time));
    backend_ = worker_.pool.take(pool_key_, life);
    if (backend_) {
        log::debug("s{} reusing backend pid {} on node {}", id_, backend_->pid, node);
    } else {
        const ha::node_address address{n.host, n.port};
        auto r = co_await ha::connect_backend(address, params_, backend_password_,
                                              shared_.timeouts.backend_connect);
        if (!r.conn) {
            log::warning("s{} cannot connect to node {} for user \"{}\" database \"{}\": {}", id_,
                         node, user_, database_, r.failure.message);
            if (r.failure.unreachable) shared_.registry.request_detect();
            end_detail_ = r.failure.message;
            if (!r.failure.error_frame.empty())
                co_await send_client(r.failure.error_frame);
            else
                co_await send_fatal(r.failure.sqlstate, "pgpilot: " + r.failure.message);
            co_return session_end::no_backend;
        }
        backend_ = std::move(r.conn);
        backend_->node = node;
        log::debug("s{} connected to node {} backend pid {}", id_, node, backend_->pid);
    }

    shared_.cancels.set(proxy_pid_, proxy_key_,
                        cancel_target{backend_->address, backend_->pid, backend_->key});
    std::string hello;
    for (const auto& [k, v] : backend_->parameters)
        protocol::append_parameter_status(hello, k, v);
    protocol::append_backend_key_data(hello, proxy_pid_, proxy_key_);
    protocol::append_ready_for_query(hello, backend_->tx_status);
    if (auto ec = co_await send_client(hello)) co_return session_end::client_disconnected;
    co_return session_end::client_terminated;
}

// ---------------------------------------------------------------------------------------------
// Relay: both directions at once; whichever ends first cancels the other.

net::awaitable<session_end> session::relay() {
    auto r = co_await (client_to_backend() || backend_to_client());
    co_return std::visit([](session_end e) { return e; }, r);
}

// Frontend messages are checked (type and length) and counted, then forwarded in the same
// chunks they arrived in. https://www.postgresql.org/docs/15/protocol-message-formats.html
net::awaitable<session_end> session::client_to_backend() {
    auto buf = std::make_unique<std::byte[]>(relay_buffer_size);
    // Bytes the client sent after authentication, before we read on our own.
    auto early = client_reader_.pending();
    if (early.size() > relay_buffer_size) {
        co_await send_fatal(sqlstate::protocol_violation, "too much data before ReadyForQuery");
        co_return session_end::client_protocol_violation;
    }
    std::memcpy(buf.get(), early.data(), early.size());
    std::size_t filled = early.size();
    client_reader_.consume(early.size());
    std::uint64_t skip = 0;  // bytes of a frame already forwarded in part
    bool have_data = filled > 0;
    for (;;) {
        if (!have_data) {
            auto space = net::buffer(buf.get() + filled, relay_buffer_size - filled);
            error_code ec;
            std::size_t n = 0;
            const auto idle_limit = shared_.timeouts.client_idle;
            if (idle_limit.count() > 0 && pending_ == 0 && !unsynced_ &&
                backend_->tx_status == 'I') {
                // Idle outside a transaction: the only wait that client_idle_limit bounds.
                net::steady_timer t(client_.get_executor(), idle_limit);
                auto r =
                    co_await (client_.async_read_some(space, use_tuple) || t.async_wait(use_tuple));
                if (r.index() == 1) {
                    end_detail_ = "terminating connection due to idle-session timeout";
                    co_return session_end::client_idle_timeout;
                }
                std::tie(ec, n) = std::get<0>(r);
            } else {
                std::tie(ec, n) = co_await client_.async_read_some(space, use_tuple);
            }
            if (ec) {
                if (!is_cancelled(ec)) end_detail_ = ec.message();
                co_return is_cancelled(ec) ? session_end::admin_shutdown
                                           : session_end::client_disconnected;
            }
            filled += n;
        }
        have_data = false;
        std::size_t pos = 0;
        bool terminate = false;
        while (pos < filled) {
            if (skip > 0) {
                auto take = std::min<std::uint64_t>(skip, filled - pos);
                pos += std::size_t(take);
                skip -= take;
                continue;
            }
            auto h = protocol::parse_frame_header({buf.get() + pos, filled - pos});
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
            switch (h.tag) {
                case 'X':
                    terminate = true;
                    break;
                case 'Q':
                case 'F':
                    ++pending_;
                    break;
                case 'S':
                    ++pending_;
                    unsynced_ = false;
                    break;
                case 'P':
                case 'B':
                case 'D':
                case 'E':
                case 'C':
                case 'H':
                    unsynced_ = true;
                    break;
                default:
                    break;  // copy data, password messages: part of what is pending
            }
            if (terminate) break;
            std::size_t avail = filled - pos;
            if (avail >= h.total()) {
                pos += h.total();
            } else {
                skip = h.total() - avail;
                pos = filled;
            }
        }
        if (pos > 0) {
            auto [ec, n] =
                co_await net::async_write(backend_->socket, net::buffer(buf.get(), pos), use_tuple);
            if (ec) {
                if (!is_cancelled(ec)) end_detail_ = "write to backend: " + ec.message();
                co_return is_cancelled(ec) ? session_end::admin_shutdown
                                           : session_end::backend_disconnected;
            }
        }
        // A frame forwarded in part leaves the backend mid-message: never reset or pool it.
        client_frame_open_ = skip > 0;
        if (terminate) co_return session_end::client_terminated;
        if (pos < filled) std::memmove(buf.get(), buf.get() + pos, filled - pos);
        filled -= pos;
        if (filled == relay_buffer_size) {
            // Cannot happen: a partial header is at most 4 bytes. Guard anyway.
            end_detail_ = "relay buffer full";
            co_return session_end::internal_error;
        }
    }
}

// Backend messages stream through; ReadyForQuery, ParameterStatus and ErrorResponse are
// looked at on the way (transaction status, parameters to replay, FATALs).
net::awaitable<session_end> session::backend_to_client() {
    auto buf = std::make_unique<std::byte[]>(relay_buffer_size);
    std::size_t filled = 0;
    std::uint64_t skip = 0;
    for (;;) {
        auto [ec, n] = co_await backend_->socket.async_read_some(
            net::buffer(buf.get() + filled, relay_buffer_size - filled), use_tuple);
        if (ec) {
            if (!is_cancelled(ec)) end_detail_ = "read from backend: " + ec.message();
            co_return is_cancelled(ec) ? session_end::admin_shutdown
                                       : session_end::backend_disconnected;
        }
        filled += n;
        std::size_t pos = 0;
        while (pos < filled) {
            if (skip > 0) {
                auto take = std::min<std::uint64_t>(skip, filled - pos);
                pos += std::size_t(take);
                skip -= take;
                continue;
            }
            protocol::byte_view rest{buf.get() + pos, filled - pos};
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
            bool inspect = h.tag == 'Z' || h.tag == 'S' || h.tag == 'E';
            if (inspect && h.total() <= relay_buffer_size) {
                if (rest.size() < h.total()) break;  // wait for the whole (small) frame
                auto body = rest.subspan(protocol::header_size, h.body_size());
                if (h.tag == 'Z') {
                    if (pending_ > 0) --pending_;
                    backend_->tx_status = protocol::parse_ready_for_query(body).value_or('I');
                } else if (h.tag == 'S') {
                    if (auto p = protocol::parse_parameter_status(body))
                        backend_->set_parameter(p->first, p->second);
                } else if (auto e = protocol::parse_error_response(body)) {
                    if (e->severity == "FATAL" || e->severity == "PANIC")
                        backend_sent_fatal_ = true;
                }
                pos += h.total();
            } else if (rest.size() >= h.total()) {
                pos += h.total();
            } else {
                skip = h.total() - rest.size();
                pos = filled;
            }
        }
        if (pos > 0) {
            client_at_boundary_ = false;
            auto [wec, wn] =
                co_await net::async_write(client_, net::buffer(buf.get(), pos), use_tuple);
            if (wec) {
                if (!is_cancelled(wec)) end_detail_ = "write to client: " + wec.message();
                co_return is_cancelled(wec) ? session_end::admin_shutdown
                                            : session_end::client_disconnected;
            }
            client_at_boundary_ = skip == 0;
        }
        if (pos < filled) std::memmove(buf.get(), buf.get() + pos, filled - pos);
        filled -= pos;
    }
}

// ---------------------------------------------------------------------------------------------
// The end

bool session::backend_clean() const {
    return backend_ && pending_ == 0 && !unsynced_ && !client_frame_open_ && !backend_sent_fatal_;
}

net::awaitable<bool> session::reset_backend() {
    // DISCARD ALL cannot run in a transaction block, and a multi-statement Query is one
    // implicit block: abort first, as its own Query.
    if (backend_->tx_status != 'I') {
        auto q = co_await ha::simple_query(*backend_, "ABORT");
        if (q.io || q.tx_status != 'I') co_return false;
    }
    auto q = co_await ha::simple_query(*backend_, "DISCARD ALL");
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
        co_await (write_all(client_, frame) || t.async_wait(use_tuple));
    }
    error_code ignored;
    client_.shutdown(net::socket_base::shutdown_both, ignored);
    client_.close(ignored);

    // From here on the client's cancel key must not reach the backend: it is being reset or
    // closed, and a late cancel would hit DISCARD ALL or the next session's query.
    if (proxy_pid_ != 0) shared_.cancels.release(proxy_pid_);
    if (holds_slot_) {
        shared_.slots.release();
        holds_slot_ = false;
    }

    // A backend that vanished without a FATAL may mean the node went down: look again.
    if (end == session_end::backend_disconnected && !backend_sent_fatal_)
        shared_.registry.request_detect();

    // The backend connection goes back to the pool only when the client left it idle and the
    // reset succeeds; anything else (a query in flight, a broken connection) closes it.
    bool pooled = false;
    if (backend_) {
        bool client_left = end == session_end::client_terminated ||
                           end == session_end::client_disconnected ||
                           end == session_end::client_idle_timeout;
        if (client_left && backend_clean()) {
            net::steady_timer t(client_.get_executor(), shared_.timeouts.reset);
            auto r = co_await (reset_backend() || t.async_wait(use_tuple));
            if (r.index() == 0 && std::get<0>(r) && !shared_.stopping.load()) {
                pooled = worker_.pool.put(pool_key_, std::move(backend_),
                                          std::size_t(shared_.settings.pool.max_pool));
            }
        } else if (client_left && pending_ > 0) {
            // The client went away mid-query: stop the backend's work too.
            net::steady_timer t(client_.get_executor(), shared_.timeouts.goodbye);
            co_await (ha::send_cancel(backend_->address, backend_->pid, backend_->key) ||
                      t.async_wait(use_tuple));
        }
        if (backend_) {
            backend_->socket.close(ignored);
            backend_.reset();
        }
    }
    bool expected = end == session_end::client_terminated || end == session_end::cancel_request;
    if (expected)
        log::debug("s{} ended: {}{}", id_, to_string(end), pooled ? " (backend pooled)" : "");
    else
        log::info("s{} ended: {}{}{}", id_, to_string(end), end_detail_.empty() ? "" : ": ",
                  end_detail_);
}

net::awaitable<void> session::run() {
    session_end end = session_end::internal_error;
    try {
        end = co_await negotiate_and_authenticate();
        if (end == session_end::client_terminated) {
            std::tie(proxy_pid_, proxy_key_) = shared_.cancels.allocate();
            end = co_await attach_backend();
            if (end == session_end::client_terminated) end = co_await relay();
        }
    } catch (const boost::system::system_error& e) {
        // Awaiting after a shutdown's cancellation throws operation_aborted.
        end = is_cancelled(e.code()) ? session_end::admin_shutdown : session_end::internal_error;
        end_detail_ = e.what();
    } catch (const std::exception& e) {
        log::error("s{} internal error: {}", id_, e.what());
        end_detail_ = e.what();
        end = session_end::internal_error;
    }
    try {
        co_await net::this_coro::reset_cancellation_state();
        co_await finish(end);
    } catch (const std::exception& e) {
        log::error("s{} error while ending the session: {}", id_, e.what());
    }
}

void start_session(worker& w, stream client) {
    auto id = w.shared.next_session_id.fetch_add(1, std::memory_order_relaxed);
    auto s = std::make_shared<session>(w, std::move(client), id);
    w.sessions.emplace(id, s);
    net::co_spawn(
        w.ctx, s->run(),
        net::bind_cancellation_slot(s->cancellation().slot(), [&w, s](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    log::error("s{} escaped: {}", s->id(), ex.what());
                }
            }
            w.sessions.erase(s->id());
        }));
}

}  // namespace pgpilot::proxy
