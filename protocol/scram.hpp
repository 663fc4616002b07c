// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: no channel binding (gs2 header "n,,"
// or "y,,"), the username attribute is sent empty ("n=,") and ignored because the role name comes
// from the startup packet, and secrets are stored in PostgreSQL's verifier format.
// https://www.postgresql.org/docs/15/sasl-authentication.html
//
// SASLprep (RFC 4013): PostgreSQL normalizes the password with SASLprep and falls back to the raw
// bytes when that fails. For an all-ASCII password SASLprep is the identity, so ASCII passwords
// give exactly PostgreSQL's keys. Non-ASCII passwords are used as raw bytes WITHOUT SASLprep
// normalization here; that matches PostgreSQL only when the password is already in NFKC form and
// contains no characters SASLprep maps or prohibits.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pgpilot::protocol {

/// A SHA-256 sized SCRAM key or signature.
using scram_key = std::array<unsigned char, 32>;

/// PostgreSQL's default iteration count (scram_iterations).
inline constexpr int scram_default_iterations = 4096;
/// The largest iteration count scram_client accepts from a backend's server-first-message. The
/// derivation runs synchronously on the event loop (about 0.8 s per million iterations), so an
/// unbounded count would let a backend, or anyone who can rewrite an unencrypted backend
/// connection, stall every session of that thread (up to 2^31-1 iterations: half an hour).
/// 100000 is 24 times PostgreSQL's default and costs about 80 ms.
inline constexpr int scram_max_iterations = 100000;
/// Salt length PostgreSQL generates (SCRAM_DEFAULT_SALT_LEN).
inline constexpr std::size_t scram_default_salt_length = 16;
/// The only mechanism offered; "-PLUS" (channel binding) is not supported.
inline constexpr std::string_view scram_mechanism = "SCRAM-SHA-256";

/// The secret a server needs, as pg_authid.rolpassword stores it.
struct scram_verifier {
    int iterations;
    std::string salt;  ///< raw bytes
    std::array<unsigned char, 32> stored_key;
    std::array<unsigned char, 32> server_key;
};

/// Parses "SCRAM-SHA-256$<iter>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>".
std::optional<scram_verifier> parse_scram_verifier(std::string_view s);
/// Derives a verifier from a password (see the SASLprep note at the top of this file).
scram_verifier make_scram_verifier(std::string_view password, std::string_view salt,
                                   int iterations = scram_default_iterations);
/// The inverse of parse_scram_verifier.
std::string encode_scram_verifier(const scram_verifier&);

/// Standard base64 (RFC 4648 section 4) with padding.
std::string base64_encode(std::string_view);
/// Strict: padding required, no whitespace, nothing outside the alphabet.
std::optional<std::string> base64_decode(std::string_view);

/// SaltedPassword := Hi(password, salt, i), i.e. PBKDF2-HMAC-SHA-256 (RFC 5802 section 3).
scram_key scram_salted_password(std::string_view password, std::string_view salt, int iterations);

/// ClientProof and ServerSignature of one exchange (RFC 5802 section 3).
struct scram_proof {
    scram_key client_proof;
    scram_key server_signature;
};
/// AuthMessage is client-first-message-bare + "," + server-first-message + "," +
/// client-final-message-without-proof.
scram_proof compute_scram_proof(const scram_key& salted_password, std::string_view auth_message);

/// True if `password` derives the verifier's ServerKey (how PostgreSQL checks a cleartext password
/// against a SCRAM secret, scram_verify_plain_password()).
bool verify_scram_password(const scram_verifier& v, std::string_view password);

/// A deterministic per-user salt from a per-process random secret (PostgreSQL's scram_mock_salt()
/// uses the cluster's mock authentication nonce). The same user name always gets the same salt
/// within a process, so probing cannot tell unknown users from known ones.
std::string scram_mock_salt(std::string_view user);
/// A verifier for a user that does not exist: mock salt, default iterations, zero keys. Use it with
/// scram_server's `doomed` flag so the exchange runs to the end and then fails.
scram_verifier mock_scram_verifier(std::string_view user);

/// Server side of SCRAM toward a client (sans-io).
class scram_server {
  public:
    /// `server_nonce` empty = 18 random bytes, base64 (as PostgreSQL). With `doomed` the exchange
    /// runs normally but the proof is always rejected (unknown user, unusable secret).
    explicit scram_server(scram_verifier v, std::string server_nonce = {}, bool doomed = false);

    /// ok: message is the data to send (server-first or server-final); !ok: error is a human text.
    struct result {
        bool ok;
        std::string message;
        std::string error;
    };
    /// Data of SASLInitialResponse (client-first-message); ok: message = server-first-message.
    result on_client_first(std::string_view msg);
    /// Data of SASLResponse (client-final-message); ok means the proof verified and message is
    /// the server-final-message ("v=...").
    result on_client_final(std::string_view msg);

    /// After a failure: true if the client broke the protocol (PostgreSQL answers 08P01), false if
    /// the proof was wrong or the exchange was doomed (28P01).
    bool protocol_violation() const { return protocol_violation_; }

  private:
    enum class state { initial, first_sent, done };
    result fail(std::string error, bool violation);

    scram_verifier verifier_;
    std::string server_nonce_;
    bool doomed_;
    state state_ = state::initial;
    bool protocol_violation_ = false;
    std::string gs2_header_;
    std::string client_nonce_;
    std::string client_first_bare_;
    std::string server_first_;
};

/// Client side of SCRAM toward a backend (sans-io).
class scram_client {
  public:
    /// `client_nonce` empty = 18 random bytes, base64 (as libpq).
    explicit scram_client(std::string password, std::string client_nonce = {});

    /// "n,,n=,r=<nonce>", the data of SASLInitialResponse.
    std::string client_first();

    struct result {
        bool ok;
        std::string message;
        std::string error;
    };
    /// Data of AuthenticationSASLContinue (server-first-message); ok: message =
    /// client-final-message (data of SASLResponse). An iteration count outside
    /// 1..scram_max_iterations fails before any derivation runs.
    result on_server_first(std::string_view msg);
    /// Data of AuthenticationSASLFinal (server-final-message); ok iff the server signature
    /// verifies (the server proved it knows the secret).
    result on_server_final(std::string_view msg);

  private:
    enum class state { initial, first_sent, final_sent, done, failed };
    result fail(std::string error);

    std::string password_;
    std::string client_nonce_;
    state state_ = state::initial;
    std::string client_first_bare_;
    scram_key expected_server_signature_{};
};

}  // namespace pgpilot::protocol
