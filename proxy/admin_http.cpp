#include "proxy/admin_http.hpp"

#include <openssl/crypto.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <cstring>
#include <unordered_set>

#include "ha/log.hpp"
#include "proxy/admin.hpp"
#include "proxy/once_a_minute.hpp"

namespace pgpilot::proxy {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using http_stream = beast::basic_stream<net::generic::stream_protocol, net::any_io_executor,
                                        beast::unlimited_rate_policy>;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

/// Connections served at once; more are closed as soon as they are accepted.
constexpr std::size_t max_connections = 64;
/// Allowed for reading one request, and for writing one response.
constexpr std::chrono::seconds io_timeout{30};
constexpr std::uint32_t header_limit = 8 * 1024;
constexpr std::uint64_t body_limit = 4 * 1024;  // node control takes no body

const char* const json_type = "application/json";

response make_response(http::status status, std::string body, const char* type = json_type) {
    response res{status, 11};
    res.set(http::field::server, "pgpilot");
    res.set(http::field::content_type, type);
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(body);
    return res;
}

response error_response(http::status status, std::string_view message) {
    return make_response(status, fmt::format("{{\"error\":{}}}\n", json_string(message)));
}

/// A whole decimal number (a node id in a path), or nullopt.
std::optional<int> parse_id(std::string_view text) {
    int value = 0;
    if (text.empty() || text.size() > 9) return std::nullopt;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

/// The flag `name` of a query string ("gracefully", "gracefully=1", "gracefully=true"); sets
/// *unknown to a parameter that is neither `name` nor empty.
bool query_flag(std::string_view query, std::string_view name, std::string* unknown) {
    bool set = false;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (part.empty()) continue;
        const auto eq = part.find('=');
        const auto key = part.substr(0, eq);
        const auto value =
            eq == std::string_view::npos ? std::string_view{"true"} : part.substr(eq + 1);
        if (key != name || (value != "true" && value != "1" && value != "false" && value != "0")) {
            *unknown = std::string(part);
            return false;
        }
        set = value == "true" || value == "1";
    }
    return set;
}

bool token_matches(std::string_view header, const std::string& token) {
    constexpr std::string_view scheme = "Bearer ";
    if (header.size() != scheme.size() + token.size() || !header.starts_with(scheme)) return false;
    return CRYPTO_memcmp(header.data() + scheme.size(), token.data(), token.size()) == 0;
}

}  // namespace

struct admin_http::state {
    std::unordered_set<http_stream*> open;
    bool stopped = false;
};

namespace {

/// POST /nodes/ID/(attach|detach|promote): PGPOOL ATTACH/DETACH/PROMOTE NODE over HTTP.
net::awaitable<response> node_control(shared_state& shared, const request& req,
                                      std::string_view id_text, std::string_view verb,
                                      std::string_view query, const std::string& peer) {
    const auto& token = shared.settings.admin.token;
    if (token.empty())
        co_return error_response(http::status::forbidden,
                                 "node control over HTTP is off: set [admin] token");
    if (!token_matches(req[http::field::authorization], token)) {
        auto res = error_response(http::status::unauthorized,
                                  "node control needs the header \"Authorization: Bearer TOKEN\" "
                                  "with [admin] token");
        res.set(http::field::www_authenticate, "Bearer");
        co_return res;
    }
    router::node_command command;
    std::string unknown;
    if (verb == "attach") {
        command.what = router::node_command::action::attach;
    } else if (verb == "detach") {
        command.what = router::node_command::action::detach;
        command.gracefully = query_flag(query, "gracefully", &unknown);
    } else {
        command.what = router::node_command::action::promote;
        command.switchover = query_flag(query, "switchover", &unknown);
    }
    if (verb == "attach" && !query.empty()) unknown = std::string(query);
    if (!unknown.empty())
        co_return error_response(http::status::bad_request,
                                 fmt::format("unknown parameter \"{}\" for {}", unknown, verb));
    const auto id = parse_id(id_text);
    if (!id)
        co_return error_response(http::status::not_found,
                                 fmt::format("\"{}\" is not a node id", id_text));
    command.node = *id;
    const auto what = router::to_string(command);
    log::warning("admin HTTP client {} runs {}", peer, what);
    const auto r = co_await run_node_command(shared, command, co_await net::this_coro::executor);
    using kind = node_command_outcome::kind;
    if (r.result != kind::no_such_node)
        log::warning("admin HTTP client {}: {}: {}{}", peer, what,
                     r.result == kind::done ? "" : "refused: ", r.message);
    http::status status = http::status::ok;
    switch (r.result) {
        case kind::done:
            status = http::status::ok;
            break;
        case kind::refused:
            status = http::status::conflict;
            break;
        case kind::no_such_node:
            status = http::status::not_found;
            break;
        case kind::shutting_down:
            status = http::status::service_unavailable;
            break;
    }
    co_return make_response(status, fmt::format("{{\"ok\":{},\"command\":{},\"message\":{}}}\n",
                                                r.result == kind::done ? "true" : "false",
                                                json_string(what), json_string(r.message)));
}

/// GET /health: 200 while a primary is up (pgpilot can take writes), 503 otherwise.
response health(const admin_report& r) {
    std::optional<int> primary;
    std::size_t up = 0;
    for (const auto& n : r.nodes) {
        if (n.status != "up") continue;
        ++up;
        if (n.role == "primary") primary = n.id;
    }
    return make_response(primary ? http::status::ok : http::status::service_unavailable,
                         fmt::format("{{\"status\":{},\"primary_node_id\":{},\"nodes_up\":{},"
                                     "\"nodes\":{},\"failover_in_progress\":{}}}\n",
                                     primary ? "\"ok\"" : "\"no primary\"",
                                     primary ? std::to_string(*primary) : "null", up,
                                     r.nodes.size(), r.failover_in_progress ? "true" : "false"));
}

net::awaitable<response> respond(shared_state& shared, const request& req,
                                 const std::string& peer) {
    std::string_view target = req.target();
    const auto question = target.find('?');
    const auto path = target.substr(0, question);
    const auto query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
    const bool get = req.method() == http::verb::get;
    auto wrong_method = [&](const char* allowed) {
        auto res = error_response(http::status::method_not_allowed,
                                  fmt::format("{} takes {}, not {}", path, allowed,
                                              std::string_view(req.method_string())));
        res.set(http::field::allow, allowed);
        return res;
    };

    if (path == "/metrics" || path == "/nodes" || path == "/pools" || path == "/health" ||
        path == "/") {
        if (!get) co_return wrong_method("GET");
        if (path == "/")
            co_return make_response(http::status::ok,
                                    "{\"endpoints\":[\"GET /health\",\"GET /nodes\",\"GET /pools\","
                                    "\"GET /metrics\",\"POST /nodes/ID/attach\","
                                    "\"POST /nodes/ID/detach[?gracefully]\","
                                    "\"POST /nodes/ID/promote[?switchover]\"]}\n");
        const auto report = read_report(shared, path == "/metrics" ? report_parts::all
                                                : path == "/pools" ? report_parts::pools
                                                                   : report_parts::nodes);
        if (path == "/metrics")
            co_return make_response(http::status::ok, prometheus_metrics(report),
                                    "text/plain; version=0.0.4; charset=utf-8");
        if (path == "/nodes") co_return make_response(http::status::ok, nodes_json(report));
        if (path == "/pools") co_return make_response(http::status::ok, pools_json(report));
        co_return health(report);
    }
    // /nodes/ID/VERB
    constexpr std::string_view prefix = "/nodes/";
    if (path.starts_with(prefix)) {
        const auto rest = path.substr(prefix.size());
        const auto slash = rest.find('/');
        if (slash != std::string_view::npos) {
            const auto verb = rest.substr(slash + 1);
            if (verb == "attach" || verb == "detach" || verb == "promote") {
                if (req.method() != http::verb::post) co_return wrong_method("POST");
                co_return co_await node_control(shared, req, rest.substr(0, slash), verb, query,
                                                peer);
            }
        }
    }
    co_return error_response(http::status::not_found,
                             fmt::format("no such endpoint: {}", std::string_view(path)));
}

/// The answer to a request that could not be read whole, or nullopt to just close.
std::optional<response> read_failure(const error_code& ec) {
    if (ec.category() != beast::http::make_error_code(http::error::bad_target).category() ||
        ec == http::error::end_of_stream || ec == http::error::partial_message)
        return std::nullopt;
    if (ec == http::error::body_limit)
        return error_response(http::status::payload_too_large, "request body too large");
    if (ec == http::error::header_limit)
        return error_response(http::status::request_header_fields_too_large,
                              "request header too large");
    return error_response(http::status::bad_request,
                          fmt::format("malformed HTTP request: {}", ec.message()));
}

net::awaitable<void> serve(std::shared_ptr<admin_http::state> st, shared_state& shared,
                           std::shared_ptr<http_stream> connection, std::string peer) {
    struct forget {
        admin_http::state& st;
        http_stream* s;
        ~forget() { st.open.erase(s); }
    } forget_guard{*st, connection.get()};
    http_stream& stream = *connection;
    beast::flat_buffer buffer;
    bool unread = false;  // the last request was not read whole
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(header_limit);
        parser.body_limit(body_limit);
        stream.expires_after(io_timeout);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        std::optional<response> res;
        bool keep_alive = false;
        if (ec) {
            res = read_failure(ec);
            if (!res) break;
            unread = true;
        } else {
            res = co_await respond(shared, parser.get(), peer);
            keep_alive = parser.get().keep_alive();
        }
        if (st->stopped) break;
        res->keep_alive(keep_alive);
        res->prepare_payload();
        stream.expires_after(io_timeout);
        auto [wec, wn] = co_await http::async_write(stream, *res, use_tuple);
        if (wec || !keep_alive) break;
    }
    error_code ignored;
    stream.socket().shutdown(net::socket_base::shutdown_send, ignored);
    // Closing a socket with unread data resets the connection, and the client may lose the
    // error answer it has not read yet: read what it still sends first (for a while).
    if (unread && !st->stopped) {
        stream.expires_after(std::chrono::seconds(2));
        char sink[4096];
        for (std::size_t drained = 0; drained < (1u << 20);) {
            auto [ec, n] = co_await stream.async_read_some(net::buffer(sink), use_tuple);
            if (ec) break;
            drained += n;
        }
    }
}

std::string peer_text(const net::generic::stream_protocol::socket& sock) {
    error_code ec;
    const auto ep = sock.remote_endpoint(ec);
    net::ip::tcp::endpoint tcp;
    if (ec || ep.size() > tcp.capacity()) return "?";
    std::memcpy(tcp.data(), ep.data(), ep.size());
    tcp.resize(ep.size());
    return fmt::format("{}:{}", tcp.address().to_string(), tcp.port());
}

net::awaitable<void> accept_loop(std::shared_ptr<admin_http::state> st, shared_state& shared,
                                 listener& a) {
    once_a_minute warning;
    for (;;) {
        auto [ec, sock] = co_await a.async_accept(use_tuple);
        if (st->stopped || ec == net::error::operation_aborted) co_return;
        if (ec || st->open.size() >= max_connections) {
            if (warning.due())
                log::warning("admin HTTP: {} (repeats are not logged for a minute)",
                             ec ? "accept failed: " + ec.message()
                                : fmt::format("{} connections already open; closing a new one",
                                              max_connections));
            if (ec) {
                net::steady_timer t(co_await net::this_coro::executor,
                                    std::chrono::milliseconds(100));
                co_await t.async_wait(use_tuple);
            }
            continue;
        }
        sock.set_option(net::ip::tcp::no_delay(true), ec);
        auto peer = peer_text(sock);
        auto connection = std::make_shared<http_stream>(std::move(sock));
        st->open.insert(connection.get());
        net::co_spawn(a.get_executor(), serve(st, shared, std::move(connection), std::move(peer)),
                      net::detached);
    }
}

}  // namespace

admin_http::admin_http(worker& w, std::vector<std::unique_ptr<listener>> listeners)
    : worker_(w), listeners_(std::move(listeners)), state_(std::make_shared<state>()) {}

admin_http::~admin_http() = default;

void admin_http::start() {
    for (auto& a : listeners_)
        net::co_spawn(worker_.ctx, accept_loop(state_, worker_.shared, *a), net::detached);
}

void admin_http::stop() {
    state_->stopped = true;
    error_code ec;
    for (auto& a : listeners_)
        a->close(ec);
    for (auto* s : state_->open)
        s->socket().close(ec);
}

}  // namespace pgpilot::proxy
