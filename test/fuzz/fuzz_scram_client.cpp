// Fuzzes the client side of authentication toward a backend: protocol::backend_authenticator fed
// Authentication ('R') bodies, and protocol::scram_client on its own.
//
// Input: one flags byte, then a stream of backend frames (tag, length, body) as a server sends
// them; a captured PostgreSQL session works as is. Frames other than 'R' are skipped.
//   bits 0-2  configured backend password (see passwords() below)
//   bit 3     fix the nonce: insert the client's (random) nonce after "r=" of the
//             server-first-message, so it extends the client nonce as it must
//   bit 4     fix the signature: replace the server-final-message by the right "v=..."
//   bit 5     scram_client alone: the first frame body is the server-first-message, the next ones
//             server-final-messages (no 'R' wrapping)
// Checks: what is sent is well-formed and is the right answer for the configured password, a
// failure is final, AuthenticationOk after SCRAM only once the server signature verified, and the
// signature verifies only when it is the right one.
//
// Iteration counts (docs/fuzzing.md, F1, fixed): a server-first-message with a count above
// scram_max_iterations must fail (before any PBKDF2 runs). Inputs with a count above
// PostgreSQL's default 4096 but within the bound are skipped: they are valid, but each would cost
// up to 100000 iterations (about 80 ms uninstrumented) and slow the fuzzer down for nothing new.

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "protocol/auth.hpp"
#include "protocol/md5.hpp"
#include "protocol/scram.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::protocol;
using pgpilot::fuzz::join_fields;
using pgpilot::fuzz::scram_fields;

namespace {

constexpr std::string_view user = "alice";
constexpr long long fast_iterations = scram_default_iterations;  // see the note at the top

const std::array<std::optional<std::string>, 8>& passwords() {
    static const std::array<std::optional<std::string>, 8> cases{{
        std::nullopt,                                                        // 0 none
        std::string(),                                                       // 1 empty = none
        std::string("pencil"),                                               // 2 plain
        md5_password_hash("pencil", user),                                   // 3 md5 hash
        encode_scram_verifier(make_scram_verifier("pencil", "salt", 4096)),  // 4 SCRAM secret
        std::string("pen\0cil", 7),                                          // 5 with a NUL
        "MD5" + std::string(32, 'A'),                                        // 6 plain, md5-like
        std::string(1000, 'x'),                                              // 7 long
    }};
    return cases;
}

/// What the i= attributes of a server-first-message ask for (see the note at the top).
enum class iterations_class { fast, slow, refused };
iterations_class classify_iterations(std::string_view msg) {
    iterations_class worst = iterations_class::fast;
    for (const auto& f : scram_fields(msg)) {
        if (f.size() < 3 || f[0] != 'i' || f[1] != '=') continue;
        std::string digits = f.substr(2);
        if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            continue;
        digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
        if (digits.size() > 12 || std::stoll("0" + digits) > scram_max_iterations)
            return iterations_class::refused;  // wherever it is, the message must fail
        if (std::stoll("0" + digits) > fast_iterations) worst = iterations_class::slow;
    }
    return worst;
}

/// scram_salted_password, cached: the harness recomputes what the code under test computed.
const scram_key& salted(const std::string& password, const std::string& salt, int iterations) {
    static std::map<std::tuple<std::string, std::string, int>, scram_key> cache;
    if (cache.size() > 1000) cache.clear();
    auto key = std::make_tuple(password, salt, iterations);
    auto it = cache.find(key);
    if (it == cache.end())
        it = cache.emplace(key, scram_salted_password(password, salt, iterations)).first;
    return it->second;
}

std::string b64(const scram_key& k) {
    return base64_encode(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
}

/// One SCRAM exchange as the harness follows it, to compute what a correct client sends and
/// what a correct server answers.
struct exchange {
    std::string password;
    std::string nonce;                          ///< client nonce
    std::string bare;                           ///< client-first-message-bare
    std::optional<std::string> expected_final;  ///< "v=..." once the client-final is known

    /// Checks the client-first-message the client produced.
    void client_first(const std::string& first) {
        FUZZ_CHECK(first.substr(0, 8) == "n,,n=,r=");
        nonce = first.substr(8);
        FUZZ_CHECK(nonce.size() == 24);  // 18 random bytes, base64
        bare = first.substr(3);
    }
    /// Fix bit 3 and skip slow counts; nullopt = skip this input.
    std::optional<std::string> server_first(std::string msg, bool fix_nonce) const {
        if (fix_nonce && msg.substr(0, 2) == "r=") msg.insert(2, nonce);
        if (classify_iterations(msg) == iterations_class::slow) return std::nullopt;
        return msg;
    }
    /// Checks the client-final-message sent for `server_first` and remembers the expected
    /// server-final-message.
    void client_final(const std::string& server_first, const std::string& final_msg) {
        auto sf = scram_fields(server_first);
        FUZZ_CHECK(sf.size() == 3);
        const std::string combined = sf[0].substr(2);
        FUZZ_CHECK(combined.substr(0, nonce.size()) == nonce);
        auto salt = base64_decode(sf[1].substr(2));
        FUZZ_CHECK(salt.has_value());
        const int iterations = std::stoi(sf[2].substr(2));
        const std::string without_proof = "c=biws,r=" + combined;
        auto proof = compute_scram_proof(salted(password, *salt, iterations),
                                         bare + "," + server_first + "," + without_proof);
        FUZZ_CHECK(final_msg == without_proof + ",p=" + b64(proof.client_proof));
        expected_final = "v=" + b64(proof.server_signature);
    }
    /// True if `final_msg` carries the right server signature (any base64 spelling of it).
    bool right_signature(const std::string& final_msg) const {
        if (!expected_final || final_msg.substr(0, 2) != "v=") return false;
        auto got = base64_decode(final_msg.substr(2));
        auto want = base64_decode(expected_final->substr(2));
        return got && *got == *want;
    }
};

std::string with_code(std::uint32_t code, std::string_view payload) {
    std::string out;
    append_u32(out, code);
    out.append(payload);
    return out;
}

/// The 'p' bodies in `to_send`, checking the framing.
std::vector<std::string> sent_bodies(const std::string& to_send) {
    auto frames = pgpilot::fuzz::split_frames(as_bytes(to_send));
    std::vector<std::string> bodies;
    std::size_t total = 0;
    for (auto& f : frames) {
        FUZZ_CHECK(f.tag == 'p');
        total += header_size + f.body.size();
        bodies.push_back(std::move(f.body));
    }
    FUZZ_CHECK(total == to_send.size() && bodies.size() == 1);
    return bodies;
}

void fuzz_backend_authenticator(int variant, bool fix_nonce, bool fix_signature,
                                const std::vector<pgpilot::fuzz::raw_frame>& frames) {
    const std::optional<std::string>& password = passwords()[std::size_t(variant)];
    backend_authenticator auth(std::string(user), password);
    const bool have = password && !password->empty();
    const bool plain = have && password->find('\0') == std::string::npos &&
                       classify_secret(*password) == secret_kind::plain;
    const bool md5 = have && is_md5_hash(*password);

    exchange ex{plain ? *password : std::string(), {}, {}, {}};
    bool failed = false, sasl = false, verified = false;
    std::optional<std::string> last_server_first;
    for (const auto& f : frames) {
        if (f.tag != 'R') continue;
        std::string body = f.body;
        std::optional<std::uint32_t> code;
        if (body.size() >= 4) code = read_u32(reinterpret_cast<const std::byte*>(body.data()));
        if (code == 11u) {
            std::string payload = body.substr(4);
            if (sasl) {
                auto fixed = ex.server_first(payload, fix_nonce);
                if (!fixed) return;
                payload = *fixed;
            } else if (classify_iterations(payload) == iterations_class::slow) {
                return;
            }
            last_server_first = payload;
            body = with_code(11, payload);
        }
        if (code == 12u && fix_signature && ex.expected_final)
            body = with_code(12, *ex.expected_final);

        auto s = auth.on_authentication(as_bytes(body));
        FUZZ_TRACE("backend_authenticator: password %d, code %d: %d %s", variant,
                   code ? int(*code) : -1, int(s.k), s.error.c_str());
        if (failed) FUZZ_CHECK(s.k == backend_authenticator::step::fail);
        if (code == 11u && classify_iterations(body.substr(4)) == iterations_class::refused)
            FUZZ_CHECK(s.k == backend_authenticator::step::fail);
        switch (s.k) {
            case backend_authenticator::step::fail:
                FUZZ_CHECK(s.to_send.empty() && !s.error.empty());
                failed = true;
                break;
            case backend_authenticator::step::ok:
                FUZZ_CHECK(code == 0u && body.size() == 4);
                FUZZ_CHECK(!sasl || verified);
                break;
            case backend_authenticator::step::none:
                FUZZ_CHECK(code == 12u && sasl && !verified);
                FUZZ_CHECK(ex.right_signature(body.substr(4)));
                verified = true;
                break;
            case backend_authenticator::step::send: {
                const std::string sent = sent_bodies(s.to_send).at(0);
                FUZZ_CHECK(code.has_value());
                if (code == 3u) {
                    FUZZ_CHECK(have && !md5 && plain);
                    FUZZ_CHECK(sent == *password + '\0');
                } else if (code == 5u) {
                    FUZZ_CHECK(have && (md5 || plain) && body.size() == 8);
                    std::array<unsigned char, 4> salt{};
                    std::copy(body.begin() + 4, body.end(), salt.begin());
                    FUZZ_CHECK(sent ==
                               (md5 ? md5_salted_response_from_hash(*password, salt)
                                    : md5_salted_response_from_password(*password, user, salt)) +
                                   '\0');
                } else if (code == 10u) {
                    FUZZ_CHECK(plain && !sasl);
                    const std::string prefix = std::string(scram_mechanism) + '\0';
                    FUZZ_CHECK(sent.substr(0, prefix.size()) == prefix);
                    const std::string first = sent.substr(prefix.size() + 4);
                    FUZZ_CHECK(read_u32(reinterpret_cast<const std::byte*>(sent.data()) +
                                        prefix.size()) == first.size());
                    ex.client_first(first);
                    sasl = true;
                } else {
                    FUZZ_CHECK(code == 11u && sasl && !ex.expected_final);
                    ex.client_final(*last_server_first, sent);
                }
                break;
            }
        }
    }
}

void fuzz_scram_client(int variant, bool fix_nonce, bool fix_signature,
                       const std::vector<pgpilot::fuzz::raw_frame>& frames) {
    const std::string password = passwords()[std::size_t(variant)].value_or("");
    scram_client client(password);
    exchange ex{password, {}, {}, {}};
    ex.client_first(client.client_first());

    bool finished = false;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        scram_client::result r;
        if (i == 0) {
            auto msg = ex.server_first(frames[i].body, fix_nonce);
            if (!msg) return;
            r = client.on_server_first(*msg);
            if (classify_iterations(*msg) == iterations_class::refused) FUZZ_CHECK(!r.ok);
            if (r.ok) ex.client_final(*msg, r.message);
        } else {
            std::string msg = frames[i].body;
            if (fix_signature && ex.expected_final) msg = *ex.expected_final;
            r = client.on_server_final(msg);
            if (r.ok) FUZZ_CHECK(i == 1 && ex.right_signature(msg));
            FUZZ_TRACE("scram_client: server-final %s", r.ok ? "verified" : r.error.c_str());
            if (i == 1 && ex.expected_final && ex.right_signature(msg) &&
                msg.find(',') == std::string::npos)
                FUZZ_CHECK(r.ok);
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t flags = data[0];
    const int variant = flags & 7;
    const bool fix_nonce = (flags & 0x08) != 0;
    const bool fix_signature = (flags & 0x10) != 0;
    auto frames =
        pgpilot::fuzz::split_frames(pgpilot::fuzz::bytes(data + 1, size - 1), max_message_length);
    if (frames.size() > 12) frames.resize(12);
    if (flags & 0x20)
        fuzz_scram_client(variant, fix_nonce, fix_signature, frames);
    else
        fuzz_backend_authenticator(variant, fix_nonce, fix_signature, frames);
    return 0;
}
