// MD5 password hashing as PostgreSQL does it: the "md5" form stored in pg_authid and the answer to
// an AuthenticationMD5Password challenge.
// https://www.postgresql.org/docs/15/auth-password.html
// https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace pgpilot::protocol {

/// 32 lowercase hex characters.
std::string md5_hex(std::string_view data);

/// "md5" + md5_hex(password + user), the form pg_authid stores (the role name is the salt).
std::string md5_password_hash(std::string_view password, std::string_view user);

/// True for "md5" followed by exactly 32 lowercase hex digits, the test PostgreSQL's
/// get_password_type() applies.
bool is_md5_hash(std::string_view s);

/// The PasswordMessage content a client sends for AuthenticationMD5Password:
/// "md5" + md5_hex(md5_hex(password + user) + salt). `password` is always taken literally; for a
/// configured secret that is already in the stored hash form use md5_salted_response_from_hash.
std::string md5_salted_response_from_password(std::string_view password, std::string_view user,
                                              std::array<unsigned char, 4> salt);

/// Same answer computed from the stored hash form ("md5" + 32 hex), which is all the proxy needs
/// to know to answer the challenge. A bare 32-hex digest without the "md5" prefix is accepted too.
std::string md5_salted_response_from_hash(std::string_view md5_hash,
                                          std::array<unsigned char, 4> salt);

}  // namespace pgpilot::protocol
