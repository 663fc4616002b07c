#pragma once

// Internal to pgpilot_config: the line loop of the line-based files it reads (pgpool.conf,
// pool_hba.conf, pool_passwd).

#include <string_view>

namespace pgpilot::config::detail {

/// Calls fn(line_number, line) for every line of `text` (numbered from 1; "\n" or "\r\n"
/// ends one, the line without it).
template <class Fn>
void for_each_line(std::string_view text, Fn fn) {
    int number = 0;
    while (!text.empty()) {
        ++number;
        const auto nl = text.find('\n');
        auto line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        fn(number, line);
    }
}

}  // namespace pgpilot::config::detail
