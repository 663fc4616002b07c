// Encoders and body parsers for the tagged protocol 3.0 messages a proxy writes or inspects.
// https://www.postgresql.org/docs/15/protocol-message-formats.html
//
// Encoders append whole frames (tag + length + body) to `out`. Strings are cut at an embedded
// NUL, which a cstring cannot carry, so an encoder always produces a well-formed frame.
// Parsers take a body as split by the framer (frame.hpp), return nullopt when it is malformed
// (truncated, a cstring without its NUL, bytes left over) and return string_views into it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/frame.hpp"

namespace pgpilot::protocol {

/// The fields of an ErrorResponse/NoticeResponse the proxy writes itself.
struct error_fields {
    std::string_view severity;  ///< "ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", ...
    std::string_view sqlstate;  ///< five characters, see sqlstate.hpp
    std::string message;
    std::string detail;  ///< omitted when empty
    std::string hint;    ///< omitted when empty
};

/// ErrorResponse ('E'): fields S and V (both `severity`), C, M, then D and H when non-empty,
/// then the terminator. https://www.postgresql.org/docs/15/protocol-error-fields.html
void append_error_response(std::string& out, const error_fields& e);
/// NoticeResponse ('N'): the same fields as append_error_response.
void append_notice_response(std::string& out, const error_fields& e);
/// ParameterStatus ('S', backend).
void append_parameter_status(std::string& out, std::string_view name, std::string_view value);
/// BackendKeyData ('K').
void append_backend_key_data(std::string& out, std::uint32_t pid, std::uint32_t key);
/// ReadyForQuery ('Z'); `tx_status` is 'I' (idle), 'T' (in a transaction) or 'E' (failed one).
void append_ready_for_query(std::string& out, char tx_status);
/// ParseComplete ('1').
void append_parse_complete(std::string& out);
/// NegotiateProtocolVersion ('v'). The first Int32 is written as PostgreSQL writes it (the
/// full version 3 << 16 | newest_minor, which libpq compares with the version it asked for),
/// then the count and names of the unrecognized `_pq_.` options.
void append_negotiate_protocol_version(std::string& out, std::uint32_t newest_minor,
                                       const std::vector<std::string>& unrecognized);
/// Query ('Q', frontend).
void append_query(std::string& out, std::string_view sql);
/// Terminate ('X', frontend).
void append_terminate(std::string& out);
/// Sync ('S', frontend).
void append_sync(std::string& out);
/// Close ('C', frontend) of a prepared statement ('S') or portal ('P').
void append_close(std::string& out, char kind, std::string_view name);
/// RowDescription ('T') of text columns (type text, OID 25), as SHOW-style commands send.
void append_text_row_description(std::string& out, std::span<const std::string_view> columns);
/// DataRow ('D') of text values; nullopt is SQL NULL.
void append_text_data_row(std::string& out, std::span<const std::optional<std::string>> values);
/// CommandComplete ('C', backend) with its tag ("SELECT 3", "SHOW").
void append_command_complete(std::string& out, std::string_view tag);

/// An ErrorResponse or NoticeResponse body. The named fields are empty when absent; when a
/// field code repeats the last one wins (as in libpq).
struct parsed_error {
    std::string_view severity;  ///< V (non-localized) if present, else S
    std::string_view sqlstate, message, detail, hint;
    std::vector<std::pair<char, std::string_view>> fields;  ///< every field, in wire order
};
/// ErrorResponse ('E') or NoticeResponse ('N') body: (code byte, cstring)* then a 0 byte, which
/// must be the last byte.
std::optional<parsed_error> parse_error_response(byte_view body);
/// ParameterStatus ('S', backend) body: name and value.
std::optional<std::pair<std::string_view, std::string_view>> parse_parameter_status(byte_view body);
/// BackendKeyData ('K') body: process id and secret key (exactly 8 bytes, protocol 3.0).
std::optional<std::pair<std::uint32_t, std::uint32_t>> parse_backend_key_data(byte_view body);
/// ReadyForQuery ('Z') body: one byte, 'I', 'T' or 'E'.
std::optional<char> parse_ready_for_query(byte_view body);
/// Authentication* ('R') body: the first Int32 (0 ok, 3 cleartext, 5 md5, 10 SASL, 11 SASL
/// continue, 12 SASL final, ...). Any bytes after it belong to the request and are not checked.
std::optional<std::uint32_t> parse_authentication_code(byte_view body);
/// The first column of a DataRow ('D') body: nullopt when the body is malformed or has no
/// column; an inner nullopt for SQL NULL.
std::optional<std::optional<std::string_view>> parse_data_row_first(byte_view body);
/// Query ('Q') body: one cstring and nothing after it.
std::optional<std::string_view> parse_query(byte_view body);

/// A Parse ('P') message.
struct parse_message {
    std::string_view name, query;
    std::vector<std::uint32_t> param_types;  ///< type OIDs; 0 means unspecified
};
/// Parse ('P') body: statement name, query, Int16 count, count Int32 OIDs, nothing after.
std::optional<parse_message> parse_parse(byte_view body);

/// The names at the start of a Bind ('B') message.
struct bind_header {
    std::string_view portal, statement;
    std::size_t size = 0;  ///< bytes the two names take; the rest of the body follows them
};
/// Bind ('B') body: only the two names; the rest is forwarded untouched and not checked, so
/// this also works on a prefix of a large Bind body.
std::optional<bind_header> parse_bind_header(byte_view body);

/// A Describe ('D') or Close ('C') message (frontend).
struct describe_close {
    char kind;  ///< 'S' (prepared statement) or 'P' (portal)
    std::string_view name;
};
/// Describe ('D') or Close ('C') body (frontend): kind byte, name, nothing after.
std::optional<describe_close> parse_describe_or_close(byte_view body);

/// An Execute ('E') message (frontend).
struct execute_message {
    std::string_view portal;
    std::uint32_t max_rows;  ///< 0 means no limit
};
/// Execute ('E') body (frontend): portal name, Int32 row limit, nothing after.
std::optional<execute_message> parse_execute(byte_view body);

/// A NotificationResponse ('A').
struct notification {
    std::uint32_t pid;
    std::string_view channel, payload;
};
/// NotificationResponse ('A') body: Int32 pid, channel, payload, nothing after.
std::optional<notification> parse_notification(byte_view body);

/// Whether a client may send a message with this tag in protocol 3.0 after the startup packet:
/// B C c d D E f F H P p Q S X.
bool is_frontend_tag(char tag);

/// Is this tag a message a server may send in protocol 3.0?
/// https://www.postgresql.org/docs/15/protocol-message-formats.html
bool is_backend_tag(char tag);
/// Largest length field (body + 4) PostgreSQL accepts for a frontend message with this tag
/// before it reports "invalid message length" (SocketBackend in src/backend/tcop/postgres.c):
/// PQ_LARGE_MESSAGE_LIMIT for Q F P B d, PQ_SMALL_MESSAGE_LIMIT for X S H C D E c f, and
/// PG_MAX_AUTH_TOKEN_LENGTH for p (src/backend/libpq/auth.c). 0 for a tag that is not a
/// frontend tag, so that parse_frame_header(buf, max_frontend_length(tag)) rejects it.
std::uint32_t max_frontend_length(char tag);

/// PQ_SMALL_MESSAGE_LIMIT (src/include/libpq/libpq.h).
inline constexpr std::uint32_t small_message_limit = 10000;
/// PQ_LARGE_MESSAGE_LIMIT: MaxAllocSize - 1.
inline constexpr std::uint32_t large_message_limit = 0x3ffffffe;
/// PG_MAX_AUTH_TOKEN_LENGTH (src/include/libpq/auth.h): limit of password/SASL/GSS messages.
inline constexpr std::uint32_t auth_token_limit = 65535;

}  // namespace pgpilot::protocol
