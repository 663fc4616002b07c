// Tests of the tagged-message framer (protocol/frame.hpp).
// https://www.postgresql.org/docs/15/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/frame.hpp"

using namespace pgpilot::protocol;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

/// A header with tag `tag` and length field `length`, and no body.
std::string header(char tag, std::uint32_t length) {
    std::string s(1, tag);
    append_u32(s, length);
    return s;
}

/// Splits `stream` into whole frames, as a reader loop would.
std::vector<std::pair<char, std::string>> split_all(std::string_view stream, frame_status& last) {
    std::vector<std::pair<char, std::string>> frames;
    byte_view rest = as_bytes(stream);
    whole_frame f;
    while ((last = next_whole_frame(rest, f)) == frame_status::header) {
        frames.emplace_back(f.tag, std::string(as_chars(f.body)));
        rest = rest.subspan(f.total);
    }
    return frames;
}

}  // namespace

TEST_CASE("integer helpers are big-endian", "[frame]") {
    std::string s;
    append_u32(s, 0x01020304);
    append_u16(s, 0xa0b0);
    append_cstr(s, "hi");
    CHECK(s == "\x01\x02\x03\x04\xa0\xb0hi\0"s);
    CHECK(read_u32(as_bytes(s).data()) == 0x01020304);
    CHECK(read_u16(as_bytes(s).data() + 4) == 0xa0b0);
    std::string high;
    append_u32(high, 0xfffffffe);
    CHECK(high == "\xff\xff\xff\xfe"s);
    CHECK(read_u32(as_bytes(high).data()) == 0xfffffffe);
}

TEST_CASE("parse_frame_header needs five bytes", "[frame]") {
    const std::string sync = "S\0\0\0\x04"s;
    for (std::size_t n = 0; n < header_size; ++n) {
        frame f = parse_frame_header(as_bytes(std::string_view(sync).substr(0, n)));
        CHECK(f.status == frame_status::need_more);
        CHECK(f.need == header_size - n);
    }
    frame f = parse_frame_header(as_bytes(sync));
    CHECK(f.status == frame_status::header);
    CHECK(f.tag == 'S');
    CHECK(f.length == 4);
    CHECK(f.body_size() == 0);
    CHECK(f.total() == 5);
}

TEST_CASE("parse_frame_header length limits", "[frame]") {
    auto status_of = [](std::uint32_t length, std::uint32_t max = max_message_length) {
        return parse_frame_header(as_bytes(header('Q', length)), max).status;
    };
    CHECK(status_of(0) == frame_status::malformed);
    CHECK(status_of(3) == frame_status::malformed);
    CHECK(status_of(4) == frame_status::header);
    CHECK(status_of(0x7fffffff) == frame_status::malformed);
    CHECK(status_of(0xffffffff) == frame_status::malformed);
    // PQ_LARGE_MESSAGE_LIMIT is MaxAllocSize - 1 = 0x3ffffffe (src/include/libpq/libpq.h), and
    // pq_getmessage rejects a length word above it.
    CHECK(max_message_length == 0x3ffffffe);
    CHECK(status_of(0x3ffffffe) == frame_status::header);
    CHECK(status_of(0x3fffffff) == frame_status::malformed);
    // A caller-chosen limit bounds the length field (body + 4).
    CHECK(status_of(10000, 10000) == frame_status::header);
    CHECK(status_of(10001, 10000) == frame_status::malformed);
    CHECK(status_of(3, 0xffffffff) == frame_status::malformed);
    // With the widest limit the sizes still do not wrap.
    frame f = parse_frame_header(as_bytes(header('d', 0xffffffff)), 0xffffffff);
    CHECK(f.status == frame_status::header);
    CHECK(f.total() == std::size_t(0xffffffff) + 1);
    CHECK(f.body_size() == std::size_t(0xffffffff) - 4);
}

TEST_CASE("next_whole_frame over a stream fed byte by byte", "[frame]") {
    const std::string stream = "Q\0\0\0\x0dselect 1\0"s + "X\0\0\0\x04"s;
    std::string buf;
    std::vector<std::pair<char, std::string>> got;
    for (char c : stream) {
        buf.push_back(c);
        whole_frame f;
        frame_status st = next_whole_frame(as_bytes(buf), f);
        REQUIRE(st != frame_status::malformed);
        if (st == frame_status::header) {
            REQUIRE(f.total == buf.size());  // complete exactly when its last byte arrives
            got.emplace_back(f.tag, std::string(as_chars(f.body)));
            buf.erase(0, f.total);
        }
    }
    CHECK(buf.empty());
    REQUIRE(got.size() == 2);
    CHECK(got[0] == std::pair{'Q', "select 1\0"s});
    CHECK(got[1] == std::pair{'X', ""s});
}

TEST_CASE("next_whole_frame with several frames in one buffer", "[frame]") {
    const std::string parse = "P\0\0\0\x0e\0select\0\0\0"s;
    const std::string bind = "B\0\0\0\x0c\0\0\0\0\0\0\0\0"s;
    const std::string sync = "S\0\0\0\x04"s;
    frame_status last;

    auto two = split_all(parse + sync, last);
    CHECK(last == frame_status::need_more);
    REQUIRE(two.size() == 2);
    CHECK(two[0].first == 'P');
    CHECK(two[0].second == "\0select\0\0\0"s);
    CHECK(two[1].first == 'S');

    auto three = split_all(parse + bind + sync, last);
    CHECK(last == frame_status::need_more);
    REQUIRE(three.size() == 3);
    CHECK(three[1].first == 'B');
    CHECK(three[1].second.size() == 8);
    CHECK(three[2].first == 'S');

    // A bad length after good frames stops the split there.
    auto bad = split_all(parse + header('Q', 2) + sync, last);
    CHECK(last == frame_status::malformed);
    CHECK(bad.size() == 1);
}

TEST_CASE("next_whole_frame with truncated frames", "[frame]") {
    const std::string query = "Q\0\0\0\x0dselect 1\0"s;
    for (std::size_t n = 0; n < query.size(); ++n) {
        whole_frame f;
        CHECK(next_whole_frame(as_bytes(std::string_view(query).substr(0, n)), f) ==
              frame_status::need_more);
        CHECK(f.total == 0);
    }
    // The header alone is enough to learn the frame is too long for its type.
    whole_frame f;
    CHECK(next_whole_frame(as_bytes(header('S', 10001)), f, 10000) == frame_status::malformed);
    // A huge but legal length is just need_more: the body is never allocated up front.
    CHECK(next_whole_frame(as_bytes(header('d', 0x3ffffffe)), f) == frame_status::need_more);
}

TEST_CASE("framer survives random bytes", "[frame]") {
    std::mt19937 rng(20240601);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<std::size_t> size(0, 64);
    std::uniform_int_distribution<int> coin(0, 3);
    std::size_t frames = 0, malformed = 0;
    for (int i = 0; i < 100000; ++i) {
        const std::size_t n = size(rng);
        // Exactly sized heap buffer, so that ASan sees any read past its end.
        auto data = std::make_unique<std::byte[]>(n == 0 ? 1 : n);
        for (std::size_t k = 0; k < n; ++k)
            data[k] = std::byte(byte(rng));
        // Often plant a plausible small length so that whole frames are found too.
        if (n >= 5 && coin(rng) != 0) {
            const std::uint32_t len = std::uint32_t(size(rng));
            data[1] = std::byte(0);
            data[2] = std::byte(0);
            data[3] = std::byte(len >> 8);
            data[4] = std::byte(len);
        }
        byte_view rest(data.get(), n);
        const std::uint32_t max = coin(rng) == 0 ? 20 : max_message_length;
        for (;;) {
            whole_frame f;
            frame_status st = next_whole_frame(rest, f, max);
            if (st == frame_status::need_more) break;
            if (st == frame_status::malformed) {
                ++malformed;
                break;
            }
            ++frames;
            if (f.total > rest.size() || f.total < header_size ||
                f.body.size() != f.total - header_size ||
                f.body.data() != rest.data() + header_size || f.total - 1 > max) {
                FAIL("frame outside its buffer at iteration " << i);
            }
            rest = rest.subspan(f.total);
        }
    }
    CHECK(frames > 10000);
    CHECK(malformed > 1000);
}
