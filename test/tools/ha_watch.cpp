// pgpilot_ha_watch: a node registry without the proxy, for the integration tests of ha/.
//
//   pgpilot_ha_watch -f pgpilot.toml
//
// Builds the registry from the config exactly as pgpilot does, runs detect() and start(), then
// answers commands read from stdin, one line each on stdout:
//
//   snapshot   the current cluster_snapshot as one JSON line
//   check      node_registry::request_replication_check(), then "ok"
//   detect     node_registry::request_detect(), then "ok"
//   quit       stop the registry and exit 0 (so does end of input)
//
// Logs go to stderr, at the config's [server] log_level.
#include <fmt/format.h>

#include <cstdio>
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

log::level to_log_level(config::log_level l) {
    switch (l) {
        case config::log_level::debug:
            return log::level::debug;
        case config::log_level::info:
            return log::level::info;
        case config::log_level::warning:
            return log::level::warning;
        case config::log_level::error:
            return log::level::error;
    }
    return log::level::info;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 || std::string_view(argv[1]) != "-f") {
        std::fputs("usage: pgpilot_ha_watch -f CONFIG\n", stderr);
        return 2;
    }
    auto loaded = config::load_file(argv[2]);
    if (!loaded) {
        for (const auto& e : loaded.errors)
            std::fprintf(stderr, "%s\n", e.c_str());
        return 1;
    }
    log::threshold = to_log_level(loaded.value->server.log);

    net::io_context ctx{1};
    ha::node_registry registry(ctx, *loaded.value);
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
