// Framing of PostgreSQL protocol 3.0 messages: a one-byte tag, then a big-endian int32 length
// that counts itself and the body but not the tag.
// https://www.postgresql.org/docs/15/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace pgpilot::protocol {

/// Bytes as the parsers see them.
using byte_view = std::span<const std::byte>;

inline byte_view as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(byte_view b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline std::uint32_t read_u32(const std::byte* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
           std::uint32_t(p[3]);
}
inline std::uint16_t read_u16(const std::byte* p) {
    return std::uint16_t((std::uint32_t(p[0]) << 8) | std::uint32_t(p[1]));
}
inline void append_u32(std::string& out, std::uint32_t v) {
    const char bytes[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
    out.append(bytes, 4);
}
inline void append_u16(std::string& out, std::uint16_t v) {
    out.push_back(char(v >> 8));
    out.push_back(char(v));
}
/// Appends a NUL-terminated string.
inline void append_cstr(std::string& out, std::string_view s) {
    out.append(s);
    out.push_back('\0');
}

/// Size of a tagged message header: tag byte + int32 length.
inline constexpr std::size_t header_size = 5;

/// PostgreSQL refuses a length field above this (PQ_LARGE_MESSAGE_LIMIT = MaxAllocSize - 1, where
/// MaxAllocSize is 0x3fffffff; pq_getmessage compares the length field, which counts itself).
inline constexpr std::uint32_t max_message_length = 0x3ffffffe;

enum class frame_status { need_more, header, malformed };

/// What the framer found at the start of a buffer.
struct frame {
    frame_status status = frame_status::need_more;
    char tag = 0;
    std::uint32_t length = 0;  ///< the length field: body size + 4
    std::size_t need = 0;      ///< with need_more: bytes still missing for the header
    /// Whole frame size on the wire (tag + length field + body).
    std::size_t total() const { return 1 + std::size_t(length); }
    std::size_t body_size() const { return std::size_t(length) - 4; }
};

/// Reads the header of the frame at the start of `buf`. A frame whose length field is below 4 or
/// above `max_length` is malformed. The body may still be incomplete: compare total() to the
/// buffer size; frames that are only forwarded never need their body in memory at once.
inline frame parse_frame_header(byte_view buf, std::uint32_t max_length = max_message_length) {
    frame f;
    if (buf.size() < header_size) {
        f.need = header_size - buf.size();
        return f;
    }
    f.tag = char(buf[0]);
    f.length = read_u32(buf.data() + 1);
    f.status =
        (f.length < 4 || f.length > max_length) ? frame_status::malformed : frame_status::header;
    return f;
}

/// A complete frame at the start of a buffer, if there is one.
struct whole_frame {
    char tag = 0;
    byte_view body;
    std::size_t total = 0;
};

/// need_more / malformed / header as parse_frame_header, but `header` only when the whole frame
/// is in `buf`, then `out` is filled.
inline frame_status next_whole_frame(byte_view buf, whole_frame& out,
                                     std::uint32_t max_length = max_message_length) {
    frame f = parse_frame_header(buf, max_length);
    if (f.status != frame_status::header) return f.status;
    if (buf.size() < f.total()) return frame_status::need_more;
    out.tag = f.tag;
    out.body = buf.subspan(header_size, f.body_size());
    out.total = f.total();
    return frame_status::header;
}

}  // namespace pgpilot::protocol
