// The process: worker threads with their listeners, the HA event loop, and shutdown.
#pragma once

#include "config/config.hpp"

namespace pgpilot::proxy {

/// Command-line choices that are not in the configuration file.
struct run_options {
    bool discard_status_file = false;  ///< -D: ignore [failover] status_file at start
};

/// Runs pgpilot with `settings` until SIGINT/SIGTERM; returns the process exit code.
int run_server(const config::settings& settings, const run_options& options = {});

}  // namespace pgpilot::proxy
