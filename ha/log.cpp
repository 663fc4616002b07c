#include "ha/log.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>

namespace pgpilot::log {

namespace {
const char* name(level l) {
    switch (l) {
        case level::debug:
            return "DEBUG";
        case level::info:
            return "INFO";
        case level::warning:
            return "WARNING";
        case level::error:
            return "ERROR";
    }
    return "?";
}
}  // namespace

level from_config(config::log_level l) {
    switch (l) {
        case config::log_level::debug:
            return level::debug;
        case config::log_level::info:
            return level::info;
        case config::log_level::warning:
            return level::warning;
        case config::log_level::error:
            return level::error;
    }
    return level::info;
}

void write_line(level l, std::string_view text) {
    using namespace std::chrono;
    auto now = system_clock::now();
    std::time_t t = system_clock::to_time_t(now);
    auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    fmt::memory_buffer buf;
    fmt::format_to(std::back_inserter(buf), "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC {} {}\n",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ms, name(l), text);
    // One write per line so lines from different threads never interleave.
    const char* p = buf.data();
    std::size_t left = buf.size();
    while (left > 0) {
        ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n <= 0) break;
        p += n;
        left -= std::size_t(n);
    }
}

}  // namespace pgpilot::log
