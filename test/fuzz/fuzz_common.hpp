// Helpers shared by the libFuzzer targets in this directory (docs/fuzzing.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/frame.hpp"

/// An invariant of the code under test. Unlike assert() it is never compiled out: a violation
/// aborts, which libFuzzer reports as a crash and saves the input.
#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)

/// With PGPILOT_FUZZ_TRACE=1 in the environment, prints what a target reached (to check that
/// a seed exercises what it should: `PGPILOT_FUZZ_TRACE=1 fuzz_x -runs=0 seed`).
#define FUZZ_TRACE(...)                                  \
    do {                                                 \
        if (pgpilot::fuzz::tracing()) {                  \
            std::fprintf(stderr, "trace: " __VA_ARGS__); \
            std::fputc('\n', stderr);                    \
        }                                                \
    } while (0)

namespace pgpilot::fuzz {

inline bool tracing() {
    static const bool on = [] {
        const char* v = std::getenv("PGPILOT_FUZZ_TRACE");
        return v && *v && *v != '0';
    }();
    return on;
}

inline protocol::byte_view bytes(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const std::byte*>(data), size};
}

/// True if `inner` is empty or lies entirely inside `outer` (parsers return views into the body).
inline bool within(std::string_view inner, protocol::byte_view outer) {
    if (inner.empty()) return true;
    auto b = reinterpret_cast<std::uintptr_t>(outer.data());
    auto p = reinterpret_cast<std::uintptr_t>(inner.data());
    return p >= b && p + inner.size() <= b + outer.size();
}

/// Splits `buf` into whole frames (tag, body) as a connection reader would, stopping at the first
/// incomplete or malformed frame. `max_length` caps the length field of every frame.
struct raw_frame {
    char tag;
    std::string body;
};
inline std::vector<raw_frame> split_frames(protocol::byte_view buf,
                                           std::uint32_t max_length = 65535 + 4) {
    std::vector<raw_frame> out;
    protocol::whole_frame w;
    while (protocol::next_whole_frame(buf, w, max_length) == protocol::frame_status::header) {
        out.push_back({w.tag, std::string(protocol::as_chars(w.body))});
        buf = buf.subspan(w.total);
    }
    return out;
}

/// The comma-separated attributes of a SCRAM message.
inline std::vector<std::string> scram_fields(std::string_view s) {
    std::vector<std::string> out;
    for (;;) {
        auto comma = s.find(',');
        out.emplace_back(s.substr(0, comma));
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

inline std::string join_fields(const std::vector<std::string>& fields) {
    std::string out;
    for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out.push_back(',');
        out += fields[i];
    }
    return out;
}

/// The value of the first attribute `attr` ("x=value"), if any.
inline const std::string* scram_attribute(const std::vector<std::string>& fields, char attr) {
    for (const auto& f : fields)
        if (f.size() >= 2 && f[0] == attr && f[1] == '=') return &f;
    return nullptr;
}

}  // namespace pgpilot::fuzz
