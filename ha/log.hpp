// Logging: one line per event to stderr, with a level and (for sessions) the session id.
// It lives in ha/, the lowest layer that does I/O, so ha/ and proxy/ share it.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <string_view>

#include "config/config.hpp"

namespace pgpilot::log {

enum class level { debug = 0, info = 1, warning = 2, error = 3 };

/// The threshold below which lines are dropped; set once at start, read by every thread.
inline std::atomic<level> threshold{level::info};

inline bool enabled(level l) {
    return l >= threshold.load(std::memory_order_relaxed);
}

/// The level of a configured [server] log_level.
level from_config(config::log_level l);

/// Writes one formatted line (timestamp, level, text) with a single write(2).
void write_line(level l, std::string_view text);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(level::debug))
        write_line(level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(level::info)) write_line(level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(level::warning))
        write_line(level::warning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(level::error))
        write_line(level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace pgpilot::log
