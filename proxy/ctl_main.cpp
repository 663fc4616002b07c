// pgpilot-ctl: the command-line client of pgpilot's HTTP admin endpoint (docs/admin.md), for
// what pcp_node_info, pcp_attach_node and friends do for pgpool-II.
#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/say.hpp"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

/// Exit codes: 0 done, 1 refused or failed (an HTTP error, a node command refused, no primary
/// for `health`), 2 bad usage or no answer from the endpoint.
constexpr int exit_refused = 1;
constexpr int exit_usage = 2;

/// Node commands wait for a switchover (up to [failover] hold_timeout, 30 s by default).
constexpr std::chrono::seconds answer_timeout{120};

using pgpilot::proxy::say;

void usage(std::FILE* out) {
    say(out,
        "usage: pgpilot-ctl [-f CONFIG | -h HOST -p PORT] [-t TOKEN] COMMAND\n"
        "  -f, --config FILE  take the address, port and token from FILE's [admin] table\n"
        "  -h, --host HOST    the admin endpoint's address (default 127.0.0.1)\n"
        "  -p, --port PORT    its port ([admin] port)\n"
        "  -t, --token TOKEN  [admin] token, for node commands (default: $PGPILOT_ADMIN_TOKEN)\n"
        "  --json             print nodes and pools as the endpoint's JSON\n"
        "commands:\n"
        "  nodes              the nodes (SHOW POOL_NODES)\n"
        "  pools              the pools (SHOW POOLS)\n"
        "  health             whether a primary is up (exit 0) or not (exit 1)\n"
        "  metrics            the Prometheus metrics\n"
        "  attach N           PGPOOL ATTACH NODE N\n"
        "  detach N [--gracefully]   PGPOOL DETACH NODE N [GRACEFULLY]\n"
        "  promote N [--switchover]  PGPOOL PROMOTE NODE N [SWITCHOVER]\n");
}

struct endpoint {
    std::string host = "127.0.0.1";
    std::string port;
    std::string token;
};

struct answer {
    unsigned status = 0;
    std::string body;
};

/// One request; throws boost::system::system_error when there is no answer.
answer request(const endpoint& to, http::verb method, const std::string& target) {
    net::io_context ctx;
    net::ip::tcp::resolver resolver(ctx);
    beast::tcp_stream stream(ctx);
    stream.expires_after(answer_timeout);
    stream.connect(resolver.resolve(to.host, to.port));
    http::request<http::empty_body> req{method, target, 11};
    req.set(http::field::host, to.host);
    req.set(http::field::user_agent, "pgpilot-ctl");
    if (!to.token.empty()) req.set(http::field::authorization, "Bearer " + to.token);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    beast::error_code ignored;
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    return {res.result_int(), std::move(res.body())};
}

std::string text_of(const json::value& v) {
    if (v.is_string()) return std::string(v.as_string());
    if (v.is_null()) return "";
    if (v.is_double()) return fmt::format("{:.6f}", v.as_double());
    return json::serialize(v);
}

/// An aligned table, as psql prints one: the named columns of every object of `rows`.
void print_table(const json::array& rows, const std::vector<std::string>& columns) {
    std::vector<std::vector<std::string>> cells;
    std::vector<std::size_t> width;
    for (const auto& c : columns)
        width.push_back(c.size());
    for (const auto& row : rows) {
        auto& line = cells.emplace_back();
        for (std::size_t i = 0; i < columns.size(); ++i) {
            const auto* v = row.as_object().if_contains(columns[i]);
            line.push_back(v ? text_of(*v) : "");
            width[i] = std::max(width[i], line.back().size());
        }
    }
    auto print_line = [&](const std::vector<std::string>& values) {
        std::string out;
        for (std::size_t i = 0; i < values.size(); ++i)
            out += fmt::format("{}{:<{}}", i ? " | " : " ", values[i], width[i]);
        say(stdout, "{}\n", out);
    };
    print_line(columns);
    std::string rule;
    for (std::size_t i = 0; i < columns.size(); ++i)
        rule += (i ? "-+-" : "-") + std::string(width[i], '-');
    say(stdout, "{}-\n", rule);
    for (const auto& line : cells)
        print_line(line);
    say(stdout, "({} row{})\n", cells.size(), cells.size() == 1 ? "" : "s");
}

/// The error an answer carries ({"error": ...} or {"message": ...}), else its body.
std::string error_of(const answer& a) {
    boost::system::error_code ec;
    const auto v = json::parse(a.body, ec);
    if (!ec && v.is_object()) {
        for (const char* key : {"error", "message"})
            if (const auto* m = v.as_object().if_contains(key); m && m->is_string())
                return std::string(m->as_string());
    }
    return a.body;
}

int run(const endpoint& to, const std::vector<std::string>& args, bool raw_json) {
    const std::string& command = args[0];
    auto get = [&](const std::string& target) { return request(to, http::verb::get, target); };
    if (command == "nodes" || command == "pools") {
        if (args.size() != 1) return usage(stderr), exit_usage;
        const auto a = get("/" + command);
        if (a.status != 200) {
            say(stderr, "pgpilot-ctl: {} (HTTP {})\n", error_of(a), a.status);
            return exit_refused;
        }
        if (raw_json) {
            say(stdout, "{}", a.body);
            return 0;
        }
        const auto doc = json::parse(a.body);
        if (command == "nodes")
            print_table(doc.at("nodes").as_array(),
                        {"node_id", "hostname", "port", "status", "role", "lb_weight", "select_cnt",
                         "replication_delay", "replication_state", "last_status_change"});
        else
            print_table(doc.at("pools").as_array(),
                        {"database", "user", "node_id", "pool_mode", "cl_waiting", "sv_active",
                         "sv_idle", "pool_size", "maxwait", "total_waits"});
        return 0;
    }
    if (command == "health" || command == "metrics") {
        if (args.size() != 1) return usage(stderr), exit_usage;
        const auto a = get("/" + command);
        say(stdout, "{}", a.body);
        return a.status == 200 ? 0 : exit_refused;
    }
    if (command == "attach" || command == "detach" || command == "promote") {
        const char* flag = command == "detach"    ? "--gracefully"
                           : command == "promote" ? "--switchover"
                                                  : nullptr;
        if (args.size() < 2 || args.size() > 3 ||
            (args.size() == 3 && (!flag || args[2] != flag)) ||
            args[1].find_first_not_of("0123456789") != std::string::npos) {
            usage(stderr);
            return exit_usage;
        }
        std::string target = fmt::format("/nodes/{}/{}", args[1], command);
        if (args.size() == 3) target += "?" + args[2].substr(2);
        const auto a = request(to, http::verb::post, target);
        if (a.status == 200) {
            say(stdout, "{}\n", error_of(a));
            return 0;
        }
        say(stderr, "pgpilot-ctl: {} (HTTP {})\n", error_of(a), a.status);
        return exit_refused;
    }
    say(stderr, "pgpilot-ctl: unknown command \"{}\"\n", command);
    usage(stderr);
    return exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
    endpoint to;
    if (const char* t = std::getenv("PGPILOT_ADMIN_TOKEN")) to.token = t;
    std::string config_file;
    bool raw_json = false;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const bool has_value = i + 1 < argc;
        if ((a == "-f" || a == "--config") && has_value) {
            config_file = argv[++i];
        } else if ((a == "-h" || a == "--host") && has_value) {
            to.host = argv[++i];
        } else if ((a == "-p" || a == "--port") && has_value) {
            to.port = argv[++i];
        } else if ((a == "-t" || a == "--token") && has_value) {
            to.token = argv[++i];
        } else if (a == "--json") {
            raw_json = true;
        } else if (a == "--help") {
            usage(stdout);
            return 0;
        } else if (a.starts_with("-") && a != "--gracefully" && a != "--switchover") {
            say(stderr, "pgpilot-ctl: unknown option \"{}\"\n", a);
            usage(stderr);
            return exit_usage;
        } else {
            args.emplace_back(a);
        }
    }
    if (!config_file.empty()) {
        auto loaded = pgpilot::config::load_file(config_file);
        if (!loaded) {
            for (const auto& e : loaded.errors)
                say(stderr, "{}\n", e);
            return exit_usage;
        }
        const auto& admin = loaded.value->admin;
        if (admin.port == 0) {
            say(stderr, "pgpilot-ctl: {} has no [admin] port: the HTTP admin endpoint is off\n",
                config_file);
            return exit_usage;
        }
        if (to.port.empty()) to.port = std::to_string(admin.port);
        const auto& first =
            admin.listen_addresses.empty() ? std::string() : admin.listen_addresses[0];
        if (!first.empty() && first != "*" && first != "0.0.0.0" && first != "::") to.host = first;
        if (to.token.empty()) to.token = admin.token;
    }
    if (args.empty() || to.port.empty()) {
        if (to.port.empty()) say(stderr, "pgpilot-ctl: give -p PORT or -f CONFIG\n");
        usage(stderr);
        return exit_usage;
    }
    try {
        return run(to, args, raw_json);
    } catch (const boost::system::system_error& e) {
        say(stderr, "pgpilot-ctl: no answer from {}:{}: {}\n", to.host, to.port,
            e.code().message());
        return exit_usage;
    } catch (const std::exception& e) {
        say(stderr, "pgpilot-ctl: unexpected answer from {}:{}: {}\n", to.host, to.port, e.what());
        return exit_usage;
    }
}
