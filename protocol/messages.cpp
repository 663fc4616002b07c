// https://www.postgresql.org/docs/15/protocol-message-formats.html
#include "protocol/messages.hpp"

namespace pgpilot::protocol {

namespace {

/// `s` up to its first NUL: what a cstring can carry.
std::string_view cstr_prefix(std::string_view s) {
    return s.substr(0, s.find('\0'));
}

void append_safe_cstr(std::string& out, std::string_view s) {
    append_cstr(out, cstr_prefix(s));
}

/// Appends a tag and a placeholder length; returns where the length goes.
std::size_t begin_message(std::string& out, char tag) {
    out.push_back(tag);
    std::size_t at = out.size();
    append_u32(out, 0);
    return at;
}

/// Patches the length written by begin_message: everything after the tag.
void finish_message(std::string& out, std::size_t at) {
    const std::uint32_t len = std::uint32_t(out.size() - at);
    out[at] = char(len >> 24);
    out[at + 1] = char(len >> 16);
    out[at + 2] = char(len >> 8);
    out[at + 3] = char(len);
}

void append_error_like(std::string& out, char tag, const error_fields& e) {
    std::size_t at = begin_message(out, tag);
    auto field = [&](char code, std::string_view value) {
        out.push_back(code);
        append_safe_cstr(out, value);
    };
    field('S', e.severity);
    field('V', e.severity);
    field('C', e.sqlstate);
    field('M', e.message);
    if (!e.detail.empty()) field('D', e.detail);
    if (!e.hint.empty()) field('H', e.hint);
    out.push_back('\0');
    finish_message(out, at);
}

/// Bounds-checked sequential reads over a message body.
class reader {
  public:
    explicit reader(byte_view body) : body_(as_chars(body)) {}

    bool done() const { return pos_ == body_.size(); }
    std::size_t pos() const { return pos_; }

    bool u8(char& v) {
        if (body_.size() - pos_ < 1) return false;
        v = body_[pos_++];
        return true;
    }
    bool u16(std::uint16_t& v) {
        if (body_.size() - pos_ < 2) return false;
        v = read_u16(reinterpret_cast<const std::byte*>(body_.data() + pos_));
        pos_ += 2;
        return true;
    }
    bool u32(std::uint32_t& v) {
        if (body_.size() - pos_ < 4) return false;
        v = read_u32(reinterpret_cast<const std::byte*>(body_.data() + pos_));
        pos_ += 4;
        return true;
    }
    bool cstr(std::string_view& v) {
        std::size_t nul = body_.find('\0', pos_);
        if (nul == std::string_view::npos) return false;
        v = body_.substr(pos_, nul - pos_);
        pos_ = nul + 1;
        return true;
    }

  private:
    std::string_view body_;
    std::size_t pos_ = 0;
};

}  // namespace

void append_error_response(std::string& out, const error_fields& e) {
    append_error_like(out, 'E', e);
}

void append_notice_response(std::string& out, const error_fields& e) {
    append_error_like(out, 'N', e);
}

void append_parameter_status(std::string& out, std::string_view name, std::string_view value) {
    std::size_t at = begin_message(out, 'S');
    append_safe_cstr(out, name);
    append_safe_cstr(out, value);
    finish_message(out, at);
}

void append_backend_key_data(std::string& out, std::uint32_t pid, std::uint32_t key) {
    std::size_t at = begin_message(out, 'K');
    append_u32(out, pid);
    append_u32(out, key);
    finish_message(out, at);
}

void append_ready_for_query(std::string& out, char tx_status) {
    std::size_t at = begin_message(out, 'Z');
    out.push_back(tx_status);
    finish_message(out, at);
}

void append_parse_complete(std::string& out) {
    finish_message(out, begin_message(out, '1'));
}

void append_negotiate_protocol_version(std::string& out, std::uint32_t newest_minor,
                                       const std::vector<std::string>& unrecognized) {
    std::size_t at = begin_message(out, 'v');
    append_u32(out, (3u << 16) | (newest_minor & 0xffff));
    append_u32(out, std::uint32_t(unrecognized.size()));
    for (const auto& name : unrecognized)
        append_safe_cstr(out, name);
    finish_message(out, at);
}

void append_query(std::string& out, std::string_view sql) {
    std::size_t at = begin_message(out, 'Q');
    append_safe_cstr(out, sql);
    finish_message(out, at);
}

void append_terminate(std::string& out) {
    finish_message(out, begin_message(out, 'X'));
}

void append_sync(std::string& out) {
    finish_message(out, begin_message(out, 'S'));
}

void append_close(std::string& out, char kind, std::string_view name) {
    std::size_t at = begin_message(out, 'C');
    out.push_back(kind);
    append_safe_cstr(out, name);
    finish_message(out, at);
}

void append_text_row_description(std::string& out, std::span<const std::string_view> columns) {
    std::size_t at = begin_message(out, 'T');
    append_u16(out, std::uint16_t(columns.size()));
    for (auto name : columns) {
        append_safe_cstr(out, name);
        append_u32(out, 0);           // table OID
        append_u16(out, 0);           // column number
        append_u32(out, 25);          // type OID: text
        append_u16(out, 0xffff);      // type size: -1 (variable)
        append_u32(out, 0xffffffff);  // type modifier: -1
        append_u16(out, 0);           // format: text
    }
    finish_message(out, at);
}

void append_text_data_row(std::string& out, std::span<const std::optional<std::string>> values) {
    std::size_t at = begin_message(out, 'D');
    append_u16(out, std::uint16_t(values.size()));
    for (const auto& v : values) {
        if (!v) {
            append_u32(out, 0xffffffff);
            continue;
        }
        append_u32(out, std::uint32_t(v->size()));
        out += *v;
    }
    finish_message(out, at);
}

void append_command_complete(std::string& out, std::string_view tag) {
    std::size_t at = begin_message(out, 'C');
    append_safe_cstr(out, tag);
    finish_message(out, at);
}

std::optional<std::optional<std::string_view>> parse_data_row_first(byte_view body) {
    if (body.size() < 2 || read_u16(body.data()) == 0 || body.size() < 6) return std::nullopt;
    const std::uint32_t len = read_u32(body.data() + 2);
    if (len == 0xffffffffu) return std::optional<std::string_view>{};
    if (body.size() - 6 < std::size_t(len)) return std::nullopt;
    return std::optional<std::string_view>{as_chars(body.subspan(6, len))};
}

std::optional<parsed_error> parse_error_response(byte_view body) {
    reader r(body);
    parsed_error e;
    std::string_view s_severity, v_severity;
    for (;;) {
        char code;
        if (!r.u8(code)) return std::nullopt;  // no terminator
        if (code == '\0') break;
        std::string_view value;
        if (!r.cstr(value)) return std::nullopt;
        e.fields.emplace_back(code, value);
        switch (code) {
            case 'S':
                s_severity = value;
                break;
            case 'V':
                v_severity = value;
                break;
            case 'C':
                e.sqlstate = value;
                break;
            case 'M':
                e.message = value;
                break;
            case 'D':
                e.detail = value;
                break;
            case 'H':
                e.hint = value;
                break;
            default:
                break;
        }
    }
    if (!r.done()) return std::nullopt;
    bool has_v = false;
    for (const auto& f : e.fields)
        has_v = has_v || f.first == 'V';
    e.severity = has_v ? v_severity : s_severity;
    return e;
}

std::optional<std::pair<std::string_view, std::string_view>> parse_parameter_status(
    byte_view body) {
    reader r(body);
    std::string_view name, value;
    if (!r.cstr(name) || !r.cstr(value) || !r.done()) return std::nullopt;
    return std::pair{name, value};
}

std::optional<std::pair<std::uint32_t, std::uint32_t>> parse_backend_key_data(byte_view body) {
    reader r(body);
    std::uint32_t pid, key;
    if (!r.u32(pid) || !r.u32(key) || !r.done()) return std::nullopt;
    return std::pair{pid, key};
}

std::optional<char> parse_ready_for_query(byte_view body) {
    reader r(body);
    char status;
    if (!r.u8(status) || !r.done()) return std::nullopt;
    if (status != 'I' && status != 'T' && status != 'E') return std::nullopt;
    return status;
}

std::optional<std::uint32_t> parse_authentication_code(byte_view body) {
    reader r(body);
    std::uint32_t code;
    if (!r.u32(code)) return std::nullopt;
    return code;
}

std::optional<std::string_view> parse_query(byte_view body) {
    reader r(body);
    std::string_view sql;
    if (!r.cstr(sql) || !r.done()) return std::nullopt;
    return sql;
}

std::optional<parse_message> parse_parse(byte_view body) {
    reader r(body);
    parse_message m;
    std::uint16_t count;
    if (!r.cstr(m.name) || !r.cstr(m.query) || !r.u16(count)) return std::nullopt;
    // Check the size before reserving: `count` comes off the wire.
    if (body.size() - r.pos() != std::size_t(count) * 4) return std::nullopt;
    m.param_types.resize(count);
    for (auto& oid : m.param_types)
        r.u32(oid);
    return m;
}

std::optional<bind_header> parse_bind_header(byte_view body) {
    reader r(body);
    bind_header h;
    if (!r.cstr(h.portal) || !r.cstr(h.statement)) return std::nullopt;
    h.size = r.pos();
    return h;
}

std::optional<describe_close> parse_describe_or_close(byte_view body) {
    reader r(body);
    describe_close d;
    if (!r.u8(d.kind) || (d.kind != 'S' && d.kind != 'P')) return std::nullopt;
    if (!r.cstr(d.name) || !r.done()) return std::nullopt;
    return d;
}

std::optional<execute_message> parse_execute(byte_view body) {
    reader r(body);
    execute_message e;
    if (!r.cstr(e.portal) || !r.u32(e.max_rows) || !r.done()) return std::nullopt;
    return e;
}

std::optional<notification> parse_notification(byte_view body) {
    reader r(body);
    notification n;
    if (!r.u32(n.pid) || !r.cstr(n.channel) || !r.cstr(n.payload) || !r.done()) {
        return std::nullopt;
    }
    return n;
}

bool is_backend_tag(char tag) {
    switch (tag) {
        case '1':
        case '2':
        case '3':
        case 'A':
        case 'C':
        case 'c':
        case 'D':
        case 'd':
        case 'E':
        case 'G':
        case 'H':
        case 'I':
        case 'K':
        case 'n':
        case 'N':
        case 'R':
        case 's':
        case 'S':
        case 't':
        case 'T':
        case 'V':
        case 'v':
        case 'W':
        case 'Z':
            return true;
        default:
            return false;
    }
}

bool is_frontend_tag(char tag) {
    return max_frontend_length(tag) != 0;
}

std::uint32_t max_frontend_length(char tag) {
    switch (tag) {
        case 'Q':  // Query
        case 'F':  // FunctionCall
        case 'P':  // Parse
        case 'B':  // Bind
        case 'd':  // CopyData
            return large_message_limit;
        case 'X':  // Terminate
        case 'S':  // Sync
        case 'H':  // Flush
        case 'C':  // Close
        case 'D':  // Describe
        case 'E':  // Execute
        case 'c':  // CopyDone
        case 'f':  // CopyFail
            return small_message_limit;
        case 'p':  // PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse
            return auth_token_limit;
        default:
            return 0;
    }
}

}  // namespace pgpilot::protocol
