// https://www.postgresql.org/docs/15/protocol-message-formats.html (StartupMessage, SSLRequest,
// GSSENCRequest, CancelRequest); rules from ProcessStartupPacket in PostgreSQL's
// src/backend/postmaster/postmaster.c.
#include "protocol/startup.hpp"

#include <algorithm>

namespace pgpilot::protocol {

namespace {

constexpr std::string_view bad_length = "invalid length of startup packet";
constexpr std::string_view bad_layout =
    "invalid startup packet layout: expected terminator as last byte";

startup_result malformed(std::string_view why) {
    startup_result r;
    r.st = startup_result::malformed;
    r.error = why;
    return r;
}

/// `s` up to its first NUL: what a cstring can carry.
std::string_view cstr_prefix(std::string_view s) {
    return s.substr(0, s.find('\0'));
}

/// Reads the NUL-terminated string starting at `pos` and moves `pos` past its NUL; false when
/// there is no NUL before the end of `body`.
bool read_cstr(std::string_view body, std::size_t& pos, std::string_view& out) {
    std::size_t nul = body.find('\0', pos);
    if (nul == std::string_view::npos) return false;
    out = body.substr(pos, nul - pos);
    pos = nul + 1;
    return true;
}

}  // namespace

const std::string* startup_packet::find(std::string_view name) const {
    auto it = std::find_if(params.rbegin(), params.rend(),
                           [&](const auto& p) { return p.first == name; });
    return it == params.rend() ? nullptr : &it->second;
}

startup_result parse_startup(byte_view buf) {
    if (buf.size() < 4) return {};
    const std::uint32_t length = read_u32(buf.data());
    if (length < min_startup_length || length - 4 > max_startup_length)
        return malformed(bad_length);
    if (buf.size() < length) return {};

    startup_result r;
    r.consumed = length;
    // The packet after its length word: a version or request code, then the payload.
    const std::uint32_t code = read_u32(buf.data() + 4);
    switch (code) {
        case cancel_request_code:
            if (length != 16) return malformed(bad_length);
            r.packet.kind = startup_kind::cancel_request;
            r.packet.cancel_pid = read_u32(buf.data() + 8);
            r.packet.cancel_key = read_u32(buf.data() + 12);
            r.st = startup_result::complete;
            return r;
        case ssl_request_code:
            r.packet.kind = startup_kind::ssl_request;
            r.st = startup_result::complete;
            return r;
        case gssenc_request_code:
            r.packet.kind = startup_kind::gssenc_request;
            r.st = startup_result::complete;
            return r;
        default:
            break;
    }

    r.packet.kind = startup_kind::startup;
    r.packet.major = std::uint16_t(code >> 16);
    r.packet.minor = std::uint16_t(code & 0xffff);
    // PostgreSQL rejects other majors before looking at the payload; leave that to the caller.
    if (r.packet.major != 3) {
        r.st = startup_result::complete;
        return r;
    }

    // name\0value\0 ... \0, the terminator being exactly the last byte.
    const std::string_view body = as_chars(buf.subspan(8, length - 8));
    std::size_t pos = 0;
    while (pos < body.size() && body[pos] != '\0') {
        std::string_view name, value;
        if (!read_cstr(body, pos, name) || !read_cstr(body, pos, value)) {
            return malformed(bad_layout);
        }
        r.packet.params.emplace_back(std::string(name), std::string(value));
    }
    if (pos + 1 != body.size()) return malformed(bad_layout);
    r.st = startup_result::complete;
    return r;
}

namespace {

/// Appends a request packet: length word + code (+ payload appended by the caller, then
/// patched by finish_untagged).
std::size_t begin_untagged(std::string& out, std::uint32_t code) {
    std::size_t start = out.size();
    append_u32(out, 0);
    append_u32(out, code);
    return start;
}

void finish_untagged(std::string& out, std::size_t start) {
    const std::uint32_t len = std::uint32_t(out.size() - start);
    out[start] = char(len >> 24);
    out[start + 1] = char(len >> 16);
    out[start + 2] = char(len >> 8);
    out[start + 3] = char(len);
}

}  // namespace

std::string encode_startup_message(const std::vector<std::pair<std::string, std::string>>& params) {
    std::string out;
    std::size_t start = begin_untagged(out, protocol_version_3_0);
    for (const auto& [name, value] : params) {
        append_cstr(out, cstr_prefix(name));
        append_cstr(out, cstr_prefix(value));
    }
    out.push_back('\0');
    finish_untagged(out, start);
    return out;
}

std::string encode_cancel_request(std::uint32_t pid, std::uint32_t key) {
    std::string out;
    std::size_t start = begin_untagged(out, cancel_request_code);
    append_u32(out, pid);
    append_u32(out, key);
    finish_untagged(out, start);
    return out;
}

std::string encode_ssl_request() {
    std::string out;
    finish_untagged(out, begin_untagged(out, ssl_request_code));
    return out;
}

std::string encode_gssenc_request() {
    std::string out;
    finish_untagged(out, begin_untagged(out, gssenc_request_code));
    return out;
}

}  // namespace pgpilot::protocol
