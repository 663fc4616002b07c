// Command-line output of pgpilot and pgpilot-ctl.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <utility>

namespace pgpilot::proxy {

/// Prints through stdio with fputs: fmt::print(FILE*) crashes in ThreadSanitizer builds
/// (fmt is a shared library built without TSan).
template <typename... Args>
void say(std::FILE* out, fmt::format_string<Args...> f, Args&&... args) {
    std::fputs(fmt::format(f, std::forward<Args>(args)...).c_str(), out);
}

}  // namespace pgpilot::proxy
