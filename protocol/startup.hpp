// The untagged first packet of a connection: StartupMessage, SSLRequest, GSSENCRequest and
// CancelRequest, parsed as PostgreSQL's ProcessStartupPacket does.
// https://www.postgresql.org/docs/15/protocol-message-formats.html
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/frame.hpp"

namespace pgpilot::protocol {

/// Request codes that take the place of a protocol version in an untagged packet.
inline constexpr std::uint32_t cancel_request_code = 80877102;  ///< 1234 << 16 | 5678
inline constexpr std::uint32_t ssl_request_code = 80877103;     ///< 1234 << 16 | 5679
inline constexpr std::uint32_t gssenc_request_code = 80877104;  ///< 1234 << 16 | 5680
/// Protocol 3.0 as sent in a StartupMessage (major << 16 | minor).
inline constexpr std::uint32_t protocol_version_3_0 = 3u << 16;

/// PostgreSQL's MAX_STARTUP_PACKET_LENGTH. As in ProcessStartupPacket it bounds the packet
/// without its own length word: the length field may be at most max_startup_length + 4.
inline constexpr std::uint32_t max_startup_length = 10000;
/// Smallest length field of a startup packet: the length word plus a version or request code.
inline constexpr std::uint32_t min_startup_length = 8;

/// Which kind of untagged packet opened the connection.
enum class startup_kind { startup, ssl_request, gssenc_request, cancel_request };

/// A parsed startup packet; fields not used by its kind stay zero/empty.
struct startup_packet {
    startup_kind kind = startup_kind::startup;
    /// Requested protocol version, for `startup`. Any version is reported as sent: the caller
    /// refuses majors other than 3 (0A000, "unsupported frontend protocol %u.%u: server
    /// supports 3.0 to 3.0"); params are only parsed for major 3.
    std::uint16_t major = 0, minor = 0;
    /// Name/value pairs in wire order, for `startup`, including `_pq_.` protocol options
    /// (the caller reports those in NegotiateProtocolVersion). Copied: kept for the session.
    std::vector<std::pair<std::string, std::string>> params;
    /// Backend process id and secret key, for `cancel_request`.
    std::uint32_t cancel_pid = 0, cancel_key = 0;

    /// The value of parameter `name`, or nullptr. When a name is repeated the last value wins,
    /// as in PostgreSQL (later settings override earlier ones).
    const std::string* find(std::string_view name) const;
};

/// Outcome of parse_startup.
struct startup_result {
    enum status { need_more, complete, malformed } st = need_more;
    /// With `complete`: bytes the packet occupies at the start of the buffer (its length field).
    std::size_t consumed = 0;
    startup_packet packet;
    /// With `malformed`: PostgreSQL's message for it ("invalid length of startup packet", ...).
    std::string error;
};

/// Parses the untagged packet at the start of `buf`. need_more until the whole packet is in
/// `buf` (a bad length is reported as soon as the length word is complete); bytes after the
/// packet are left alone (see `consumed`). Rules of PostgreSQL's ProcessStartupPacket:
/// length field below 8 or above max_startup_length + 4, or a CancelRequest whose length is
/// not 16: "invalid length of startup packet"; a 3.x StartupMessage whose name/value list does
/// not end with a terminator in its last byte: "invalid startup packet layout: expected
/// terminator as last byte". Like PostgreSQL, SSLRequest/GSSENCRequest ignore any bytes after
/// the code.
startup_result parse_startup(byte_view buf);

/// A protocol 3.0 StartupMessage with `params` in order (for connecting to backends). Strings
/// are cut at an embedded NUL, which a cstring cannot carry.
std::string encode_startup_message(const std::vector<std::pair<std::string, std::string>>& params);
/// A CancelRequest for backend `pid` with secret `key`.
std::string encode_cancel_request(std::uint32_t pid, std::uint32_t key);
/// An SSLRequest.
std::string encode_ssl_request();
/// A GSSENCRequest.
std::string encode_gssenc_request();

}  // namespace pgpilot::protocol
