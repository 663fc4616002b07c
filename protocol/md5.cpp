#include "protocol/md5.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace pgpilot::protocol {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

bool is_lower_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

}  // namespace

std::string md5_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    // EVP_Digest rather than MD5(): the low-level MD5 API is deprecated in OpenSSL 3.
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16)
        throw std::runtime_error("MD5 digest unavailable (OpenSSL in FIPS mode?)");
    std::string out;
    out.reserve(32);
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex_digits[digest[i] >> 4]);
        out.push_back(hex_digits[digest[i] & 0x0f]);
    }
    return out;
}

std::string md5_password_hash(std::string_view password, std::string_view user) {
    std::string buf;
    buf.reserve(password.size() + user.size());
    buf.append(password);
    buf.append(user);
    return "md5" + md5_hex(buf);
}

bool is_md5_hash(std::string_view s) {
    if (s.size() != 35 || s.substr(0, 3) != "md5") return false;
    for (char c : s.substr(3))
        if (!is_lower_hex(c)) return false;
    return true;
}

std::string md5_salted_response_from_password(std::string_view password, std::string_view user,
                                              std::array<unsigned char, 4> salt) {
    return md5_salted_response_from_hash(md5_password_hash(password, user), salt);
}

std::string md5_salted_response_from_hash(std::string_view md5_hash,
                                          std::array<unsigned char, 4> salt) {
    // PostgreSQL hashes the 32 hex digits (without "md5") followed by the 4 raw salt bytes.
    std::string_view hex = md5_hash;
    if (hex.size() == 35 && hex.substr(0, 3) == "md5") hex.remove_prefix(3);
    std::string buf(hex);
    buf.append(reinterpret_cast<const char*>(salt.data()), salt.size());
    return "md5" + md5_hex(buf);
}

}  // namespace pgpilot::protocol
