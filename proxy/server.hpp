// The process: worker threads with their listeners, the HA event loop, and shutdown.
#pragma once

#include "config/config.hpp"

namespace pgpilot::proxy {

/// Runs pgpilot with `settings` until SIGINT/SIGTERM; returns the process exit code.
int run_server(const config::settings& settings);

}  // namespace pgpilot::proxy
