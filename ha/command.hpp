// Running the user's failover, follow-primary and failback commands: pgpool-II's % placeholders,
// and a child process that never blocks the event loop.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "ha/frame_io.hpp"

namespace pgpilot::ha {

/// A node as a placeholder names it: id (-1 = none), host, port, data directory.
struct placeholder_node {
    int id = -1;
    std::string host;
    int port = 0;  ///< 0 = none (printed as "")
    std::string data_directory;
};

/// The values of pgpool-II's placeholders, for failover_command, follow_primary_command and
/// failback_command.
struct placeholder_values {
    placeholder_node node;         ///< %d %h %p %D: the failed / following / attached node
    placeholder_node new_main;     ///< %m %H %r %R: the new primary
    int old_main = -1;             ///< %M
    placeholder_node old_primary;  ///< %P (id) %N (host) %S (port)
};

/// `command` with each placeholder replaced by its value, as pgpool-II does: values go in
/// unquoted, "%%" is "%", an unknown "%x" (and a final lone "%") is dropped.
std::string expand_placeholders(std::string_view command, const placeholder_values& values);

/// How a command ended.
struct command_result {
    bool started = false;  ///< false: it could not be started (`error` says why)
    std::string error;
    int exit_code = -1;  ///< when it exited
    int signal = 0;      ///< when a signal killed it
    std::string out;     ///< its stdout and stderr, each cut at max_command_output bytes
    std::string err;
    std::chrono::milliseconds elapsed{0};

    bool ok() const { return started && signal == 0 && exit_code == 0; }
    /// "exit status 0", "killed by signal 9", "could not start: ..."
    std::string describe() const;
};

/// Output kept per stream; the rest is read and dropped so the command never blocks on a pipe.
constexpr std::size_t max_command_output = std::size_t{64} * 1024;

/// Runs `/bin/sh -c command` with stdin from /dev/null, stdout and stderr read through pipes
/// on the caller's executor, default signal dispositions, and no descriptor of pgpilot's but
/// 0-2; completes when the shell has exited (reaped through a pidfd, no SIGCHLD handler).
/// Output that a background grandchild keeps writing after the shell exited is not waited for.
/// `command` must outlive the returned awaitable (pass a named string, as co_await needs).
net::awaitable<command_result> run_command(const std::string& command);

}  // namespace pgpilot::ha
