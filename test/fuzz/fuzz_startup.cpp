// Fuzzes protocol::parse_startup (protocol/startup.hpp).
//
// Input: the first bytes a client sends. Up to four packets are parsed one after the other (a
// client may send SSLRequest/GSSENCRequest, get 'N', then send its StartupMessage on the same
// stream). Each result is checked against PostgreSQL's rules written out independently, and a
// complete packet is re-encoded with the encoders, which must give the same bytes back.

#include <string>
#include <string_view>

#include "protocol/startup.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::protocol;

namespace {

void check(const startup_result& r, byte_view buf) {
    if (buf.size() < 4) {
        FUZZ_CHECK(r.st == startup_result::need_more);
        return;
    }
    const std::uint32_t length = read_u32(buf.data());
    if (length < min_startup_length || length > max_startup_length + 4) {
        FUZZ_CHECK(r.st == startup_result::malformed);
        FUZZ_CHECK(r.error == "invalid length of startup packet");
        return;
    }
    if (buf.size() < length) {
        FUZZ_CHECK(r.st == startup_result::need_more);
        return;
    }
    const std::uint32_t code = read_u32(buf.data() + 4);
    if (r.st == startup_result::malformed) {
        FUZZ_CHECK(!r.error.empty());
        FUZZ_CHECK(code == cancel_request_code || code >> 16 == 3);
        if (code == cancel_request_code) FUZZ_CHECK(length != 16);
        return;
    }
    FUZZ_CHECK(r.st == startup_result::complete);
    FUZZ_CHECK(r.consumed == length);
    const std::string_view packet = as_chars(buf.first(length));
    const startup_packet& p = r.packet;
    switch (code) {
        case cancel_request_code:
            FUZZ_CHECK(p.kind == startup_kind::cancel_request && length == 16);
            FUZZ_CHECK(encode_cancel_request(p.cancel_pid, p.cancel_key) == packet);
            return;
        case ssl_request_code:
            FUZZ_CHECK(p.kind == startup_kind::ssl_request);
            FUZZ_CHECK(packet.substr(4, 4) == encode_ssl_request().substr(4));
            return;
        case gssenc_request_code:
            FUZZ_CHECK(p.kind == startup_kind::gssenc_request);
            FUZZ_CHECK(packet.substr(4, 4) == encode_gssenc_request().substr(4));
            return;
        default:
            break;
    }
    FUZZ_CHECK(p.kind == startup_kind::startup);
    FUZZ_CHECK((std::uint32_t(p.major) << 16 | p.minor) == code);
    if (p.major != 3) {
        FUZZ_CHECK(p.params.empty());
        return;
    }
    // name\0value\0...\0 is canonical: encoding the parameters gives the packet back (with the
    // version patched in: the encoder always writes 3.0).
    std::string re = encode_startup_message(p.params);
    FUZZ_CHECK(re.size() == packet.size());
    re.replace(4, 4, packet.substr(4, 4));
    FUZZ_CHECK(re == packet);
    for (const auto& [name, value] : p.params) {
        FUZZ_CHECK(name.find('\0') == std::string::npos && value.find('\0') == std::string::npos);
        FUZZ_CHECK(!name.empty());  // an empty name would have been the terminator
        const std::string* found = p.find(name);
        FUZZ_CHECK(found != nullptr);
        // The last value wins.
        const std::string* last = nullptr;
        for (const auto& [n, v] : p.params)
            if (n == name) last = &v;
        FUZZ_CHECK(found == last);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    byte_view buf = pgpilot::fuzz::bytes(data, size);
    for (int i = 0; i < 4; ++i) {
        startup_result r = parse_startup(buf);
        check(r, buf);
        if (r.st != startup_result::complete) break;
        // Bytes after the packet do not matter, and no prefix of it is complete.
        byte_view packet = buf.first(r.consumed);
        startup_result alone = parse_startup(packet);
        FUZZ_CHECK(alone.st == startup_result::complete && alone.consumed == r.consumed);
        FUZZ_CHECK(alone.packet.params == r.packet.params);
        FUZZ_CHECK(parse_startup(packet.first(packet.size() - 1)).st == startup_result::need_more);
        buf = buf.subspan(r.consumed);
    }
    return 0;
}
