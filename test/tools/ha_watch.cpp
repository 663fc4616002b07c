// pgpilot_ha_watch: a node registry without the proxy, for the integration tests of ha/.
//
//   pgpilot_ha_watch -f pgpilot.toml [-D]
//
// Builds the registry from the config exactly as pgpilot does, runs detect() and start(), then
// answers commands read from stdin, one line each on stdout:
//
//   snapshot   the current cluster_snapshot as one JSON line
//   check      node_registry::request_replication_check(), then "ok"
//   detect     node_registry::request_detect(), then "ok"
//   fail N     node_registry::report_backend_failure(N, backend_failure::io, ...), then "ok"
//   attach N, detach N, promote N, promote N switchover
//              node_registry::attach_node/detach_node/promote_node, awaited from another
//              io_context as a session would; then "ok: MESSAGE" or "error: MESSAGE"
//   quit       stop the registry and exit 0 (so does end of input)
//
// Logs go to stderr, at the config's [server] log_level.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <iostream>
#include <string>
#include <thread>

#include "config/config.hpp"
#include "ha/log.hpp"
#include "ha/registry.hpp"

namespace {

using namespace pgpilot;

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", int(c));
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string to_json(const router::cluster_snapshot& s) {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    std::string out = fmt::format("{{\"version\":{},\"failover_in_progress\":{},\"nodes\":[",
                                  s.version, s.failover_in_progress ? "true" : "false");
    for (std::size_t i = 0; i < s.nodes.size(); ++i) {
        const auto& n = s.nodes[i];
        const double checked_ago = n.lsn_checked == steady_clock::time_point{}
                                       ? -1
                                       : duration<double, std::milli>(now - n.lsn_checked).count();
        const double changed = duration<double>(n.last_status_change.time_since_epoch()).count();
        out += fmt::format(
            "{}{{\"id\":{},\"host\":{},\"port\":{},\"status\":\"{}\",\"role\":\"{}\","
            "\"status_reason\":{},\"last_status_change\":{:.3f},\"wal_lsn\":{},"
            "\"wal_lsn_text\":\"{}\",\"lsn_checked_ms_ago\":{:.1f},\"lag_bytes\":{},"
            "\"lag_seconds\":{},\"replication_state\":{},\"replication_sync_state\":{}}}",
            i ? "," : "", n.id, json_string(n.host), n.port, router::to_string(n.status),
            router::to_string(n.role), json_string(n.status_reason), changed, n.wal_lsn,
            router::format_lsn(n.wal_lsn), checked_ago, n.lag_bytes, n.lag_seconds,
            json_string(n.replication_state), json_string(n.replication_sync_state));
    }
    return out + "]}";
}

/// Runs a node control request from this thread's own io_context, as a session on a worker
/// thread would, and formats its result.
std::string control(net::awaitable<ha::control_result> request) {
    net::io_context caller{1};
    auto f = net::co_spawn(caller, std::move(request), net::use_future);
    caller.run();
    auto r = f.get();
    return (r.ok ? "ok: " : "error: ") + r.message;
}

}  // namespace

int main(int argc, char** argv) {
    const bool discard = argc == 4 && std::string_view(argv[3]) == "-D";
    if ((argc != 3 && !discard) || std::string_view(argv[1]) != "-f") {
        std::fputs("usage: pgpilot_ha_watch -f CONFIG [-D]\n", stderr);
        return 2;
    }
    auto loaded = config::load_file(argv[2]);
    if (!loaded) {
        for (const auto& e : loaded.errors)
            std::fprintf(stderr, "%s\n", e.c_str());
        return 1;
    }
    log::threshold = log::from_config(loaded.value->server.log);

    net::io_context ctx{1};
    ha::node_registry registry(ctx, *loaded.value, {discard});
    auto first = net::co_spawn(ctx, registry.detect(), net::use_future);
    auto guard = net::make_work_guard(ctx);
    std::thread thread([&] { ctx.run(); });
    first.wait();
    registry.start();

    std::string line;
    while (std::getline(std::cin, line)) {
        std::string answer;
        if (line == "snapshot") {
            answer = to_json(*registry.snapshot());
        } else if (line == "check") {
            registry.request_replication_check();
            answer = "ok";
        } else if (line == "detect") {
            registry.request_detect();
            answer = "ok";
        } else if (line.starts_with("fail ")) {
            registry.report_backend_failure(std::atoi(line.c_str() + 5), ha::backend_failure::io,
                                            "reported by pgpilot_ha_watch");
            answer = "ok";
        } else if (line.starts_with("attach ")) {
            answer = control(registry.attach_node(std::atoi(line.c_str() + 7)));
        } else if (line.starts_with("detach ")) {
            answer = control(registry.detach_node(std::atoi(line.c_str() + 7)));
        } else if (line.starts_with("promote ")) {
            const bool switchover = line.ends_with(" switchover");
            answer = control(registry.promote_node(std::atoi(line.c_str() + 8), switchover));
        } else if (line == "quit") {
            break;
        } else {
            answer = "error: unknown command";
        }
        answer += '\n';
        std::fputs(answer.c_str(), stdout);
        std::fflush(stdout);
    }
    registry.stop();
    guard.reset();
    thread.join();
    return 0;
}
