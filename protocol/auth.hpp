// Password authentication of clients toward the proxy and of the proxy toward backends, as
// sans-io state machines over whole Authentication ('R') and password ('p') messages.
// https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
// https://www.postgresql.org/docs/15/auth-password.html
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocol/scram.hpp"

namespace pgpilot::protocol {

/// Authentication request codes (the first Int32 of an 'R' message).
enum class auth_request : std::uint32_t {
    ok = 0,
    kerberos_v5 = 2,
    cleartext_password = 3,
    md5_password = 5,
    scm_credential = 6,
    gss = 7,
    gss_continue = 8,
    sspi = 9,
    sasl = 10,
    sasl_continue = 11,
    sasl_final = 12,
};

/// A whole Authentication message: 'R', length, code, payload.
std::string authentication_message(auth_request code, std::string_view payload = {});

/// How a configured secret is stored.
enum class secret_kind { plain, md5, scram };
/// "md5"+32 lowercase hex -> md5; parseable SCRAM-SHA-256$... -> scram; else plain (as
/// PostgreSQL's get_password_type()).
secret_kind classify_secret(std::string_view stored);

/// The authentication method configured for a client (pg_hba.conf's trust/password/md5/scram).
enum class auth_method { trust, password, md5, scram_sha_256 };

/// Authenticates one client (sans-io): decides which Authentication request to send for the
/// configured method and the stored secret, checks the client's answers.
///
/// As PostgreSQL (auth.c CheckPWChallengeAuth): method md5 with a SCRAM secret runs SCRAM;
/// method scram_sha_256 with an md5 secret runs a SCRAM exchange that is bound to fail. A plain
/// secret works with every method (the proxy can derive md5 or SCRAM from it). An unknown user
/// (stored_secret nullopt) or an empty stored secret goes through the whole exchange and fails with
/// the same message as a wrong password; under md5 it gets an MD5 challenge (PostgreSQL picks by
/// password_encryption, which a proxy does not have; the configured method blends in best), under
/// scram_sha_256 a mock verifier whose salt is stable per user name.
class client_authenticator {
  public:
    client_authenticator(auth_method method, std::string user,
                         std::optional<std::string> stored_secret /* nullopt = user unknown */);

    /// What to do next.
    struct step {
        enum kind { send_and_read, send_and_done_ok, fail } k;
        /// Whole backend message frames to write to the client (Authentication* messages).
        std::string to_send;
        /// With fail: the message text, e.g. "password authentication failed for user \"bob\"".
        std::string error;
    };

    /// trust -> send_and_done_ok with AuthenticationOk; password ->
    /// AuthenticationCleartextPassword; md5 -> AuthenticationMD5Password (random salt); SCRAM ->
    /// AuthenticationSASL ["SCRAM-SHA-256"].
    step start();
    /// One message from the client. The tag must be 'p' (PasswordMessage, SASLInitialResponse and
    /// SASLResponse share it); anything else fails.
    step on_message(char tag, std::span<const std::byte> body);

    /// Set when the method was password and the password checked out (used for pass-through to
    /// backends).
    std::optional<std::string> cleartext_password() const { return cleartext_; }

    /// After a fail step: the SQLSTATE PostgreSQL would report, "28P01" (invalid_password) for a
    /// wrong password or unknown user, "08P01" (protocol_violation) for a malformed message.
    std::string_view failure_sqlstate() const { return failure_sqlstate_; }

  private:
    enum class phase {
        initial,
        password,
        md5,
        sasl_initial,  ///< waiting for SASLInitialResponse
        sasl_first,  ///< SASLInitialResponse had no data: waiting for client-first in SASLResponse
        sasl_final,  ///< waiting for client-final in SASLResponse
        done,
    };
    step start_scram();
    step on_password(std::string_view body);
    step on_md5(std::string_view body);
    step on_sasl_initial(std::string_view body);
    step on_client_first(std::string_view data);
    step on_client_final(std::string_view data);
    step fail_auth();
    step fail_protocol(std::string error);

    auth_method method_;
    std::string user_;
    std::optional<std::string> stored_;
    phase phase_ = phase::initial;
    std::array<unsigned char, 4> md5_salt_{};
    std::optional<scram_server> scram_;
    std::optional<std::string> cleartext_;
    std::string_view failure_sqlstate_;
};

/// Answers a backend's Authentication requests (sans-io).
///
/// The configured password may be cleartext or an md5 hash ("md5..."): a hash answers an MD5
/// challenge only. A SCRAM verifier cannot answer anything (SCRAM needs the ClientKey, which a
/// verifier does not contain) and fails with a clear error. An empty password counts as none,
/// as in libpq.
class backend_authenticator {
  public:
    backend_authenticator(std::string user, std::optional<std::string> password);

    /// What to do next.
    struct step {
        enum kind { send, ok, fail, none } k;
        std::string to_send;  ///< whole frontend frames, tag 'p'
        std::string error;
    };
    /// Body of one 'R' message from the backend. ok = AuthenticationOk; none = nothing to send,
    /// wait for the next message (after AuthenticationSASLFinal verified).
    step on_authentication(std::span<const std::byte> body);

  private:
    step fail(std::string error);
    std::optional<step> need_password(std::string_view what);

    std::string user_;
    std::optional<std::string> password_;
    std::optional<scram_client> scram_;
    bool scram_verified_ = false;
    bool failed_ = false;
};

}  // namespace pgpilot::protocol
