// pgpilot: a PostgreSQL proxy for a primary with hot standbys.
#include <fmt/format.h>

#include <cstring>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "config/pgpool_import.hpp"
#include "ha/log.hpp"
#include "proxy/say.hpp"
#include "proxy/server.hpp"

namespace {

using pgpilot::proxy::say;

void usage(std::FILE* out) {
    say(out,
        "usage: pgpilot [-f FILE] [--check] [-D]\n"
        "       pgpilot --import-pgpool PGPOOL_CONF > pgpilot.toml\n"
        "  -f, --config FILE   configuration file (default: pgpilot.toml)\n"
        "  --check             validate the configuration and exit (0 valid, 1 not)\n"
        "  -D, --discard-status  ignore the node status file ([failover] status_file): probe\n"
        "                      every node afresh, even those it says are down\n"
        "  --import-pgpool PGPOOL_CONF\n"
        "                      print a pgpilot configuration made from a pgpool.conf (and the\n"
        "                      pool_passwd it names); what is not carried over goes to stderr\n"
        "  -h, --help          this text\n"
        "  --version           print the version\n");
}

/// The importer's reader of pool_passwd and pool_hba.conf: nullopt when one cannot be read.
std::optional<std::string> read_text(const std::string& path) {
    std::string text;
    if (pgpilot::config::read_whole_file(path, text)) return std::nullopt;
    return text;
}

/// pgpilot --import-pgpool FILE: the configuration on stdout, the notes on stderr.
int import_pgpool(const std::string& file) {
    std::string text;
    if (const auto error = pgpilot::config::read_whole_file(file, text)) {
        say(stderr, "pgpilot: cannot read \"{}\": {}\n", file, error->reason);
        return 1;
    }
    const auto result = pgpilot::config::import_pgpool_conf(text, file, read_text);
    for (const auto& e : result.errors)
        say(stderr, "{}\n", e);
    if (!result) {
        say(stderr, "pgpilot: \"{}\" was not imported\n", file);
        return 1;
    }
    for (const auto& n : result.notes)
        say(stderr, "{}\n", n);
    std::fputs(result.toml.c_str(), stdout);
    return 0;
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
        } else if (a == "--import-pgpool" && i + 1 < argc) {
            return import_pgpool(argv[i + 1]);
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
