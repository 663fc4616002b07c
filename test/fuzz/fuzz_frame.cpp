// Fuzzes the framer (protocol/frame.hpp) and every body parser and encoder of
// protocol/messages.hpp.
//
// Input: one flags byte, then a byte stream split into frames the way a connection reader does.
//   flags bit 0: 0 = frontend stream (length cap max_frontend_length(tag), as the proxy reads a
//                client), 1 = backend stream (cap max_message_length).
// Every whole frame's body goes through every body parser whatever its tag. Each parser is
// checked against a small reference model (when must it accept?) and, when it accepts, by
// re-encoding its result, which must give the body back byte for byte. The encoders are fed the
// body as arbitrary strings and their output must parse back. The tag classifiers
// (is_backend_tag, is_frontend_tag) are checked on the tag of every frame and on the first byte
// of the stream, against the message type lists of the protocol documentation.

#include <optional>
#include <string>
#include <string_view>

#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::protocol;
using pgpilot::fuzz::within;

namespace {

/// Message types a PostgreSQL 15 server sends (protocol-message-formats.html): ParseComplete,
/// BindComplete, CloseComplete, NotificationResponse, CommandComplete, CopyDone, DataRow,
/// CopyData, ErrorResponse, CopyInResponse, CopyOutResponse, EmptyQueryResponse, BackendKeyData,
/// NoData, NoticeResponse, Authentication*, PortalSuspended, ParameterStatus,
/// ParameterDescription, RowDescription, FunctionCallResponse, NegotiateProtocolVersion,
/// CopyBothResponse, ReadyForQuery.
constexpr std::string_view backend_tags = "123ACcDdEGHIKnNRsStTVvWZ";
/// ... and a client sends after the startup packet.
constexpr std::string_view frontend_tags = "BCcdDEfFHPpQSX";

/// Both classifiers against the lists above, for one (arbitrary) tag.
void check_tag(char tag) {
    FUZZ_CHECK(is_backend_tag(tag) == (backend_tags.find(tag) != std::string_view::npos));
    FUZZ_CHECK(is_frontend_tag(tag) == (frontend_tags.find(tag) != std::string_view::npos));
    FUZZ_CHECK(is_frontend_tag(tag) == (max_frontend_length(tag) != 0));
}

std::string_view chars(byte_view b) {
    return as_chars(b);
}

std::size_t count_nul(std::string_view s) {
    std::size_t n = 0;
    for (char c : s)
        n += c == '\0';
    return n;
}

/// `s` up to its first NUL (what an encoder keeps of a string).
std::string_view cstr_prefix(std::string_view s) {
    return s.substr(0, s.find('\0'));
}

/// The body of the single whole frame an encoder wrote, checking the framing.
std::string encoded_body(const std::string& out, char tag) {
    whole_frame w;
    FUZZ_CHECK(next_whole_frame(as_bytes(out), w) == frame_status::header);
    FUZZ_CHECK(w.tag == tag);
    FUZZ_CHECK(w.total == out.size());
    return std::string(as_chars(w.body));
}

void check_header(const frame& f, byte_view buf, std::uint32_t cap) {
    if (buf.size() < header_size) {
        FUZZ_CHECK(f.status == frame_status::need_more);
        FUZZ_CHECK(f.need == header_size - buf.size());
        return;
    }
    FUZZ_CHECK(f.tag == char(buf[0]));
    FUZZ_CHECK(f.length == read_u32(buf.data() + 1));
    bool bad = f.length < 4 || f.length > cap;
    FUZZ_CHECK(f.status == (bad ? frame_status::malformed : frame_status::header));
    if (!bad) {
        FUZZ_CHECK(f.total() == std::size_t(f.length) + 1);
        FUZZ_CHECK(f.body_size() + header_size == f.total());
    }
}

void parse_bodies(byte_view body) {
    const std::string_view s = chars(body);
    const std::size_t nuls = count_nul(s);
    const bool ends_nul = !s.empty() && s.back() == '\0';

    if (auto e = parse_error_response(body)) {
        std::string re;
        std::string_view sev_s, sev_v, code, msg, detail, hint;
        bool has_v = false;
        for (const auto& [c, v] : e->fields) {
            FUZZ_CHECK(c != '\0');
            FUZZ_CHECK(within(v, body));
            re.push_back(c);
            re.append(v);
            re.push_back('\0');
            if (c == 'S') sev_s = v;
            if (c == 'V') {
                sev_v = v;
                has_v = true;
            }
            if (c == 'C') code = v;
            if (c == 'M') msg = v;
            if (c == 'D') detail = v;
            if (c == 'H') hint = v;
        }
        re.push_back('\0');
        FUZZ_CHECK(re == s);
        FUZZ_CHECK(e->severity == (has_v ? sev_v : sev_s));
        FUZZ_CHECK(e->sqlstate == code && e->message == msg && e->detail == detail &&
                   e->hint == hint);
    } else {
        // Reference: (code, cstring)* 0 with the terminator last. Walk it the simple way.
        std::size_t pos = 0;
        bool ok = false;
        while (pos < s.size()) {
            if (s[pos] == '\0') {
                ok = pos + 1 == s.size();
                break;
            }
            auto nul = s.find('\0', pos + 1);
            if (nul == std::string_view::npos) break;
            pos = nul + 1;
        }
        FUZZ_CHECK(!ok);
    }

    if (auto p = parse_parameter_status(body)) {
        FUZZ_CHECK(within(p->first, body) && within(p->second, body));
        std::string out;
        append_parameter_status(out, p->first, p->second);
        FUZZ_CHECK(encoded_body(out, 'S') == s);
    } else {
        FUZZ_CHECK(!(nuls == 2 && ends_nul));
    }

    if (auto k = parse_backend_key_data(body)) {
        std::string out;
        append_backend_key_data(out, k->first, k->second);
        FUZZ_CHECK(encoded_body(out, 'K') == s);
    } else {
        FUZZ_CHECK(body.size() != 8);
    }

    if (auto z = parse_ready_for_query(body)) {
        std::string out;
        append_ready_for_query(out, *z);
        FUZZ_CHECK(encoded_body(out, 'Z') == s);
    } else {
        FUZZ_CHECK(!(s.size() == 1 && (s[0] == 'I' || s[0] == 'T' || s[0] == 'E')));
    }

    if (auto code = parse_authentication_code(body)) {
        FUZZ_CHECK(body.size() >= 4 && *code == read_u32(body.data()));
    } else {
        FUZZ_CHECK(body.size() < 4);
    }

    if (auto q = parse_query(body)) {
        FUZZ_CHECK(within(*q, body));
        std::string out;
        append_query(out, *q);
        FUZZ_CHECK(encoded_body(out, 'Q') == s);
    } else {
        FUZZ_CHECK(!(nuls == 1 && ends_nul));
    }

    if (auto m = parse_parse(body)) {
        FUZZ_CHECK(within(m->name, body) && within(m->query, body));
        std::string re;
        append_cstr(re, m->name);
        append_cstr(re, m->query);
        FUZZ_CHECK(m->param_types.size() <= 0xffff);
        append_u16(re, std::uint16_t(m->param_types.size()));
        for (auto oid : m->param_types)
            append_u32(re, oid);
        FUZZ_CHECK(re == s);
    } else {
        auto n1 = s.find('\0');
        auto n2 = n1 == std::string_view::npos ? n1 : s.find('\0', n1 + 1);
        if (n2 != std::string_view::npos && s.size() >= n2 + 3) {
            std::size_t count = read_u16(body.data() + n2 + 1);
            FUZZ_CHECK(s.size() != n2 + 3 + 4 * count);
        }
    }

    if (auto b = parse_bind_header(body)) {
        FUZZ_CHECK(within(b->portal, body) && within(b->statement, body));
        FUZZ_CHECK(b->size == b->portal.size() + b->statement.size() + 2);
        FUZZ_CHECK(b->size <= body.size());
        FUZZ_CHECK(s.substr(0, b->size) ==
                   std::string(b->portal) + '\0' + std::string(b->statement) + '\0');
    } else {
        FUZZ_CHECK(nuls < 2);
    }

    if (auto d = parse_describe_or_close(body)) {
        FUZZ_CHECK(d->kind == 'S' || d->kind == 'P');
        FUZZ_CHECK(within(d->name, body));
        FUZZ_CHECK(s == std::string(1, d->kind) + std::string(d->name) + '\0');
    } else {
        FUZZ_CHECK(!(s.size() >= 2 && (s[0] == 'S' || s[0] == 'P') && nuls == 1 && ends_nul));
    }

    if (auto x = parse_execute(body)) {
        FUZZ_CHECK(within(x->portal, body));
        std::string re;
        append_cstr(re, x->portal);
        append_u32(re, x->max_rows);
        FUZZ_CHECK(re == s);
    } else {
        auto n = s.find('\0');
        FUZZ_CHECK(n == std::string_view::npos || s.size() != n + 5);
    }

    if (auto a = parse_notification(body)) {
        FUZZ_CHECK(within(a->channel, body) && within(a->payload, body));
        std::string re;
        append_u32(re, a->pid);
        append_cstr(re, a->channel);
        append_cstr(re, a->payload);
        FUZZ_CHECK(re == s);
    } else {
        FUZZ_CHECK(!(s.size() >= 6 && count_nul(s.substr(4)) == 2 && ends_nul));
    }
}

/// The encoders take arbitrary strings (user names, error texts): their output must always be a
/// well-formed frame that parses back to the strings cut at their first NUL.
void encode_strings(std::string_view s) {
    const std::string_view a = s.substr(0, s.size() / 2), b = s.substr(s.size() / 2);
    {
        std::string out;
        append_query(out, s);
        std::string body = encoded_body(out, 'Q');
        auto q = parse_query(as_bytes(body));
        FUZZ_CHECK(q && *q == cstr_prefix(s));
    }
    {
        std::string out;
        append_parameter_status(out, a, b);
        std::string body = encoded_body(out, 'S');
        auto p = parse_parameter_status(as_bytes(body));
        FUZZ_CHECK(p && p->first == cstr_prefix(a) && p->second == cstr_prefix(b));
    }
    {
        error_fields e{"ERROR", "XX000", std::string(a), std::string(b), std::string(s)};
        std::string out;
        append_error_response(out, e);
        append_notice_response(out, e);
        whole_frame w;
        FUZZ_CHECK(next_whole_frame(as_bytes(out), w) == frame_status::header && w.tag == 'E');
        auto pe = parse_error_response(w.body);
        FUZZ_CHECK(pe && pe->severity == "ERROR" && pe->sqlstate == "XX000");
        FUZZ_CHECK(pe->message == cstr_prefix(a) && pe->detail == cstr_prefix(b) &&
                   pe->hint == cstr_prefix(s));
        auto rest = as_bytes(out).subspan(w.total);
        FUZZ_CHECK(next_whole_frame(rest, w) == frame_status::header && w.tag == 'N');
        FUZZ_CHECK(w.total == rest.size());
        FUZZ_CHECK(parse_error_response(w.body).has_value());
    }
    {
        std::string out;
        append_negotiate_protocol_version(out, 0, {std::string(a), std::string(b)});
        std::string body = encoded_body(out, 'v');
        FUZZ_CHECK(body.size() == 8 + cstr_prefix(a).size() + cstr_prefix(b).size() + 2);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const bool backend = (data[0] & 1) != 0;
    byte_view buf = pgpilot::fuzz::bytes(data + 1, size - 1);

    if (!buf.empty()) check_tag(char(buf[0]));

    for (;;) {
        std::uint32_t cap = max_message_length;
        if (!backend && !buf.empty()) cap = max_frontend_length(char(buf[0]));

        frame f = parse_frame_header(buf, cap);
        check_header(f, buf, cap);

        whole_frame w;
        frame_status st = next_whole_frame(buf, w, cap);
        if (f.status == frame_status::header && buf.size() < f.total())
            FUZZ_CHECK(st == frame_status::need_more);
        else
            FUZZ_CHECK(st == f.status);
        if (st != frame_status::header) break;

        FUZZ_CHECK(w.tag == f.tag && w.total == f.total() && w.total <= buf.size());
        check_tag(w.tag);
        FUZZ_CHECK(w.body.size() == f.body_size() && w.body.data() == buf.data() + header_size);
        // A strict prefix of a whole frame is never whole.
        whole_frame partial;
        FUZZ_CHECK(next_whole_frame(buf.first(w.total - 1), partial, cap) ==
                   frame_status::need_more);

        parse_bodies(w.body);
        encode_strings(as_chars(w.body));
        buf = buf.subspan(w.total);
    }
    return 0;
}
