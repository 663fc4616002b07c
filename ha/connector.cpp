#include "ha/connector.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "protocol/auth.hpp"
#include "protocol/messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"

namespace pgpilot::ha {

namespace {

using namespace net::experimental::awaitable_operators;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

/// Largest message accepted from a backend while connecting (authentication requests,
/// ParameterStatus, errors). libpq allows 30,000 bytes in that phase; a backend that sends
/// more is broken or hostile, and must not make pgpilot buffer it.
constexpr std::uint32_t max_startup_message = 64 * 1024;
/// Largest message accepted in answer to pgpilot's own queries (pg_is_in_recovery,
/// DISCARD ALL...): their rows are tiny.
constexpr std::uint32_t max_internal_message = 1024 * 1024;

connect_failure unreachable(std::string message) {
    return {std::string(protocol::sqlstate::sqlclient_unable_to_establish_sqlconnection),
            std::move(message),
            {},
            true};
}

/// A socket that could not be created for want of pgpilot's own resources.
bool is_local_shortage(const error_code& ec) {
    using boost::system::errc::errc_t;
    return ec == errc_t::too_many_files_open || ec == errc_t::too_many_files_open_in_system ||
           ec == errc_t::no_buffer_space || ec == errc_t::not_enough_memory;
}

/// Resolves and connects the socket (TCP, or Unix when host is a directory).
net::awaitable<error_code> open_socket(stream& s, const node_address& a) {
    if (!a.host.empty() && a.host.front() == '/') {
        std::string path = a.host + "/.s.PGSQL." + std::to_string(a.port);
        auto [ec] =
            co_await s.async_connect(net::local::stream_protocol::endpoint(path), use_tuple);
        co_return ec;
    }
    net::ip::tcp::resolver resolver(s.get_executor());
    auto [rec, results] =
        co_await resolver.async_resolve(a.host, std::to_string(a.port), use_tuple);
    if (rec) co_return rec;
    error_code last = net::error::host_not_found;
    for (const auto& entry : results) {
        if (s.is_open()) s.close();
        auto [ec] = co_await s.async_connect(entry.endpoint(), use_tuple);
        if (!ec) {
            s.set_option(net::ip::tcp::no_delay(true), ec);
            co_return error_code{};
        }
        last = ec;
    }
    co_return last;
}

std::string describe(const node_address& a) {
    return a.host + ":" + std::to_string(a.port);
}

net::awaitable<connect_result> do_connect(node_address address, startup_params params,
                                          std::optional<std::string> password) {
    connect_result r;
    auto conn = std::make_unique<backend_connection>(co_await net::this_coro::executor);
    conn->address = address;
    if (auto ec = co_await open_socket(conn->socket, address)) {
        r.failure = unreachable("could not connect to " + describe(address) + ": " + ec.message());
        r.failure.local = is_local_shortage(ec);
        r.failure.unreachable = !r.failure.local;
        co_return r;
    }
    // Named, not a temporary inside co_await: GCC 12 mishandles those (double destruction).
    const std::string startup = protocol::encode_startup_message(params);
    if (auto ec = co_await write_all(conn->socket, startup)) {
        r.failure = unreachable("could not send startup packet to " + describe(address) + ": " +
                                ec.message());
        co_return r;
    }
    std::string user;
    for (const auto& [k, v] : params)
        if (k == "user") user = v;
    protocol::backend_authenticator auth(user, std::move(password));
    frame_reader reader;
    for (;;) {
        protocol::whole_frame f;
        if (auto ec = co_await reader.read_frame(conn->socket, f, max_startup_message)) {
            r.failure = unreachable(ec == boost::system::errc::bad_message
                                        ? "message too long or malformed from " +
                                              describe(address) + " during startup"
                                        : "lost connection to " + describe(address) +
                                              " during startup: " + ec.message());
            co_return r;
        }
        switch (f.tag) {
            case 'R': {
                auto step = auth.on_authentication(f.body);
                using kind = protocol::backend_authenticator::step;
                if (step.k == kind::fail) {
                    r.failure = {
                        std::string(protocol::sqlstate::invalid_password),
                        "authentication to " + describe(address) + " failed: " + step.error,
                        {},
                        false};
                    co_return r;
                }
                if (step.k == kind::send) {
                    if (auto ec = co_await write_all(conn->socket, step.to_send)) {
                        r.failure = unreachable("lost connection to " + describe(address) +
                                                " during authentication: " + ec.message());
                        co_return r;
                    }
                }
                break;
            }
            case 'S':
                if (auto p = protocol::parse_parameter_status(f.body))
                    conn->set_parameter(p->first, p->second);
                break;
            case 'K':
                if (auto k = protocol::parse_backend_key_data(f.body)) {
                    conn->pid = k->first;
                    conn->key = k->second;
                }
                break;
            case 'N':
            case 'v':  // NegotiateProtocolVersion: we only ever ask for 3.0
                break;
            case 'E': {
                auto e = protocol::parse_error_response(f.body);
                r.failure.sqlstate = e ? std::string(e->sqlstate) : "XX000";
                r.failure.message = e ? std::string(e->message) : "malformed error from backend";
                r.failure.error_frame.assign(1, 'E');
                protocol::append_u32(r.failure.error_frame, std::uint32_t(f.body.size() + 4));
                r.failure.error_frame.append(protocol::as_chars(f.body));
                // 57P03 "the database system is starting up / shutting down" means the node is
                // not usable right now, like a refused connection.
                r.failure.unreachable = r.failure.sqlstate.starts_with("57P");
                co_return r;
            }
            case 'Z': {
                auto st = protocol::parse_ready_for_query(f.body);
                conn->tx_status = st.value_or('I');
                conn->created = conn->last_used = std::chrono::steady_clock::now();
                r.conn = std::move(conn);
                co_return r;
            }
            default:
                r.failure = unreachable("unexpected message '" + std::string(1, f.tag) + "' from " +
                                        describe(address) + " during startup");
                co_return r;
        }
    }
}

}  // namespace

void backend_connection::set_parameter(std::string_view name, std::string_view value) {
    for (auto& [k, v] : parameters) {
        if (k == name) {
            v = value;
            return;
        }
    }
    parameters.emplace_back(name, value);
}

net::awaitable<connect_result> connect_backend(node_address address, startup_params params,
                                               std::optional<std::string> password,
                                               std::chrono::milliseconds timeout) {
    net::steady_timer timer(co_await net::this_coro::executor, timeout);
    std::string where = describe(address);
    auto r = co_await (do_connect(std::move(address), std::move(params), std::move(password)) ||
                       timer.async_wait(use_tuple));
    if (r.index() == 0) co_return std::get<0>(std::move(r));
    connect_result timed_out;
    timed_out.failure = unreachable("timeout connecting to " + where);
    timed_out.failure.timed_out = true;
    co_return timed_out;
}

net::awaitable<error_code> send_cancel(node_address address, std::uint32_t pid, std::uint32_t key) {
    stream s(co_await net::this_coro::executor);
    if (auto ec = co_await open_socket(s, address)) co_return ec;
    const std::string request = protocol::encode_cancel_request(pid, key);
    auto ec = co_await write_all(s, request);
    // PostgreSQL closes the connection once it has read the request; wait for that so the
    // cancel is delivered before we return (and before the caller reports success).
    char byte;
    co_await s.async_read_some(net::buffer(&byte, 1), use_tuple);
    co_return ec;
}

std::optional<text_row> parse_data_row(protocol::byte_view body) {
    // Int16 column count, then per column an Int32 length (-1 = NULL) and that many bytes.
    if (body.size() < 2) return std::nullopt;
    std::size_t columns = std::size_t(body[0]) << 8 | std::size_t(body[1]);
    std::size_t at = 2;
    text_row row;
    row.reserve(columns);
    for (std::size_t i = 0; i < columns; ++i) {
        if (body.size() - at < 4) return std::nullopt;
        auto len = protocol::read_u32(body.data() + at);
        at += 4;
        if (len == 0xffffffffu) {
            row.emplace_back(std::nullopt);
            continue;
        }
        if (body.size() - at < len) return std::nullopt;
        row.emplace_back(std::string(protocol::as_chars(body.subspan(at, len))));
        at += len;
    }
    if (at != body.size()) return std::nullopt;
    return row;
}

net::awaitable<rows_outcome> query_rows(backend_connection& conn, std::string_view sql) {
    rows_outcome out;
    std::string msg;
    protocol::append_query(msg, sql);
    if ((out.io = co_await write_all(conn.socket, msg))) co_return out;
    frame_reader reader;
    for (;;) {
        protocol::whole_frame f;
        if ((out.io = co_await reader.read_frame(conn.socket, f, max_internal_message)))
            co_return out;
        switch (f.tag) {
            case 'D':
                if (auto row = parse_data_row(f.body))
                    out.rows.push_back(std::move(*row));
                else
                    out.error = "malformed DataRow";
                break;
            case 'E':
                if (auto e = protocol::parse_error_response(f.body))
                    out.error = std::string(e->message);
                else
                    out.error = "malformed error response";
                break;
            case 'S':
                if (auto p = protocol::parse_parameter_status(f.body))
                    conn.set_parameter(p->first, p->second);
                break;
            case 'Z':
                out.tx_status = protocol::parse_ready_for_query(f.body).value_or(0);
                conn.tx_status = out.tx_status;
                if (!reader.empty()) out.io = make_error_code(boost::system::errc::bad_message);
                co_return out;
            default:
                break;  // RowDescription, CommandComplete, notices, notifications
        }
    }
}

net::awaitable<query_outcome> simple_query(backend_connection& conn, std::string_view sql) {
    auto r = co_await query_rows(conn, sql);
    query_outcome out;
    out.io = r.io;
    out.error = std::move(r.error);
    out.tx_status = r.tx_status;
    if (!r.rows.empty() && !r.rows.front().empty()) out.value = std::move(r.rows.front().front());
    co_return out;
}

}  // namespace pgpilot::ha
