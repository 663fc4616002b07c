#include "protocol/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "protocol/frame.hpp"
#include "protocol/md5.hpp"
#include "protocol/sqlstate.hpp"

namespace pgpilot::protocol {

namespace {

// PG_MAX_AUTH_TOKEN_LENGTH (src/include/libpq/auth.h): PostgreSQL refuses longer password and
// SASL messages.
constexpr std::size_t max_auth_token_length = 65535;

std::string frontend_password_message(std::string_view body) {
    std::string out;
    out.reserve(header_size + body.size());
    out.push_back('p');
    append_u32(out, std::uint32_t(4 + body.size()));
    out.append(body);
    return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string describe_tag(char tag) {
    auto u = static_cast<unsigned char>(tag);
    if (u >= 0x21 && u <= 0x7e) return std::string("'") + tag + "'";
    return std::to_string(unsigned(u));
}

/// A PasswordMessage body is one C string: exactly one NUL, at the end (recv_password_packet()).
std::optional<std::string_view> password_packet(std::string_view body) {
    if (body.empty() || body.find('\0') != body.size() - 1) return std::nullopt;
    return body.substr(0, body.size() - 1);
}

std::string_view auth_request_name(std::uint32_t code) {
    switch (auth_request(code)) {
        case auth_request::kerberos_v5:
            return "Kerberos V5";
        case auth_request::scm_credential:
            return "SCM credentials";
        case auth_request::gss:
            return "GSSAPI";
        case auth_request::gss_continue:
            return "GSSAPI continue";
        case auth_request::sspi:
            return "SSPI";
        default:
            return "unknown";
    }
}

}  // namespace

std::string authentication_message(auth_request code, std::string_view payload) {
    std::string out;
    out.reserve(header_size + 4 + payload.size());
    out.push_back('R');
    append_u32(out, std::uint32_t(8 + payload.size()));
    append_u32(out, std::uint32_t(code));
    out.append(payload);
    return out;
}

secret_kind classify_secret(std::string_view stored) {
    if (is_md5_hash(stored)) return secret_kind::md5;
    if (parse_scram_verifier(stored)) return secret_kind::scram;
    return secret_kind::plain;
}

// ---------------------------------------------------------------------------------------------
// client_authenticator

client_authenticator::client_authenticator(auth_method method, std::string user,
                                           std::optional<std::string> stored_secret)
    : method_(method), user_(std::move(user)), stored_(std::move(stored_secret)) {
    // PostgreSQL treats an empty rolpassword as no password at all.
    if (stored_ && stored_->empty()) stored_.reset();
}

client_authenticator::step client_authenticator::fail_auth() {
    phase_ = phase::done;
    failure_sqlstate_ = sqlstate::invalid_password;
    return {step::fail, {}, "password authentication failed for user \"" + user_ + "\""};
}

client_authenticator::step client_authenticator::fail_protocol(std::string error) {
    phase_ = phase::done;
    failure_sqlstate_ = sqlstate::protocol_violation;
    return {step::fail, {}, std::move(error)};
}

client_authenticator::step client_authenticator::start() {
    if (phase_ != phase::initial) return fail_protocol("authentication already started");
    switch (method_) {
        case auth_method::trust:
            phase_ = phase::done;
            return {step::send_and_done_ok, authentication_message(auth_request::ok), {}};
        case auth_method::password:
            phase_ = phase::password;
            return {
                step::send_and_read, authentication_message(auth_request::cleartext_password), {}};
        case auth_method::md5:
            // A SCRAM secret cannot answer an MD5 challenge: upgrade, as PostgreSQL does.
            if (stored_ && classify_secret(*stored_) == secret_kind::scram) return start_scram();
            if (RAND_bytes(md5_salt_.data(), int(md5_salt_.size())) != 1)
                throw std::runtime_error("RAND_bytes failed");
            phase_ = phase::md5;
            return {step::send_and_read,
                    authentication_message(
                        auth_request::md5_password,
                        {reinterpret_cast<const char*>(md5_salt_.data()), md5_salt_.size()}),
                    {}};
        case auth_method::scram_sha_256:
            return start_scram();
    }
    return fail_protocol("unknown authentication method");
}

client_authenticator::step client_authenticator::start_scram() {
    std::optional<secret_kind> kind;
    if (stored_) kind = classify_secret(*stored_);
    if (kind == secret_kind::scram) {
        scram_.emplace(*parse_scram_verifier(*stored_));
    } else if (kind == secret_kind::plain) {
        // Derive a verifier with the same per-user salt an unknown user would see, so the salt
        // does not tell the two apart either.
        scram_.emplace(make_scram_verifier(*stored_, scram_mock_salt(user_)));
    } else {
        // Unknown user or md5 secret: run the exchange with a mock verifier, then fail.
        scram_.emplace(mock_scram_verifier(user_), std::string{}, true);
    }
    phase_ = phase::sasl_initial;
    std::string mechanisms;
    append_cstr(mechanisms, scram_mechanism);
    mechanisms.push_back('\0');  // end of the list
    return {step::send_and_read, authentication_message(auth_request::sasl, mechanisms), {}};
}

client_authenticator::step client_authenticator::on_message(char tag,
                                                            std::span<const std::byte> body) {
    if (phase_ == phase::initial)
        return fail_protocol("unexpected message before authentication started");
    if (phase_ == phase::done)
        return fail_protocol("unexpected message after authentication finished");
    bool sasl =
        phase_ == phase::sasl_initial || phase_ == phase::sasl_first || phase_ == phase::sasl_final;
    if (tag != 'p')
        return fail_protocol(
            std::string(sasl ? "expected SASL response" : "expected password response") +
            ", got message type " + describe_tag(tag));
    if (body.size() > max_auth_token_length)
        return fail_protocol("authentication message too long");
    std::string_view data = as_chars(body);
    switch (phase_) {
        case phase::password:
            return on_password(data);
        case phase::md5:
            return on_md5(data);
        case phase::sasl_initial:
            return on_sasl_initial(data);
        case phase::sasl_first:
            return on_client_first(data);
        case phase::sasl_final:
            return on_client_final(data);
        default:
            return fail_protocol("unexpected message during authentication");
    }
}

client_authenticator::step client_authenticator::on_password(std::string_view body) {
    auto password = password_packet(body);
    if (!password) return fail_protocol("invalid password packet size");
    if (password->empty()) {
        step s = fail_auth();
        s.error = "empty password returned by client";
        return s;
    }
    bool ok = false;
    if (!stored_) {
        // Unknown user: spend comparable time, then fail like a wrong password.
        (void)md5_password_hash(*password, user_);
    } else {
        switch (classify_secret(*stored_)) {
            case secret_kind::plain:
                ok = constant_time_equal(*password, *stored_);
                break;
            case secret_kind::md5:
                ok = constant_time_equal(md5_password_hash(*password, user_), *stored_);
                break;
            case secret_kind::scram:
                ok = verify_scram_password(*parse_scram_verifier(*stored_), *password);
                break;
        }
    }
    if (!ok) return fail_auth();
    cleartext_ = std::string(*password);
    phase_ = phase::done;
    return {step::send_and_done_ok, authentication_message(auth_request::ok), {}};
}

client_authenticator::step client_authenticator::on_md5(std::string_view body) {
    auto response = password_packet(body);
    if (!response) return fail_protocol("invalid password packet size");
    if (response->empty()) {
        step s = fail_auth();
        s.error = "empty password returned by client";
        return s;
    }
    // Only md5 and plain secrets (or none) get here; SCRAM secrets were upgraded in start().
    bool known = stored_.has_value();
    std::string expected =
        known && classify_secret(*stored_) == secret_kind::md5
            ? md5_salted_response_from_hash(*stored_, md5_salt_)
            : md5_salted_response_from_password(known ? *stored_ : "", user_, md5_salt_);
    if (!known || !constant_time_equal(*response, expected)) return fail_auth();
    phase_ = phase::done;
    return {step::send_and_done_ok, authentication_message(auth_request::ok), {}};
}

client_authenticator::step client_authenticator::on_sasl_initial(std::string_view body) {
    // SASLInitialResponse: mechanism name (String), Int32 length of the data (-1 = none), data.
    auto nul = body.find('\0');
    if (nul == std::string_view::npos)
        return fail_protocol("malformed SASLInitialResponse message (unterminated mechanism name)");
    if (body.substr(0, nul) != scram_mechanism)
        return fail_protocol("client selected an invalid SASL authentication mechanism");
    std::string_view rest = body.substr(nul + 1);
    if (rest.size() < 4)
        return fail_protocol("malformed SASLInitialResponse message (truncated length)");
    auto length = std::int32_t(read_u32(reinterpret_cast<const std::byte*>(rest.data())));
    std::string_view data = rest.substr(4);
    if (length == -1) {
        if (!data.empty())
            return fail_protocol("malformed SASLInitialResponse message (length mismatch)");
        // No initial response: send an empty challenge, the client answers with its
        // client-first-message in a SASLResponse (RFC 4422 section 5, as PostgreSQL does).
        phase_ = phase::sasl_first;
        return {step::send_and_read, authentication_message(auth_request::sasl_continue), {}};
    }
    if (length < 0 || std::size_t(length) != data.size())
        return fail_protocol("malformed SASLInitialResponse message (length mismatch)");
    return on_client_first(data);
}

client_authenticator::step client_authenticator::on_client_first(std::string_view data) {
    auto r = scram_->on_client_first(data);
    if (!r.ok) {
        step s = fail_protocol(std::move(r.error));
        // Channel binding and authzid: PostgreSQL reports these as unsupported features.
        if (s.error.find("not supported") != std::string::npos)
            failure_sqlstate_ = sqlstate::feature_not_supported;
        return s;
    }
    phase_ = phase::sasl_final;
    return {
        step::send_and_read, authentication_message(auth_request::sasl_continue, r.message), {}};
}

client_authenticator::step client_authenticator::on_client_final(std::string_view data) {
    auto r = scram_->on_client_final(data);
    if (!r.ok) {
        if (scram_->protocol_violation()) return fail_protocol(std::move(r.error));
        return fail_auth();
    }
    phase_ = phase::done;
    return {step::send_and_done_ok,
            authentication_message(auth_request::sasl_final, r.message) +
                authentication_message(auth_request::ok),
            {}};
}

// ---------------------------------------------------------------------------------------------
// backend_authenticator

backend_authenticator::backend_authenticator(std::string user, std::optional<std::string> password)
    : user_(std::move(user)), password_(std::move(password)) {
    // libpq treats an empty password as none.
    if (password_ && password_->empty()) password_.reset();
}

backend_authenticator::step backend_authenticator::fail(std::string error) {
    failed_ = true;
    return {step::fail, {}, std::move(error)};
}

std::optional<backend_authenticator::step> backend_authenticator::need_password(
    std::string_view what) {
    if (!password_) return fail("backend asked for a password and none is configured");
    if (password_->find('\0') != std::string::npos)
        return fail("the configured backend password contains a NUL byte");
    switch (classify_secret(*password_)) {
        case secret_kind::scram:
            // A verifier holds StoredKey = H(ClientKey), not ClientKey: it cannot compute a proof.
            return fail("backend asked for " + std::string(what) +
                        ", but the configured password is a SCRAM secret, which cannot answer it");
        case secret_kind::md5:
            if (what != "MD5 authentication")
                return fail("backend asked for " + std::string(what) +
                            ", but the configured password is an md5 hash, which only answers MD5 "
                            "authentication");
            break;
        case secret_kind::plain:
            break;
    }
    return std::nullopt;
}

backend_authenticator::step backend_authenticator::on_authentication(
    std::span<const std::byte> body) {
    if (failed_) return fail("authentication with the backend already failed");
    if (body.size() < 4) return fail("malformed authentication request from the backend");
    std::uint32_t code = read_u32(body.data());
    std::string_view payload = as_chars(body).substr(4);

    switch (auth_request(code)) {
        case auth_request::ok:
            if (!payload.empty()) return fail("malformed AuthenticationOk from the backend");
            // Without the server signature the backend never proved it knows the secret.
            if (scram_ && !scram_verified_)
                return fail("backend sent AuthenticationOk before completing SCRAM authentication");
            return {step::ok, {}, {}};

        case auth_request::cleartext_password: {
            if (auto f = need_password("a cleartext password")) return *f;
            std::string body_out;
            append_cstr(body_out, *password_);
            return {step::send, frontend_password_message(body_out), {}};
        }

        case auth_request::md5_password: {
            if (payload.size() != 4)
                return fail("malformed AuthenticationMD5Password from the backend");
            if (auto f = need_password("MD5 authentication")) return *f;
            std::array<unsigned char, 4> salt{};
            for (std::size_t i = 0; i < 4; ++i)
                salt[i] = static_cast<unsigned char>(payload[i]);
            std::string response = is_md5_hash(*password_)
                                       ? md5_salted_response_from_hash(*password_, salt)
                                       : md5_salted_response_from_password(*password_, user_, salt);
            std::string body_out;
            append_cstr(body_out, response);
            return {step::send, frontend_password_message(body_out), {}};
        }

        case auth_request::sasl: {
            if (scram_) return fail("backend sent AuthenticationSASL twice");
            // A list of mechanism names (String), ended by an empty one.
            bool found = false;
            std::string offered;
            std::size_t pos = 0;
            for (;;) {
                auto nul = payload.find('\0', pos);
                if (nul == std::string_view::npos)
                    return fail("malformed AuthenticationSASL from the backend");
                if (nul == pos) break;
                std::string_view mechanism = payload.substr(pos, nul - pos);
                if (mechanism == scram_mechanism) found = true;
                if (!offered.empty()) offered += ", ";
                offered += mechanism;
                pos = nul + 1;
            }
            if (!found)
                return fail("backend offered no supported SASL mechanism (offered: " +
                            (offered.empty() ? std::string("none") : offered) + ")");
            if (auto f = need_password("SCRAM-SHA-256 authentication")) return *f;
            scram_.emplace(*password_);
            std::string first = scram_->client_first();
            std::string body_out;
            append_cstr(body_out, scram_mechanism);
            append_u32(body_out, std::uint32_t(first.size()));
            body_out.append(first);
            return {step::send, frontend_password_message(body_out), {}};
        }

        case auth_request::sasl_continue: {
            if (!scram_)
                return fail("backend sent AuthenticationSASLContinue without AuthenticationSASL");
            auto r = scram_->on_server_first(payload);
            if (!r.ok) return fail("SCRAM authentication with the backend failed: " + r.error);
            return {step::send, frontend_password_message(r.message), {}};
        }

        case auth_request::sasl_final: {
            if (!scram_)
                return fail("backend sent AuthenticationSASLFinal without AuthenticationSASL");
            auto r = scram_->on_server_final(payload);
            if (!r.ok) return fail("SCRAM authentication with the backend failed: " + r.error);
            scram_verified_ = true;
            return {step::none, {}, {}};
        }

        default:
            return fail("backend requested an unsupported authentication method: " +
                        std::string(auth_request_name(code)) + " (code " + std::to_string(code) +
                        ")");
    }
}

}  // namespace pgpilot::protocol
