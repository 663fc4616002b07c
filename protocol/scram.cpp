#include "protocol/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

namespace pgpilot::protocol {

namespace {

constexpr char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Raw nonce length PostgreSQL and libpq use (SCRAM_RAW_NONCE_LEN).
constexpr std::size_t raw_nonce_length = 18;

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

std::string random_bytes(std::size_t n) {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), int(n)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return out;
}

std::string random_nonce() {
    return base64_encode(random_bytes(raw_nonce_length));
}

std::string_view as_view(const scram_key& k) {
    return {reinterpret_cast<const char*>(k.data()), k.size()};
}

scram_key to_key(std::string_view s) {
    scram_key k{};
    for (std::size_t i = 0; i < k.size() && i < s.size(); ++i)
        k[i] = static_cast<unsigned char>(s[i]);
    return k;
}

scram_key hmac_sha256(std::string_view key, std::string_view data) {
    // Never hand OpenSSL a null pointer, even for empty input.
    static const unsigned char empty = 0;
    const void* key_ptr = key.empty() ? &empty : static_cast<const void*>(key.data());
    const unsigned char* data_ptr =
        data.empty() ? &empty : reinterpret_cast<const unsigned char*>(data.data());
    scram_key out{};
    unsigned int len = 0;
    if (key.size() > INT_MAX ||
        HMAC(EVP_sha256(), key_ptr, int(key.size()), data_ptr, data.size(), out.data(), &len) ==
            nullptr ||
        len != out.size())
        throw std::runtime_error("HMAC-SHA-256 failed");
    return out;
}

scram_key sha256(std::string_view data) {
    scram_key out{};
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
        len != out.size())
        throw std::runtime_error("SHA-256 failed");
    return out;
}

bool keys_equal(const scram_key& a, const scram_key& b) {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

const std::array<unsigned char, 32>& mock_secret() {
    static const std::array<unsigned char, 32> secret = [] {
        std::array<unsigned char, 32> s{};
        if (RAND_bytes(s.data(), int(s.size())) != 1) throw std::runtime_error("RAND_bytes failed");
        return s;
    }();
    return secret;
}

/// Renders a byte for an error message the way PostgreSQL's sanitize_char() does.
std::string sanitize_char(std::string_view rest) {
    if (rest.empty()) return "end of string";
    auto c = static_cast<unsigned char>(rest[0]);
    char buf[8];
    if (c >= 0x21 && c <= 0x7e)
        std::snprintf(buf, sizeof buf, "'%c'", char(c));
    else
        std::snprintf(buf, sizeof buf, "0x%02x", unsigned(c));
    return buf;
}

std::string malformed(std::string_view what) {
    return "malformed SCRAM message (" + std::string(what) + ")";
}

/// SCRAM attributes are separated by ',' and values cannot contain one (',' is sent as "=2C").
std::vector<std::string_view> split_attributes(std::string_view s) {
    std::vector<std::string_view> out;
    for (;;) {
        auto comma = s.find(',');
        out.push_back(s.substr(0, comma));
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

bool is_alpha(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/// attr-val = ALPHA "=" value. Checks the generic shape; the caller checks the letter.
bool check_any_attribute(std::string_view field, std::string& error) {
    if (field.empty() || !is_alpha(field[0])) {
        error = malformed("attribute expected, invalid char " + sanitize_char(field) + " found");
        return false;
    }
    if (field.size() < 2 || field[1] != '=') {
        error = malformed(std::string("expected = in attr ") + field[0]);
        return false;
    }
    return true;
}

/// Reads attribute `attr` from fields[index], as PostgreSQL's read_attr_value().
std::optional<std::string_view> read_attribute(const std::vector<std::string_view>& fields,
                                               std::size_t index, char attr, std::string& error) {
    if (index >= fields.size()) {
        error = malformed(std::string("attribute '") + attr + "' expected, end of string found");
        return std::nullopt;
    }
    std::string_view f = fields[index];
    if (f.empty() || f[0] != attr) {
        error = malformed(std::string("attribute '") + attr + "' expected, " + sanitize_char(f) +
                          " found");
        return std::nullopt;
    }
    if (f.size() < 2 || f[1] != '=') {
        error = malformed(std::string("expected = in attr ") + attr);
        return std::nullopt;
    }
    return f.substr(2);
}

/// printable = %x21-2B / %x2D-7E (RFC 5802): printable ASCII except ','.
bool is_printable(std::string_view s) {
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x21 || u > 0x7e || u == ',') return false;
    }
    return true;
}

std::optional<int> parse_positive_int(std::string_view s) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    long long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    if (v < 1 || v > INT_MAX) return std::nullopt;
    return int(v);
}

/// The i= attribute of a server-first-message: a decimal count from 1 to scram_max_iterations.
/// A count outside that range is well-formed but refused, before any PBKDF2 runs (docs/fuzzing.md,
/// F1). The count is quoted in the error only when it is digits (with an optional '-') and short.
std::optional<int> parse_iteration_count(std::string_view s, std::string& error) {
    const bool negative = !s.empty() && s[0] == '-';
    std::string_view digits = negative ? s.substr(1) : s;
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
        error = malformed("invalid iteration count");
        return std::nullopt;
    }
    const std::string shown =
        digits.size() <= 20 ? std::string(s) : std::string(s.substr(0, 20)) + "...";
    const std::string range =
        " (pgpilot accepts 1 to " + std::to_string(scram_max_iterations) + ")";
    if (negative || digits.find_first_not_of('0') == std::string_view::npos) {
        error = "SCRAM iteration count " + shown + " from the server is less than 1" + range;
        return std::nullopt;
    }
    digits.remove_prefix(digits.find_first_not_of('0'));
    const std::string max_text = std::to_string(scram_max_iterations);
    if (digits.size() > max_text.size() ||
        (digits.size() == max_text.size() && digits > std::string_view(max_text))) {
        error = "SCRAM iteration count " + shown + " from the server is too large" + range;
        return std::nullopt;
    }
    int v = 0;
    for (char c : digits)
        v = v * 10 + (c - '0');
    return v;
}

}  // namespace

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return std::uint32_t(static_cast<unsigned char>(in[k])); };
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out.push_back(base64_alphabet[(v >> 18) & 63]);
        out.push_back(base64_alphabet[(v >> 12) & 63]);
        out.push_back(base64_alphabet[(v >> 6) & 63]);
        out.push_back(base64_alphabet[v & 63]);
    }
    std::size_t rest = in.size() - i;
    if (rest == 1) {
        std::uint32_t v = byte(i) << 16;
        out.push_back(base64_alphabet[(v >> 18) & 63]);
        out.push_back(base64_alphabet[(v >> 12) & 63]);
        out.append("==");
    } else if (rest == 2) {
        std::uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8);
        out.push_back(base64_alphabet[(v >> 18) & 63]);
        out.push_back(base64_alphabet[(v >> 12) & 63]);
        out.push_back(base64_alphabet[(v >> 6) & 63]);
        out.push_back('=');
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        std::uint32_t v = 0;
        int pad = 0;
        for (std::size_t j = 0; j < 4; ++j) {
            char c = in[i + j];
            if (c == '=') {
                // Padding only in the last two positions of the last quantum.
                if (i + 4 != in.size() || j < 2) return std::nullopt;
                ++pad;
                v <<= 6;
                continue;
            }
            if (pad > 0) return std::nullopt;
            int d = base64_value(c);
            if (d < 0) return std::nullopt;
            v = (v << 6) | std::uint32_t(d);
        }
        out.push_back(char((v >> 16) & 0xff));
        if (pad < 2) out.push_back(char((v >> 8) & 0xff));
        if (pad < 1) out.push_back(char(v & 0xff));
    }
    return out;
}

scram_key scram_salted_password(std::string_view password, std::string_view salt, int iterations) {
    if (iterations < 1) throw std::invalid_argument("SCRAM iteration count must be positive");
    if (password.size() > INT_MAX || salt.size() > INT_MAX)
        throw std::invalid_argument("SCRAM password or salt too long");
    static const char empty = 0;
    scram_key out{};
    if (PKCS5_PBKDF2_HMAC(
            password.empty() ? &empty : password.data(), int(password.size()),
            reinterpret_cast<const unsigned char*>(salt.empty() ? &empty : salt.data()),
            int(salt.size()), iterations, EVP_sha256(), int(out.size()), out.data()) != 1)
        throw std::runtime_error("PBKDF2-HMAC-SHA-256 failed");
    return out;
}

scram_proof compute_scram_proof(const scram_key& salted_password, std::string_view auth_message) {
    scram_key client_key = hmac_sha256(as_view(salted_password), "Client Key");
    scram_key stored_key = sha256(as_view(client_key));
    scram_key client_signature = hmac_sha256(as_view(stored_key), auth_message);
    scram_key server_key = hmac_sha256(as_view(salted_password), "Server Key");
    scram_proof p{};
    for (std::size_t i = 0; i < p.client_proof.size(); ++i)
        p.client_proof[i] = client_key[i] ^ client_signature[i];
    p.server_signature = hmac_sha256(as_view(server_key), auth_message);
    return p;
}

scram_verifier make_scram_verifier(std::string_view password, std::string_view salt,
                                   int iterations) {
    scram_key salted = scram_salted_password(password, salt, iterations);
    scram_verifier v{iterations, std::string(salt), {}, {}};
    v.stored_key = sha256(as_view(hmac_sha256(as_view(salted), "Client Key")));
    v.server_key = hmac_sha256(as_view(salted), "Server Key");
    return v;
}

std::string encode_scram_verifier(const scram_verifier& v) {
    return "SCRAM-SHA-256$" + std::to_string(v.iterations) + ":" + base64_encode(v.salt) + "$" +
           base64_encode(as_view(v.stored_key)) + ":" + base64_encode(as_view(v.server_key));
}

std::optional<scram_verifier> parse_scram_verifier(std::string_view s) {
    // Same split as PostgreSQL's parse_scram_secret(); base64 never contains '$' or ':', so a
    // stray separator makes a part fail to decode.
    constexpr std::string_view prefix = "SCRAM-SHA-256$";
    if (s.substr(0, prefix.size()) != prefix) return std::nullopt;
    s.remove_prefix(prefix.size());
    auto colon1 = s.find(':');
    if (colon1 == std::string_view::npos) return std::nullopt;
    auto dollar = s.find('$', colon1 + 1);
    if (dollar == std::string_view::npos) return std::nullopt;
    auto colon2 = s.find(':', dollar + 1);
    if (colon2 == std::string_view::npos) return std::nullopt;

    auto iterations = parse_positive_int(s.substr(0, colon1));
    auto salt = base64_decode(s.substr(colon1 + 1, dollar - colon1 - 1));
    auto stored = base64_decode(s.substr(dollar + 1, colon2 - dollar - 1));
    auto server = base64_decode(s.substr(colon2 + 1));
    if (!iterations || !salt || !stored || !server) return std::nullopt;
    if (stored->size() != 32 || server->size() != 32) return std::nullopt;
    return scram_verifier{*iterations, std::move(*salt), to_key(*stored), to_key(*server)};
}

bool verify_scram_password(const scram_verifier& v, std::string_view password) {
    scram_key salted = scram_salted_password(password, v.salt, v.iterations);
    return keys_equal(hmac_sha256(as_view(salted), "Server Key"), v.server_key);
}

std::string scram_mock_salt(std::string_view user) {
    std::string buf(reinterpret_cast<const char*>(mock_secret().data()), mock_secret().size());
    buf.append(user);
    return std::string(as_view(sha256(buf)).substr(0, scram_default_salt_length));
}

scram_verifier mock_scram_verifier(std::string_view user) {
    return scram_verifier{scram_default_iterations, scram_mock_salt(user), {}, {}};
}

// ---------------------------------------------------------------------------------------------
// scram_server

scram_server::scram_server(scram_verifier v, std::string server_nonce, bool doomed)
    : verifier_(std::move(v)),
      server_nonce_(server_nonce.empty() ? random_nonce() : std::move(server_nonce)),
      doomed_(doomed) {}

scram_server::result scram_server::fail(std::string error, bool violation) {
    state_ = state::done;
    protocol_violation_ = violation;
    return {false, {}, std::move(error)};
}

scram_server::result scram_server::on_client_first(std::string_view msg) {
    if (state_ != state::initial) return fail("unexpected SCRAM client-first-message", true);
    if (msg.empty()) return fail(malformed("empty message"), true);
    // The SASL data is counted, but PostgreSQL treats it as a C string: reject embedded NULs.
    if (msg.find('\0') != std::string_view::npos) return fail(malformed("length mismatch"), true);

    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    switch (msg[0]) {
        case 'n':  // client does not support channel binding
        case 'y':  // client supports it but thinks we do not: right, we do not
            break;
        case 'p':
            return fail("client requires SCRAM channel binding, but it is not supported", true);
        default:
            return fail(malformed("unexpected channel-binding flag " + sanitize_char(msg)), true);
    }
    if (msg.size() < 2 || msg[1] != ',')
        return fail(malformed("comma expected, got " + sanitize_char(msg.substr(1))), true);
    if (msg.size() >= 3 && msg[2] == 'a')
        return fail("client uses authorization identity, but it is not supported", true);
    if (msg.size() < 3 || msg[2] != ',')
        return fail(malformed("comma expected, got " + sanitize_char(msg.substr(2))), true);
    gs2_header_ = std::string(msg.substr(0, 3));
    std::string_view bare = msg.substr(3);

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    auto fields = split_attributes(bare);
    std::string error;
    if (fields[0].substr(0, 2) == "m=")
        return fail("client requires an unsupported SCRAM extension", true);
    // The username is ignored: PostgreSQL takes the role from the startup packet.
    if (!read_attribute(fields, 0, 'n', error)) return fail(error, true);
    auto nonce = read_attribute(fields, 1, 'r', error);
    if (!nonce) return fail(error, true);
    if (nonce->empty() || !is_printable(*nonce))
        return fail(malformed("invalid nonce in client-first-message"), true);
    for (std::size_t i = 2; i < fields.size(); ++i)
        if (!check_any_attribute(fields[i], error)) return fail(error, true);

    client_nonce_ = std::string(*nonce);
    client_first_bare_ = std::string(bare);
    server_first_ = "r=" + client_nonce_ + server_nonce_ + ",s=" + base64_encode(verifier_.salt) +
                    ",i=" + std::to_string(verifier_.iterations);
    state_ = state::first_sent;
    return {true, server_first_, {}};
}

scram_server::result scram_server::on_client_final(std::string_view msg) {
    if (state_ != state::first_sent) return fail("unexpected SCRAM client-final-message", true);
    if (msg.empty()) return fail(malformed("empty message"), true);
    if (msg.find('\0') != std::string_view::npos) return fail(malformed("length mismatch"), true);

    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    auto fields = split_attributes(msg);
    std::string error;
    auto cbind = read_attribute(fields, 0, 'c', error);
    if (!cbind) return fail(error, true);
    // Without channel binding the data is just the gs2 header: "biws" for "n,,", "eSws" for "y,,".
    if (*cbind != base64_encode(gs2_header_))
        return fail("unexpected SCRAM channel-binding attribute in client-final-message", true);
    auto nonce = read_attribute(fields, 1, 'r', error);
    if (!nonce) return fail(error, true);

    std::size_t proof_index = 0;
    for (std::size_t i = 2; i < fields.size(); ++i) {
        if (!check_any_attribute(fields[i], error)) return fail(error, true);
        if (fields[i][0] == 'p') {
            proof_index = i;
            break;
        }
    }
    if (proof_index == 0)
        return fail(malformed("attribute 'p' expected, end of string found"), true);
    if (proof_index + 1 != fields.size())
        return fail(malformed("garbage at the end of client-final-message"), true);
    auto proof = base64_decode(fields[proof_index].substr(2));
    if (!proof || proof->size() != 32)
        return fail(malformed("malformed proof in client-final-message"), true);
    if (*nonce != client_nonce_ + server_nonce_)
        return fail("invalid SCRAM response (nonce mismatch)", true);

    std::size_t proof_offset = std::size_t(fields[proof_index].data() - msg.data());
    std::string_view without_proof = msg.substr(0, proof_offset - 1);  // drop ",p=..."
    std::string auth_message =
        client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);

    // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); it must hash to StoredKey.
    // Computed even when doomed, so an unknown user costs the same time as a known one.
    scram_key client_signature = hmac_sha256(as_view(verifier_.stored_key), auth_message);
    scram_key client_key{};
    for (std::size_t i = 0; i < client_key.size(); ++i)
        client_key[i] = static_cast<unsigned char>(proof->at(i)) ^ client_signature[i];
    bool proof_ok = keys_equal(sha256(as_view(client_key)), verifier_.stored_key);
    if (!proof_ok || doomed_) return fail("invalid SCRAM proof", false);

    state_ = state::done;
    scram_key server_signature = hmac_sha256(as_view(verifier_.server_key), auth_message);
    return {true, "v=" + base64_encode(as_view(server_signature)), {}};
}

// ---------------------------------------------------------------------------------------------
// scram_client

scram_client::scram_client(std::string password, std::string client_nonce)
    : password_(std::move(password)),
      client_nonce_(client_nonce.empty() ? random_nonce() : std::move(client_nonce)) {}

scram_client::result scram_client::fail(std::string error) {
    state_ = state::failed;
    return {false, {}, std::move(error)};
}

std::string scram_client::client_first() {
    // libpq sends an empty username: the server uses the one from the startup packet.
    client_first_bare_ = "n=,r=" + client_nonce_;
    if (state_ == state::initial) state_ = state::first_sent;
    return "n,," + client_first_bare_;
}

scram_client::result scram_client::on_server_first(std::string_view msg) {
    if (state_ != state::first_sent) return fail("unexpected SCRAM server-first-message");
    if (msg.find('\0') != std::string_view::npos) return fail(malformed("length mismatch"));

    // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
    auto fields = split_attributes(msg);
    std::string error;
    if (fields[0].substr(0, 2) == "m=")
        return fail("server requires an unsupported SCRAM extension");
    auto nonce = read_attribute(fields, 0, 'r', error);
    if (!nonce) return fail(error);
    if (nonce->size() < client_nonce_.size() ||
        nonce->substr(0, client_nonce_.size()) != client_nonce_ || !is_printable(*nonce))
        return fail("invalid SCRAM response (nonce mismatch)");
    auto salt_b64 = read_attribute(fields, 1, 's', error);
    if (!salt_b64) return fail(error);
    auto salt = base64_decode(*salt_b64);
    if (!salt) return fail(malformed("invalid salt"));
    auto iter_text = read_attribute(fields, 2, 'i', error);
    if (!iter_text) return fail(error);
    auto iterations = parse_iteration_count(*iter_text, error);
    if (!iterations) return fail(error);
    if (fields.size() > 3) return fail(malformed("garbage at end of server-first-message"));

    scram_key salted = scram_salted_password(password_, *salt, *iterations);
    std::string without_proof = "c=biws,r=" + std::string(*nonce);
    std::string auth_message = client_first_bare_ + "," + std::string(msg) + "," + without_proof;
    scram_proof p = compute_scram_proof(salted, auth_message);
    expected_server_signature_ = p.server_signature;
    state_ = state::final_sent;
    return {true, without_proof + ",p=" + base64_encode(as_view(p.client_proof)), {}};
}

scram_client::result scram_client::on_server_final(std::string_view msg) {
    if (state_ != state::final_sent) return fail("unexpected SCRAM server-final-message");
    if (msg.find('\0') != std::string_view::npos) return fail(malformed("length mismatch"));
    if (msg.substr(0, 2) == "e=")
        return fail("error received from server in SCRAM exchange: " + std::string(msg.substr(2)));
    auto fields = split_attributes(msg);
    std::string error;
    auto sig_b64 = read_attribute(fields, 0, 'v', error);
    if (!sig_b64) return fail(error);
    auto sig = base64_decode(*sig_b64);
    if (!sig || sig->size() != 32) return fail(malformed("malformed server signature"));
    if (fields.size() > 1) return fail(malformed("garbage at end of server-final-message"));
    if (!keys_equal(to_key(*sig), expected_server_signature_))
        return fail("incorrect server signature");
    state_ = state::done;
    return {true, {}, {}};
}

}  // namespace pgpilot::protocol
