// pgpilot: a PostgreSQL proxy for a primary with hot standbys.
#include <fmt/format.h>

#include <cstring>
#include <string>

#include "config/config.hpp"
#include "ha/log.hpp"
#include "proxy/server.hpp"

namespace {

/// Prints through stdio with fputs: fmt::print(FILE*) crashes in ThreadSanitizer builds
/// (fmt is a shared library built without TSan).
template <typename... Args>
void say(std::FILE* out, fmt::format_string<Args...> f, Args&&... args) {
    std::fputs(fmt::format(f, std::forward<Args>(args)...).c_str(), out);
}

void usage(std::FILE* out) {
    say(out,
        "usage: pgpilot [-f FILE] [--check] [-D]\n"
        "  -f, --config FILE   configuration file (default: pgpilot.toml)\n"
        "  --check             validate the configuration and exit (0 valid, 1 not)\n"
        "  -D, --discard-status  ignore the node status file ([failover] status_file): probe\n"
        "                      every node afresh, even those it says are down\n"
        "  -h, --help          this text\n"
        "  --version           print the version\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::string file = "pgpilot.toml";
    bool check = false;
    pgpilot::proxy::run_options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if ((a == "-f" || a == "--config") && i + 1 < argc) {
            file = argv[++i];
        } else if (a == "--check") {
            check = true;
        } else if (a == "-D" || a == "--discard-status") {
            options.discard_status_file = true;
        } else if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        } else if (a == "--version") {
            say(stdout, "pgpilot {}\n", PGPILOT_VERSION);
            return 0;
        } else {
            say(stderr, "pgpilot: unknown argument \"{}\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    auto loaded = pgpilot::config::load_file(file);
    if (!loaded) {
        for (const auto& e : loaded.errors)
            say(stderr, "{}\n", e);
        say(stderr, "pgpilot: configuration file \"{}\" is not valid\n", file);
        return 1;
    }
    if (check) {
        say(stdout, "configuration file \"{}\" is valid\n", file);
        return 0;
    }
    pgpilot::log::threshold = pgpilot::log::from_config(loaded.value->server.log);
    pgpilot::log::info("pgpilot {} starting with {}", PGPILOT_VERSION, file);
    try {
        return pgpilot::proxy::run_server(*loaded.value, options);
    } catch (const std::exception& e) {
        pgpilot::log::error("fatal: {}", e.what());
        return 1;
    }
}
