// Tests of the untagged startup packets (protocol/startup.hpp).
// https://www.postgresql.org/docs/15/protocol-message-formats.html
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/startup.hpp"

using namespace pgpilot::protocol;
using namespace std::string_literals;

namespace {

std::string from_hex(std::string_view hex) {
    std::string out;
    int hi = -1;
    for (char c : hex) {
        int v;
        if (c >= '0' && c <= '9') {
            v = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            v = c - 'a' + 10;
        } else {
            continue;  // spaces
        }
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(char(hi << 4 | v));
            hi = -1;
        }
    }
    return out;
}

/// An untagged packet: length word (counting itself) + `code` + `payload`.
std::string packet(std::uint32_t code, std::string_view payload) {
    std::string s;
    append_u32(s, std::uint32_t(8 + payload.size()));
    append_u32(s, code);
    s.append(payload);
    return s;
}

/// Just a length word and a code, whatever the length says.
std::string raw(std::uint32_t length, std::uint32_t code) {
    std::string s;
    append_u32(s, length);
    append_u32(s, code);
    return s;
}

startup_result parse(std::string_view s) {
    return parse_startup(as_bytes(s));
}

using params_t = std::vector<std::pair<std::string, std::string>>;

// Captured from psql 15.20 (libpq, Debian 12) connecting to a Python listener with
// "host=127.0.0.1 port=N user=alice dbname=db1 application_name=x": first an SSLRequest
// (sslmode=prefer; the listener answered 'N'), then the StartupMessage.
const std::string libpq_ssl_request = from_hex("0000000804d2162f");
const std::string libpq_startup = from_hex(
    "00000034 00030000"
    "7573657200 616c69636500"                  // user alice
    "646174616261736500 64623100"              // database db1
    "6170706c69636174696f6e5f6e616d6500 7800"  // application_name x
    "00");

}  // namespace

TEST_CASE("startup packet captured from libpq", "[startup]") {
    const std::string stream = libpq_ssl_request + libpq_startup;

    startup_result ssl = parse(stream);
    REQUIRE(ssl.st == startup_result::complete);
    CHECK(ssl.packet.kind == startup_kind::ssl_request);
    CHECK(ssl.consumed == 8);

    startup_result r = parse(std::string_view(stream).substr(ssl.consumed));
    REQUIRE(r.st == startup_result::complete);
    CHECK(r.consumed == libpq_startup.size());
    CHECK(r.consumed == 0x34);
    CHECK(r.error.empty());
    CHECK(r.packet.kind == startup_kind::startup);
    CHECK(r.packet.major == 3);
    CHECK(r.packet.minor == 0);
    CHECK(r.packet.params ==
          params_t{{"user", "alice"}, {"database", "db1"}, {"application_name", "x"}});
    REQUIRE(r.packet.find("user") != nullptr);
    CHECK(*r.packet.find("user") == "alice");
    CHECK(*r.packet.find("database") == "db1");
    CHECK(r.packet.find("options") == nullptr);
    CHECK(r.packet.find("") == nullptr);

    // Our encoder writes the same bytes libpq does.
    CHECK(encode_startup_message(r.packet.params) == libpq_startup);
    CHECK(encode_ssl_request() == libpq_ssl_request);
}

TEST_CASE("startup encoders write exact bytes", "[startup]") {
    CHECK(encode_ssl_request() == "\0\0\0\x08\x04\xd2\x16\x2f"s);
    CHECK(encode_gssenc_request() == "\0\0\0\x08\x04\xd2\x16\x30"s);
    CHECK(encode_cancel_request(0x01020304, 0xdeadbeef) ==
          "\0\0\0\x10\x04\xd2\x16\x2e\x01\x02\x03\x04\xde\xad\xbe\xef"s);
    CHECK(encode_startup_message({}) == "\0\0\0\x09\0\x03\0\0\0"s);
    CHECK(encode_startup_message({{"user", "bob"}, {"options", ""}}) ==
          "\0\0\0\x1b\0\x03\0\0user\0bob\0options\0\0\0"s);
    // A cstring cannot hold a NUL: strings are cut there, the packet stays well-formed.
    CHECK(encode_startup_message({{"user\0x"s, "b\0ob"s}}) == "\0\0\0\x10\0\x03\0\0user\0b\0\0"s);
}

TEST_CASE("startup encoders round-trip through parse_startup", "[startup]") {
    const params_t params{
        {"user", "alice"},          {"database", "db1"},         {"options", "-c search_path=x"},
        {"_pq_.compression", "on"}, {"client_encoding", "UTF8"}, {"empty", ""}};
    startup_result r = parse(encode_startup_message(params));
    REQUIRE(r.st == startup_result::complete);
    CHECK(r.packet.kind == startup_kind::startup);
    CHECK(r.packet.major == 3);
    CHECK(r.packet.params == params);  // _pq_ options are kept, in wire order
    CHECK(*r.packet.find("empty") == "");

    startup_result c = parse(encode_cancel_request(4242, 0x80000001));
    REQUIRE(c.st == startup_result::complete);
    CHECK(c.packet.kind == startup_kind::cancel_request);
    CHECK(c.packet.cancel_pid == 4242);
    CHECK(c.packet.cancel_key == 0x80000001);
    CHECK(c.consumed == 16);

    startup_result g = parse(encode_gssenc_request());
    REQUIRE(g.st == startup_result::complete);
    CHECK(g.packet.kind == startup_kind::gssenc_request);
    CHECK(g.consumed == 8);
}

TEST_CASE("startup find returns the last value of a repeated name", "[startup]") {
    startup_result r = parse(encode_startup_message({{"user", "a"}, {"user", "b"}}));
    REQUIRE(r.st == startup_result::complete);
    CHECK(r.packet.params.size() == 2);
    CHECK(*r.packet.find("user") == "b");
}

TEST_CASE("parse_startup fed byte by byte", "[startup]") {
    const std::string stream = libpq_ssl_request + libpq_startup;
    std::string buf;
    std::vector<startup_result> got;
    for (char c : stream) {
        buf.push_back(c);
        startup_result r = parse(buf);
        REQUIRE(r.st != startup_result::malformed);
        if (r.st == startup_result::need_more) {
            CHECK(r.consumed == 0);
            continue;
        }
        REQUIRE(r.consumed == buf.size());
        buf.erase(0, r.consumed);
        got.push_back(std::move(r));
    }
    CHECK(buf.empty());
    REQUIRE(got.size() == 2);
    CHECK(got[0].packet.kind == startup_kind::ssl_request);
    CHECK(got[1].packet.kind == startup_kind::startup);
    CHECK(got[1].packet.params.size() == 3);
}

TEST_CASE("parse_startup with two and three packets in one buffer", "[startup]") {
    const std::string three =
        encode_gssenc_request() + encode_ssl_request() + encode_startup_message({{"user", "u"}});
    std::string_view rest = three;
    std::vector<startup_kind> kinds;
    while (!rest.empty()) {
        startup_result r = parse(rest);
        REQUIRE(r.st == startup_result::complete);
        kinds.push_back(r.packet.kind);
        rest.remove_prefix(r.consumed);
    }
    CHECK(kinds == std::vector{startup_kind::gssenc_request, startup_kind::ssl_request,
                               startup_kind::startup});

    // Two: the cancel request leaves the following bytes alone.
    const std::string two = encode_cancel_request(1, 2) + "garbage";
    startup_result r = parse(two);
    REQUIRE(r.st == startup_result::complete);
    CHECK(r.consumed == 16);
}

TEST_CASE("parse_startup with truncated packets", "[startup]") {
    for (std::size_t n = 0; n < libpq_startup.size(); ++n) {
        startup_result r = parse(std::string_view(libpq_startup).substr(0, n));
        CHECK(r.st == startup_result::need_more);
        CHECK(r.consumed == 0);
    }
    const std::string cancel = encode_cancel_request(7, 9);
    for (std::size_t n = 0; n < cancel.size(); ++n) {
        CHECK(parse(std::string_view(cancel).substr(0, n)).st == startup_result::need_more);
    }
}

TEST_CASE("parse_startup length limits", "[startup]") {
    auto status_of = [](std::uint32_t length) {
        std::string s;
        append_u32(s, length);
        return parse(s).st;  // known from the length word alone
    };
    const std::string bad = "invalid length of startup packet";
    CHECK(status_of(0) == startup_result::malformed);
    CHECK(status_of(3) == startup_result::malformed);
    CHECK(status_of(4) == startup_result::malformed);
    CHECK(status_of(7) == startup_result::malformed);
    CHECK(status_of(8) == startup_result::need_more);
    CHECK(status_of(0x7fffffff) == startup_result::malformed);
    CHECK(status_of(0xffffffff) == startup_result::malformed);
    CHECK(parse(raw(4, protocol_version_3_0)).error == bad);

    // As ProcessStartupPacket: MAX_STARTUP_PACKET_LENGTH bounds the packet after its length
    // word, so the length field may reach 10004.
    CHECK(status_of(max_startup_length + 4) == startup_result::need_more);
    CHECK(status_of(max_startup_length + 5) == startup_result::malformed);
    // The largest packet: 4 + 4 + "user\0" + 9989 bytes + NUL + terminator = 10004.
    const std::string largest = encode_startup_message({{"user", std::string(9989, 'u')}});
    REQUIRE(largest.size() == max_startup_length + 4);
    startup_result r = parse(largest);
    REQUIRE(r.st == startup_result::complete);
    CHECK(r.consumed == max_startup_length + 4);
    CHECK(r.packet.find("user")->size() == 9989);
    const std::string too_big = encode_startup_message({{"user", std::string(9990, 'u')}});
    CHECK(parse(too_big).st == startup_result::malformed);
    CHECK(parse(too_big).error == bad);
}

TEST_CASE("parse_startup cancel request must be 16 bytes", "[startup]") {
    const std::string bad = "invalid length of startup packet";
    startup_result short_cancel = parse(packet(cancel_request_code, "\0\0\0\x01"s));
    CHECK(short_cancel.st == startup_result::malformed);
    CHECK(short_cancel.error == bad);
    startup_result long_cancel = parse(packet(cancel_request_code, std::string(12, '\0')));
    CHECK(long_cancel.st == startup_result::malformed);
    CHECK(long_cancel.error == bad);
    CHECK(parse(packet(cancel_request_code, "")).st == startup_result::malformed);
    CHECK(parse(packet(cancel_request_code, std::string(8, '\x01'))).st ==
          startup_result::complete);
}

TEST_CASE("parse_startup SSL and GSS requests ignore extra bytes, as PostgreSQL does",
          "[startup]") {
    startup_result r = parse(packet(ssl_request_code, "xyzw"));
    REQUIRE(r.st == startup_result::complete);
    CHECK(r.packet.kind == startup_kind::ssl_request);
    CHECK(r.consumed == 12);
    startup_result g = parse(packet(gssenc_request_code, "x"));
    REQUIRE(g.st == startup_result::complete);
    CHECK(g.packet.kind == startup_kind::gssenc_request);
    CHECK(g.consumed == 9);
}

TEST_CASE("parse_startup layout errors", "[startup]") {
    const std::string layout = "invalid startup packet layout: expected terminator as last byte";
    auto error_of = [](std::string_view payload) {
        startup_result r = parse(packet(protocol_version_3_0, payload));
        return r.st == startup_result::malformed ? r.error : "<" + std::to_string(r.st) + ">";
    };
    CHECK(error_of("") == layout);                   // no terminator at all
    CHECK(error_of("user\0alice\0"s) == layout);     // missing final terminator
    CHECK(error_of("user\0alice"s) == layout);       // value without its NUL
    CHECK(error_of("user\0"s) == layout);            // name without a value
    CHECK(error_of("user"s) == layout);              // name without its NUL
    CHECK(error_of("user\0alice\0\0x"s) == layout);  // garbage after terminator
    CHECK(error_of("\0\0"s) == layout);              // terminator not last
    CHECK(error_of("user\0alice\0\0\0"s) == layout);
    // PostgreSQL's loop accepts a lone non-NUL last byte here; we insist on the terminator.
    CHECK(error_of("user\0alice\0x"s) == layout);
    CHECK(error_of("\0"s) == "<1>");  // an empty list is well-formed; "user" is the caller's
    CHECK(error_of("user\0\0\0"s) == "<1>");
}

TEST_CASE("parse_startup leaves other protocol versions to the caller", "[startup]") {
    // 2.0 had a fixed-size packet; PostgreSQL rejects the version before reading it.
    startup_result v2 = parse(packet(2u << 16, std::string(288, '\0')));
    REQUIRE(v2.st == startup_result::complete);
    CHECK(v2.packet.kind == startup_kind::startup);
    CHECK(v2.packet.major == 2);
    CHECK(v2.packet.minor == 0);
    CHECK(v2.packet.params.empty());
    CHECK(v2.consumed == 296);

    startup_result v4 = parse(raw(8, 4u << 16 | 7));
    REQUIRE(v4.st == startup_result::complete);
    CHECK(v4.packet.major == 4);
    CHECK(v4.packet.minor == 7);

    // 3.x with a newer minor is parsed: the caller answers with NegotiateProtocolVersion.
    startup_result v32 = parse(packet(3u << 16 | 2, "user\0u\0_pq_.x\0y\0\0"s));
    REQUIRE(v32.st == startup_result::complete);
    CHECK(v32.packet.major == 3);
    CHECK(v32.packet.minor == 2);
    CHECK(v32.packet.params == params_t{{"user", "u"}, {"_pq_.x", "y"}});

    // Codes near the request codes are versions 1234.x.
    startup_result odd = parse(raw(8, 80877105));
    REQUIRE(odd.st == startup_result::complete);
    CHECK(odd.packet.kind == startup_kind::startup);
    CHECK(odd.packet.major == 1234);
    CHECK(odd.packet.minor == 5681);
}

TEST_CASE("parse_startup survives random bytes", "[startup]") {
    std::mt19937 rng(5432);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> pick(0, 7);
    std::uniform_int_distribution<std::size_t> small(0, 48);
    const std::vector<std::uint32_t> codes{protocol_version_3_0, cancel_request_code,
                                           ssl_request_code,     gssenc_request_code,
                                           3u << 16 | 1,         2u << 16};
    std::size_t complete = 0, malformed = 0, need_more = 0;
    for (int i = 0; i < 100000; ++i) {
        std::string s;
        switch (pick(rng)) {
            case 0:  // pure noise
                for (std::size_t k = small(rng); k > 0; --k)
                    s.push_back(char(byte(rng)));
                break;
            case 1:  // a plausible length, then noise
            case 2: {
                append_u32(s, std::uint32_t(small(rng)));
                append_u32(s, codes[std::size_t(byte(rng)) % codes.size()]);
                for (std::size_t k = small(rng); k > 0; --k)
                    s.push_back(char(byte(rng)));
                break;
            }
            default: {  // a valid packet with a few random byte flips, cut somewhere
                s = pick(rng) < 2 ? encode_cancel_request(1, 2)
                                  : encode_startup_message({{"user", "alice"}, {"x", "y"}});
                for (int k = pick(rng) % 3; k > 0; --k) {
                    s[std::size_t(byte(rng)) % s.size()] = char(byte(rng) % 4 == 0 ? 0 : byte(rng));
                }
                s.resize(std::size_t(byte(rng)) % (s.size() + 8), '\0');
                break;
            }
        }
        // Exactly sized heap copy, so that ASan sees any read past its end.
        auto data = std::make_unique<std::byte[]>(s.size());
        std::memcpy(data.get(), s.data(), s.size());
        startup_result r = parse_startup(byte_view(data.get(), s.size()));
        switch (r.st) {
            case startup_result::complete:
                ++complete;
                if (r.consumed < 8 || r.consumed > s.size() ||
                    r.consumed > max_startup_length + 4) {
                    FAIL("bad consumed " << r.consumed << " at iteration " << i);
                }
                break;
            case startup_result::malformed:
                ++malformed;
                if (r.error.empty()) FAIL("malformed without an error at iteration " << i);
                break;
            case startup_result::need_more:
                ++need_more;
                if (r.consumed != 0) FAIL("need_more consumed bytes at iteration " << i);
                break;
        }
    }
    CHECK(complete > 1000);
    CHECK(malformed > 1000);
    CHECK(need_more > 1000);
}
