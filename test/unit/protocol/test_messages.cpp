// Tests of the tagged message encoders and body parsers (protocol/messages.hpp).
// https://www.postgresql.org/docs/15/protocol-message-formats.html
#include <catch2/catch.hpp>

#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"
#include "protocol/sqlstate.hpp"

using namespace pgpilot::protocol;
using namespace std::string_literals;

namespace {

/// The body of the single whole frame `frame`, checking its tag.
std::string body_of(const std::string& frame, char tag) {
    whole_frame f;
    REQUIRE(next_whole_frame(as_bytes(frame), f) == frame_status::header);
    REQUIRE(f.total == frame.size());
    REQUIRE(f.tag == tag);
    return std::string(as_chars(f.body));
}

/// A view of a copy of `s` that lives until the end of the program, so that the string_views a
/// parser returns stay valid however the test spelled its body (often a temporary).
byte_view bv(std::string s) {
    static std::deque<std::string> kept;
    return as_bytes(kept.emplace_back(std::move(s)));
}

}  // namespace

TEST_CASE("sqlstate constants", "[messages]") {
    CHECK(sqlstate::protocol_violation == "08P01");
    CHECK(sqlstate::connection_failure == "08006");
    CHECK(sqlstate::sqlclient_unable_to_establish_sqlconnection == "08001");
    CHECK(sqlstate::connection_exception == "08000");
    CHECK(sqlstate::invalid_authorization_specification == "28000");
    CHECK(sqlstate::invalid_password == "28P01");
    CHECK(sqlstate::feature_not_supported == "0A000");
    CHECK(sqlstate::too_many_connections == "53300");
    CHECK(sqlstate::admin_shutdown == "57P01");
    CHECK(sqlstate::crash_shutdown == "57P02");
    CHECK(sqlstate::cannot_connect_now == "57P03");
    CHECK(sqlstate::idle_session_timeout == "57P05");
    CHECK(sqlstate::query_canceled == "57014");
    CHECK(sqlstate::internal_error == "XX000");
    CHECK(sqlstate::invalid_catalog_name == "3D000");
    CHECK(sqlstate::configuration_limit_exceeded == "53400");
}

TEST_CASE("ErrorResponse and NoticeResponse exact bytes", "[messages]") {
    std::string out;
    append_error_response(out, {"ERROR", sqlstate::protocol_violation, "bad", "", ""});
    CHECK(out ==
          "E\0\0\0\x1f"
          "SERROR\0VERROR\0C08P01\0Mbad\0\0"s);

    out.clear();
    append_error_response(out, {"FATAL", "28000", "bad", "d", "h"});
    CHECK(out ==
          "E\0\0\0\x25"
          "SFATAL\0VFATAL\0C28000\0Mbad\0Dd\0Hh\0\0"s);

    out.clear();
    append_error_response(out, {"ERROR", "XX000", "m", "", "only hint"});
    CHECK(out ==
          "E\0\0\0\x28"
          "SERROR\0VERROR\0CXX000\0Mm\0Honly hint\0\0"s);

    out = "prefix";  // encoders append
    append_notice_response(out, {"NOTICE", "00000", "hi", "", ""});
    CHECK(out ==
          "prefixN\0\0\0\x20"
          "SNOTICE\0VNOTICE\0C00000\0Mhi\0\0"s);

    // A NUL inside a string would end the cstring early: it is cut there.
    out.clear();
    append_error_response(out, {"ERROR", "XX000", "a\0b"s, "", ""});
    CHECK(out ==
          "E\0\0\0\x1d"
          "SERROR\0VERROR\0CXX000\0Ma\0\0"s);
}

TEST_CASE("ErrorResponse round-trips", "[messages]") {
    std::string out;
    append_error_response(out, {"FATAL", "57P01", "terminating connection", "why", "retry"});
    const std::string body = body_of(out, 'E');
    auto e = parse_error_response(bv(body));
    REQUIRE(e);
    CHECK(e->severity == "FATAL");
    CHECK(e->sqlstate == "57P01");
    CHECK(e->message == "terminating connection");
    CHECK(e->detail == "why");
    CHECK(e->hint == "retry");
    REQUIRE(e->fields.size() == 6);
    CHECK(e->fields[0] == std::pair{'S', std::string_view("FATAL")});
    CHECK(e->fields[1].first == 'V');
    CHECK(e->fields[5] == std::pair{'H', std::string_view("retry")});

    out.clear();
    append_notice_response(out, {"WARNING", "01000", "careful", "", ""});
    auto n = parse_error_response(bv(body_of(out, 'N')));
    REQUIRE(n);
    CHECK(n->severity == "WARNING");
    CHECK(n->detail.empty());
    CHECK(n->hint.empty());
    CHECK(n->fields.size() == 4);
}

TEST_CASE("parse_error_response field rules", "[messages]") {
    // V (never localized) wins over S.
    auto localized = parse_error_response(bv("SFEHLER\0VERROR\0C42601\0Mx\0\0"s));
    REQUIRE(localized);
    CHECK(localized->severity == "ERROR");
    // Without V, S is used (servers before 9.6).
    auto old = parse_error_response(bv("SERROR\0C42601\0Mx\0P12\0Wwhere\0\0"s));
    REQUIRE(old);
    CHECK(old->severity == "ERROR");
    CHECK(old->fields.size() == 5);
    CHECK(old->fields[3] == std::pair{'P', std::string_view("12")});
    // Only a terminator: well-formed, all empty.
    auto empty = parse_error_response(bv("\0"s));
    REQUIRE(empty);
    CHECK(empty->fields.empty());
    CHECK(empty->severity.empty());
    // A repeated code: the last one wins.
    auto twice = parse_error_response(bv("Mfirst\0Msecond\0\0"s));
    REQUIRE(twice);
    CHECK(twice->message == "second");
}

TEST_CASE("parse_error_response rejects malformed bodies", "[messages]") {
    CHECK_FALSE(parse_error_response(bv(""s)));                // nothing
    CHECK_FALSE(parse_error_response(bv("SERROR\0"s)));        // missing terminator
    CHECK_FALSE(parse_error_response(bv("SERROR\0C08P01"s)));  // cstring without NUL
    CHECK_FALSE(parse_error_response(bv("S"s)));               // code without value
    CHECK_FALSE(parse_error_response(bv("SERROR\0\0x"s)));     // trailing garbage
    CHECK_FALSE(parse_error_response(bv("SERROR\0\0\0"s)));    // trailing terminator
    std::string out;
    append_error_response(out, {"ERROR", "XX000", "m", "d", "h"});
    const std::string body = body_of(out, 'E');
    for (std::size_t n = 0; n < body.size(); ++n) {
        CHECK_FALSE(parse_error_response(bv(body.substr(0, n))));  // every truncation
    }
}

TEST_CASE("ParameterStatus", "[messages]") {
    std::string out;
    append_parameter_status(out, "client_encoding", "UTF8");
    CHECK(out ==
          "S\0\0\0\x19"
          "client_encoding\0UTF8\0"s);
    auto p = parse_parameter_status(bv(body_of(out, 'S')));
    REQUIRE(p);
    CHECK(p->first == "client_encoding");
    CHECK(p->second == "UTF8");

    out.clear();
    append_parameter_status(out, "application_name", "");
    CHECK(out ==
          "S\0\0\0\x16"
          "application_name\0\0"s);
    auto e = parse_parameter_status(bv(body_of(out, 'S')));
    REQUIRE(e);
    CHECK(e->second.empty());

    CHECK_FALSE(parse_parameter_status(bv(""s)));
    CHECK_FALSE(parse_parameter_status(bv("a"s)));
    CHECK_FALSE(parse_parameter_status(bv("a\0"s)));
    CHECK_FALSE(parse_parameter_status(bv("a\0b"s)));
    CHECK_FALSE(parse_parameter_status(bv("a\0b\0c"s)));
    CHECK_FALSE(parse_parameter_status(bv("a\0b\0\0"s)));
}

TEST_CASE("BackendKeyData", "[messages]") {
    std::string out;
    append_backend_key_data(out, 0x01020304, 0xdeadbeef);
    CHECK(out == "K\0\0\0\x0c\x01\x02\x03\x04\xde\xad\xbe\xef"s);
    auto k = parse_backend_key_data(bv(body_of(out, 'K')));
    REQUIRE(k);
    CHECK(k->first == 0x01020304);
    CHECK(k->second == 0xdeadbeef);

    CHECK_FALSE(parse_backend_key_data(bv(""s)));
    CHECK_FALSE(parse_backend_key_data(bv("\x01\x02\x03\x04\xde\xad\xbe"s)));
    CHECK_FALSE(parse_backend_key_data(bv("\x01\x02\x03\x04\xde\xad\xbe\xef\0"s)));
}

TEST_CASE("ReadyForQuery", "[messages]") {
    for (char status : {'I', 'T', 'E'}) {
        std::string out;
        append_ready_for_query(out, status);
        CHECK(out == "Z\0\0\0\x05"s + status);
        auto z = parse_ready_for_query(bv(body_of(out, 'Z')));
        REQUIRE(z);
        CHECK(*z == status);
    }
    CHECK_FALSE(parse_ready_for_query(bv(""s)));
    CHECK_FALSE(parse_ready_for_query(bv("X"s)));
    CHECK_FALSE(parse_ready_for_query(bv("\0"s)));
    CHECK_FALSE(parse_ready_for_query(bv("II"s)));
}

TEST_CASE("NegotiateProtocolVersion", "[messages]") {
    std::string out;
    append_negotiate_protocol_version(out, 0, {"_pq_.a", "_pq_.bb"});
    CHECK(out == "v\0\0\0\x1b\0\x03\0\0\0\0\0\x02_pq_.a\0_pq_.bb\0"s);
    out.clear();
    append_negotiate_protocol_version(out, 0, {});
    CHECK(out == "v\0\0\0\x0c\0\x03\0\0\0\0\0\0"s);
    out.clear();
    append_negotiate_protocol_version(out, 2, {});
    CHECK(out == "v\0\0\0\x0c\0\x03\0\x02\0\0\0\0"s);
}

TEST_CASE("frontend encoders: Query, Terminate, Sync", "[messages]") {
    std::string out;
    append_query(out, "select 1");
    CHECK(out == "Q\0\0\0\x0dselect 1\0"s);
    auto q = parse_query(bv(body_of(out, 'Q')));
    REQUIRE(q);
    CHECK(*q == "select 1");

    out.clear();
    append_query(out, "a\0b"s);  // cut at the NUL
    CHECK(out ==
          "Q\0\0\0\x06"
          "a\0"s);

    out.clear();
    append_query(out, "");
    CHECK(out == "Q\0\0\0\x05\0"s);
    CHECK(parse_query(bv(body_of(out, 'Q'))) == std::optional<std::string_view>(""));

    out.clear();
    append_terminate(out);
    CHECK(out == "X\0\0\0\x04"s);
    append_sync(out);
    CHECK(out == "X\0\0\0\x04S\0\0\0\x04"s);
}

TEST_CASE("parse_query rejects malformed bodies", "[messages]") {
    CHECK_FALSE(parse_query(bv(""s)));
    CHECK_FALSE(parse_query(bv("select 1"s)));
    CHECK_FALSE(parse_query(bv("select 1\0\0"s)));
    CHECK_FALSE(parse_query(bv("select 1\0x"s)));
    CHECK_FALSE(parse_query(bv("a\0b\0"s)));
}

TEST_CASE("parse_parse", "[messages]") {
    auto p = parse_parse(bv("s1\0select $1, $2\0\0\x02\0\0\0\x17\0\0\0\0"s));
    REQUIRE(p);
    CHECK(p->name == "s1");
    CHECK(p->query == "select $1, $2");
    CHECK(p->param_types == std::vector<std::uint32_t>{23, 0});

    auto unnamed = parse_parse(bv("\0select 1\0\0\0"s));
    REQUIRE(unnamed);
    CHECK(unnamed->name.empty());
    CHECK(unnamed->param_types.empty());

    const std::string good = "s\0q\0\0\x01\xff\xff\xff\xff"s;
    auto high = parse_parse(bv(good));
    REQUIRE(high);
    CHECK(high->param_types == std::vector<std::uint32_t>{0xffffffff});
    for (std::size_t n = 0; n < good.size(); ++n) {
        CHECK_FALSE(parse_parse(bv(good.substr(0, n))));  // every truncation
    }
    CHECK_FALSE(parse_parse(bv(good + "x")));                 // trailing garbage
    CHECK_FALSE(parse_parse(bv("s\0q\0\0\0\0"s)));            // count 0, then garbage
    CHECK_FALSE(parse_parse(bv("s\0q\0\xff\xff"s)));          // 65535 types claimed, none sent
    CHECK_FALSE(parse_parse(bv("s\0q\0\0\x02\0\0\0\x17"s)));  // 2 claimed, 1 sent
}

TEST_CASE("parse_bind_header", "[messages]") {
    const std::string bind = "portal\0stmt\0\0\0\0\0\0\0"s;
    auto b = parse_bind_header(bv(bind));
    REQUIRE(b);
    CHECK(b->portal == "portal");
    CHECK(b->statement == "stmt");
    CHECK(b->size == 12);

    auto prefix = parse_bind_header(bv("\0\0"s));  // a body prefix is enough
    REQUIRE(prefix);
    CHECK(prefix->portal.empty());
    CHECK(prefix->statement.empty());
    CHECK(prefix->size == 2);

    CHECK_FALSE(parse_bind_header(bv(""s)));
    CHECK_FALSE(parse_bind_header(bv("portal"s)));
    CHECK_FALSE(parse_bind_header(bv("portal\0"s)));
    CHECK_FALSE(parse_bind_header(bv("portal\0stmt"s)));
}

TEST_CASE("parse_describe_or_close", "[messages]") {
    auto s = parse_describe_or_close(bv("Sstmt\0"s));
    REQUIRE(s);
    CHECK(s->kind == 'S');
    CHECK(s->name == "stmt");
    auto p = parse_describe_or_close(bv("P\0"s));
    REQUIRE(p);
    CHECK(p->kind == 'P');
    CHECK(p->name.empty());

    CHECK_FALSE(parse_describe_or_close(bv(""s)));
    CHECK_FALSE(parse_describe_or_close(bv("S"s)));
    CHECK_FALSE(parse_describe_or_close(bv("Sstmt"s)));
    CHECK_FALSE(parse_describe_or_close(bv("X\0"s)));
    CHECK_FALSE(parse_describe_or_close(bv("s\0"s)));
    CHECK_FALSE(parse_describe_or_close(bv("Sa\0b"s)));
    CHECK_FALSE(parse_describe_or_close(bv("Sa\0\0"s)));
}

TEST_CASE("parse_execute", "[messages]") {
    auto e = parse_execute(bv("\0\0\0\0\0"s));
    REQUIRE(e);
    CHECK(e->portal.empty());
    CHECK(e->max_rows == 0);
    auto limited = parse_execute(bv("c1\0\0\0\x01\x00"s));
    REQUIRE(limited);
    CHECK(limited->portal == "c1");
    CHECK(limited->max_rows == 256);

    CHECK_FALSE(parse_execute(bv(""s)));
    CHECK_FALSE(parse_execute(bv("c1"s)));
    CHECK_FALSE(parse_execute(bv("c1\0"s)));
    CHECK_FALSE(parse_execute(bv("c1\0\0\0\0"s)));
    CHECK_FALSE(parse_execute(bv("c1\0\0\0\0\0\0"s)));
}

TEST_CASE("parse_notification", "[messages]") {
    auto n = parse_notification(bv("\0\0\x10\0chan\0payload\0"s));
    REQUIRE(n);
    CHECK(n->pid == 0x1000);
    CHECK(n->channel == "chan");
    CHECK(n->payload == "payload");
    auto empty =
        parse_notification(bv("\0\0\0\x01"
                              "c\0\0"s));
    REQUIRE(empty);
    CHECK(empty->payload.empty());

    CHECK_FALSE(parse_notification(bv(""s)));
    CHECK_FALSE(parse_notification(bv("\0\0\x10"s)));
    CHECK_FALSE(parse_notification(bv("\0\0\x10\0chan\0"s)));
    CHECK_FALSE(parse_notification(bv("\0\0\x10\0chan\0payload"s)));
    CHECK_FALSE(parse_notification(bv("\0\0\x10\0chan\0payload\0x"s)));
}

TEST_CASE("parse_authentication_code", "[messages]") {
    CHECK(parse_authentication_code(bv("\0\0\0\0"s)) == 0u);                      // Ok
    CHECK(parse_authentication_code(bv("\0\0\0\x03"s)) == 3u);                    // cleartext
    CHECK(parse_authentication_code(bv("\0\0\0\x05salt"s)) == 5u);                // MD5
    CHECK(parse_authentication_code(bv("\0\0\0\x0aSCRAM-SHA-256\0\0"s)) == 10u);  // SASL
    CHECK_FALSE(parse_authentication_code(bv(""s)));
    CHECK_FALSE(parse_authentication_code(bv("\0\0\0"s)));
}

TEST_CASE("frontend tags and their length limits", "[messages]") {
    const std::string frontend = "BCcdDEfFHPpQSX";
    for (int c = 0; c < 256; ++c) {
        const char tag = char(c);
        const bool expected = tag != '\0' && frontend.find(tag) != std::string::npos;
        CHECK(is_frontend_tag(tag) == expected);
        CHECK((max_frontend_length(tag) != 0) == expected);
    }
    // As SocketBackend (postgres.c) and pq_getmessage: limits of the length field.
    for (char tag : {'Q', 'F', 'P', 'B', 'd'})
        CHECK(max_frontend_length(tag) == 0x3ffffffe);
    for (char tag : {'X', 'S', 'H', 'C', 'D', 'E', 'c', 'f'}) {
        CHECK(max_frontend_length(tag) == 10000);
    }
    CHECK(max_frontend_length('p') == 65535);  // PG_MAX_AUTH_TOKEN_LENGTH (auth.c)
    CHECK(large_message_limit == max_message_length);

    // Used with the framer: a Sync claiming 10001 bytes is refused from its header.
    std::string sync = "S";
    append_u32(sync, 10001);
    CHECK(parse_frame_header(as_bytes(sync), max_frontend_length('S')).status ==
          frame_status::malformed);
    std::string unknown = "x";
    append_u32(unknown, 4);
    CHECK(parse_frame_header(as_bytes(unknown), max_frontend_length('x')).status ==
          frame_status::malformed);
}

TEST_CASE("body parsers survive random bytes", "[messages]") {
    std::mt19937 rng(15);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<std::size_t> size(0, 24);
    std::size_t accepted = 0;
    for (int i = 0; i < 100000; ++i) {
        const std::size_t n = size(rng);
        auto data = std::make_unique<std::byte[]>(n);  // exact size: ASan sees overreads
        for (std::size_t k = 0; k < n; ++k) {
            // Many NULs and letters, so that the parsers get past their first checks.
            const int r = byte(rng);
            data[k] = std::byte(r < 80 ? 0 : r < 160 ? "SPIETV"[r % 6] : r);
        }
        const byte_view body(data.get(), n);
        const auto* begin = reinterpret_cast<const char*>(data.get());
        auto inside = [&](std::string_view s) {
            return s.empty() || (s.data() >= begin && s.data() + s.size() <= begin + n);
        };
        if (auto e = parse_error_response(body)) {
            ++accepted;
            for (const auto& f : e->fields) {
                if (!inside(f.second)) FAIL("error field outside the body at " << i);
            }
        }
        if (auto p = parse_parameter_status(body)) {
            ++accepted;
            if (!inside(p->first) || !inside(p->second)) FAIL("status outside at " << i);
        }
        if (auto p = parse_parse(body)) {
            ++accepted;
            if (!inside(p->name) || !inside(p->query)) FAIL("parse outside at " << i);
        }
        if (auto b = parse_bind_header(body)) {
            ++accepted;
            if (b->size > n || !inside(b->portal) || !inside(b->statement)) {
                FAIL("bind outside at " << i);
            }
        }
        if (auto d = parse_describe_or_close(body)) {
            ++accepted;
            if (!inside(d->name)) FAIL("describe outside at " << i);
        }
        if (auto e = parse_execute(body)) {
            ++accepted;
            if (!inside(e->portal)) FAIL("execute outside at " << i);
        }
        if (auto a = parse_notification(body)) {
            ++accepted;
            if (!inside(a->channel) || !inside(a->payload)) FAIL("notify outside at " << i);
        }
        if (parse_query(body)) ++accepted;
        if (parse_backend_key_data(body)) ++accepted;
        if (parse_ready_for_query(body)) ++accepted;
        if (parse_authentication_code(body)) ++accepted;
    }
    CHECK(accepted > 10000);
}

TEST_CASE("backend message types", "[messages]") {
    for (char t : std::string("123ACcDdEGHIKnNRsStTVvWZ"))
        REQUIRE(pgpilot::protocol::is_backend_tag(t));
    for (char t : std::string("BFfJPpQXxz0\0\xff", 13))
        REQUIRE_FALSE(pgpilot::protocol::is_backend_tag(t));
}

TEST_CASE("ParseComplete", "[messages]") {
    std::string out;
    append_parse_complete(out);
    append_parse_complete(out);
    CHECK(out ==
          "1\0\0\0\x04"
          "1\0\0\0\x04"s);
}
