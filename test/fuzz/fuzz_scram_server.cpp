// Fuzzes the server side of authentication: protocol::client_authenticator (every auth_method,
// every kind of stored secret) and protocol::scram_server on its own.
//
// Input: one flags byte, then a stream of frontend frames (tag, length, body) as a client sends
// them after its startup packet; a captured libpq session works as is.
//   bits 0-1  auth_method: trust, password, md5, scram_sha_256
//   bits 2-4  stored secret of user "alice" (see secrets() below)
//   bit 5     fix the nonce: rewrite r= of the client-final-message to the nonce the server
//             chose (random per exchange, so the fuzzer could never guess it)
//   bit 6     fix the answer: rewrite p= of the client-final-message to the proof for password
//             "pencil", the md5 PasswordMessage likewise, the cleartext one to "pencil"
//   bit 7     scram_server alone: the first frame body is the client-first-message, the next
//             ones client-final-messages (no 'p' wrapping)
// The fix bits let the fuzzer reach the success paths. The checks: success only with the right
// password and a secret that allows it, a failure is final, every message sent is a well-formed
// Authentication frame, the server signature is the right one.

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "protocol/auth.hpp"
#include "protocol/md5.hpp"
#include "protocol/scram.hpp"
#include "protocol/sqlstate.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::protocol;
using pgpilot::fuzz::join_fields;
using pgpilot::fuzz::scram_fields;

namespace {

constexpr std::string_view user = "alice";
constexpr std::string_view password = "pencil";
constexpr std::string_view server_nonce = "3rfcNHYJY1ZVvWVs7j";

struct secret_case {
    std::optional<std::string> stored;         ///< nullopt: unknown user
    std::optional<std::string> true_password;  ///< what the client must know, if anything
};

scram_verifier pencil_verifier() {
    static const scram_verifier v = make_scram_verifier(password, "fuzz-salt-16byte", 64);
    return v;
}
scram_verifier other_verifier() {
    static const scram_verifier v = make_scram_verifier("other", "another-salt", 64);
    return v;
}

const std::array<secret_case, 8>& secrets() {
    static const std::array<secret_case, 8> cases{{
        {std::nullopt, std::nullopt},                                       // 0 unknown user
        {std::string(), std::nullopt},                                      // 1 empty = none
        {std::string(password), std::string(password)},                     // 2 plain
        {md5_password_hash(password, user), std::string(password)},         // 3 md5
        {encode_scram_verifier(pencil_verifier()), std::string(password)},  // 4 SCRAM
        {std::string("pen\0cil", 7), std::string("pen\0cil", 7)},           // 5 plain with a NUL
        {"MD5" + std::string(32, 'A'), "MD5" + std::string(32, 'A')},       // 6 plain, md5-like
        {encode_scram_verifier(other_verifier()), std::string("other")},    // 7 SCRAM, other
    }};
    return cases;
}

/// SaltedPassword for "pencil", cached (the salts and counts the servers use are few).
const scram_key& pencil_salted(const std::string& salt, int iterations) {
    static std::map<std::pair<std::string, int>, scram_key> cache;
    auto key = std::make_pair(salt, iterations);
    auto it = cache.find(key);
    if (it == cache.end())
        it = cache.emplace(key, scram_salted_password(password, salt, iterations)).first;
    return it->second;
}

/// What a server-first-message tells: the combined nonce, the salt and the iteration count.
struct server_first_info {
    std::string text, nonce, salt;
    int iterations = 0;
};
server_first_info parse_server_first(const std::string& text) {
    server_first_info info;
    info.text = text;
    auto fields = scram_fields(text);
    FUZZ_CHECK(fields.size() == 3);
    FUZZ_CHECK(fields[0].substr(0, 2) == "r=" && fields[1].substr(0, 2) == "s=" &&
               fields[2].substr(0, 2) == "i=");
    info.nonce = fields[0].substr(2);
    auto salt = base64_decode(fields[1].substr(2));
    FUZZ_CHECK(salt.has_value());
    info.salt = *salt;
    info.iterations = std::stoi(fields[2].substr(2));
    return info;
}

/// The bare part of a client-first-message: after the gs2 header "x,,".
std::string client_first_bare(std::string_view data) {
    return data.size() >= 3 ? std::string(data.substr(3)) : std::string();
}

/// Applies the fix bits to a client-final-message: the rewritten message.
std::string fix_client_final(const std::string& msg, const std::string& bare,
                             const server_first_info& sf, bool fix_nonce, bool fix_proof) {
    auto fields = scram_fields(msg);
    if (fix_nonce && fields.size() >= 2 && fields[1].substr(0, 2) == "r=")
        fields[1] = "r=" + sf.nonce;
    if (fix_proof && fields.size() >= 2 && fields.back().substr(0, 2) == "p=") {
        std::vector<std::string> without(fields.begin(), fields.end() - 1);
        std::string auth_message = bare + "," + sf.text + "," + join_fields(without);
        auto proof = compute_scram_proof(pencil_salted(sf.salt, sf.iterations), auth_message);
        fields.back() = "p=" + base64_encode(std::string_view(
                                   reinterpret_cast<const char*>(proof.client_proof.data()),
                                   proof.client_proof.size()));
    }
    return join_fields(fields);
}

/// The ServerSignature a correct server sends for this exchange, for password "pencil".
std::string expected_server_final(const std::string& bare, const server_first_info& sf,
                                  const std::string& client_final) {
    auto fields = scram_fields(client_final);
    std::vector<std::string> without(fields.begin(), fields.end() - 1);
    std::string auth_message = bare + "," + sf.text + "," + join_fields(without);
    auto proof = compute_scram_proof(pencil_salted(sf.salt, sf.iterations), auth_message);
    return "v=" + base64_encode(
                      std::string_view(reinterpret_cast<const char*>(proof.server_signature.data()),
                                       proof.server_signature.size()));
}

/// True if the p= of `client_final` is the proof for "pencil".
bool proof_is_pencil(const std::string& bare, const server_first_info& sf,
                     const std::string& client_final) {
    auto fields = scram_fields(client_final);
    if (fields.back().substr(0, 2) != "p=") return false;
    std::vector<std::string> without(fields.begin(), fields.end() - 1);
    std::string auth_message = bare + "," + sf.text + "," + join_fields(without);
    auto proof = compute_scram_proof(pencil_salted(sf.salt, sf.iterations), auth_message);
    auto sent = base64_decode(fields.back().substr(2));
    return sent && sent->size() == 32 &&
           std::equal(sent->begin(), sent->end(), proof.client_proof.begin(),
                      [](char a, unsigned char b) { return static_cast<unsigned char>(a) == b; });
}

void fuzz_scram_server(int variant, bool fix_nonce, bool fix_proof,
                       const std::vector<pgpilot::fuzz::raw_frame>& frames) {
    const bool pencil = variant == 2 || variant == 4;
    const bool doomed = !pencil && variant != 7;
    scram_verifier v = pencil         ? pencil_verifier()
                       : variant == 7 ? other_verifier()
                                      : mock_scram_verifier(user);
    const std::string salt = v.salt;
    const int iterations = v.iterations;
    scram_server server(std::move(v), std::string(server_nonce), doomed);

    bool finished = false;  // failed or succeeded: every later message must fail
    std::string bare;
    std::optional<server_first_info> sf;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const std::string& body = frames[i].body;
        scram_server::result r;
        if (i == 0) {
            r = server.on_client_first(body);
            if (r.ok) {
                bare = client_first_bare(body);
                auto nonce = scram_fields(bare).at(1);
                FUZZ_CHECK(nonce.substr(0, 2) == "r=");
                FUZZ_CHECK(r.message == "r=" + nonce.substr(2) + std::string(server_nonce) +
                                            ",s=" + base64_encode(salt) +
                                            ",i=" + std::to_string(iterations));
                sf = parse_server_first(r.message);
            } else {
                FUZZ_CHECK(server.protocol_violation());
            }
        } else {
            std::string msg = body;
            if (sf) msg = fix_client_final(msg, bare, *sf, fix_nonce, fix_proof);
            r = server.on_client_final(msg);
            if (r.ok) {
                FUZZ_CHECK(!finished && sf && pencil && !doomed);
                FUZZ_CHECK(proof_is_pencil(bare, *sf, msg));
                FUZZ_CHECK(r.message == expected_server_final(bare, *sf, msg));
                FUZZ_TRACE("scram_server: proof accepted");
            }
        }
        if (finished) FUZZ_CHECK(!r.ok);
        if (!r.ok) {
            FUZZ_CHECK(!r.error.empty() && r.message.empty());
            finished = true;
        } else if (i > 0) {
            finished = true;
        }
    }
}

/// Checks the frames the authenticator wants to send and returns the last Authentication code
/// and its payload.
std::pair<std::uint32_t, std::string> check_sent(const std::string& to_send) {
    pgpilot::fuzz::raw_frame last{'?', {}};
    auto frames = pgpilot::fuzz::split_frames(as_bytes(to_send), max_message_length);
    std::size_t total = 0;
    for (const auto& f : frames) {
        FUZZ_CHECK(f.tag == 'R' && f.body.size() >= 4);
        total += header_size + f.body.size();
        last = f;
    }
    FUZZ_CHECK(total == to_send.size() && !frames.empty());
    return {read_u32(reinterpret_cast<const std::byte*>(last.body.data())), last.body.substr(4)};
}

void fuzz_client_authenticator(auth_method method, int variant, bool fix_nonce, bool fix_proof,
                               const std::vector<pgpilot::fuzz::raw_frame>& frames) {
    const secret_case& sc = secrets()[std::size_t(variant)];
    client_authenticator auth(method, std::string(user), sc.stored);
    auto s = auth.start();

    enum class waiting { nothing, password, md5, sasl_initial, client_first, client_final };
    waiting w = waiting::nothing;
    std::array<unsigned char, 4> md5_salt{};
    std::string bare;
    std::optional<server_first_info> sf;
    bool finished = false;
    bool fixed_scram = false;  // the last client-final-message had both fixes applied

    auto observe = [&](const client_authenticator::step& st) {
        if (st.k == client_authenticator::step::fail) {
            FUZZ_CHECK(st.to_send.empty() && !st.error.empty());
            auto code = auth.failure_sqlstate();
            FUZZ_CHECK(code == sqlstate::invalid_password || code == sqlstate::protocol_violation ||
                       code == sqlstate::feature_not_supported);
            finished = true;
            return;
        }
        FUZZ_CHECK(!finished);
        auto [code, payload] = check_sent(st.to_send);
        if (st.k == client_authenticator::step::send_and_done_ok) {
            FUZZ_CHECK(code == 0 && payload.empty());
            finished = true;
            return;
        }
        switch (code) {
            case 3:
                w = waiting::password;
                break;
            case 5:
                FUZZ_CHECK(payload.size() == 4);
                std::copy(payload.begin(), payload.end(), md5_salt.begin());
                w = waiting::md5;
                break;
            case 10:
                FUZZ_CHECK(payload == std::string(scram_mechanism) + '\0' + '\0');
                w = waiting::sasl_initial;
                break;
            case 11:
                if (payload.empty()) {
                    w = waiting::client_first;
                } else {
                    sf = parse_server_first(payload);
                    FUZZ_CHECK(sf->nonce.size() > 18);
                    w = waiting::client_final;
                }
                break;
            default:
                FUZZ_CHECK(code == 3 || code == 5 || code == 10 || code == 11);
        }
    };

    observe(s);
    if (method == auth_method::trust)
        FUZZ_CHECK(s.k == client_authenticator::step::send_and_done_ok);

    for (const auto& f : frames) {
        const bool was_finished = finished;
        std::string body = f.body;
        fixed_scram = false;
        switch (w) {
            case waiting::password:
                if (fix_proof) body = std::string(password) + '\0';
                break;
            case waiting::md5:
                if (fix_proof)
                    body = md5_salted_response_from_password(password, user, md5_salt) + '\0';
                break;
            case waiting::sasl_initial: {
                // mechanism\0, Int32 length, client-first-message
                auto nul = body.find('\0');
                if (nul != std::string::npos && body.size() >= nul + 5)
                    bare = client_first_bare(std::string_view(body).substr(nul + 5));
                break;
            }
            case waiting::client_first:
                bare = client_first_bare(body);
                break;
            case waiting::client_final:
                body = fix_client_final(body, bare, *sf, fix_nonce, fix_proof);
                fixed_scram = fix_nonce && fix_proof;
                break;
            case waiting::nothing:
                break;
        }
        const waiting was = w;
        s = auth.on_message(f.tag, as_bytes(body));
        observe(s);
        if (was_finished) {
            FUZZ_CHECK(s.k == client_authenticator::step::fail);
            FUZZ_CHECK(auth.failure_sqlstate() == sqlstate::protocol_violation);
            continue;
        }
        const bool ok = s.k == client_authenticator::step::send_and_done_ok;
        const bool ok_expected_if_pencil =
            (method == auth_method::md5 && (variant == 2 || variant == 3 || variant == 4)) ||
            (method == auth_method::scram_sha_256 && (variant == 2 || variant == 4));
        switch (was) {
            case waiting::password: {
                // Exactly right iff the PasswordMessage is the true password.
                bool right = f.tag == 'p' && sc.true_password && !sc.true_password->empty() &&
                             body == *sc.true_password + '\0' &&
                             sc.true_password->find('\0') == std::string::npos;
                FUZZ_CHECK(ok == right);
                if (ok) FUZZ_CHECK(auth.cleartext_password() == sc.true_password);
                break;
            }
            case waiting::md5:
                if (ok) FUZZ_CHECK(fix_proof && ok_expected_if_pencil);
                if (fix_proof && f.tag == 'p') FUZZ_CHECK(ok == ok_expected_if_pencil);
                break;
            case waiting::client_final:
                if (ok) {
                    FUZZ_CHECK(fixed_scram && ok_expected_if_pencil);
                    auto [code, payload] = check_sent(s.to_send.substr(0, s.to_send.size() - 9));
                    FUZZ_CHECK(code == 12 && payload == expected_server_final(bare, *sf, body));
                }
                break;
            default:
                FUZZ_CHECK(!ok);
        }
        if (ok) FUZZ_CHECK(!auth.cleartext_password() || method == auth_method::password);
        FUZZ_TRACE("client_authenticator: method %d secret %d: %s", int(method), variant,
                   ok                                        ? "ok"
                   : s.k == client_authenticator::step::fail ? s.error.c_str()
                                                             : "continue");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t flags = data[0];
    const auto method = auth_method(flags & 3);
    const int variant = (flags >> 2) & 7;
    const bool fix_nonce = (flags & 0x20) != 0;
    const bool fix_proof = (flags & 0x40) != 0;
    auto frames = pgpilot::fuzz::split_frames(pgpilot::fuzz::bytes(data + 1, size - 1));
    if (frames.size() > 8) frames.resize(8);
    if (flags & 0x80)
        fuzz_scram_server(variant, fix_nonce, fix_proof, frames);
    else
        fuzz_client_authenticator(method, variant, fix_nonce, fix_proof, frames);
    return 0;
}
