// Tests of PostgreSQL's MD5 password hashing (protocol/md5.hpp). Expected values were computed
// with python3 hashlib following PostgreSQL's rule md5(password || role), and one was produced
// by a real PostgreSQL 15 (CREATE ROLE u_md5 PASSWORD 'pencil' with password_encryption = md5).
#include <catch2/catch.hpp>

#include <array>
#include <string>

#include "protocol/md5.hpp"

using namespace pgpilot::protocol;

TEST_CASE("md5_hex of known vectors", "[md5]") {
    CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
    CHECK(md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
    CHECK(md5_hex("foobar") == "3858f62230ac3c915f300c664312c63f");
    CHECK(md5_hex(std::string("a\0b", 3)).size() == 32);
}

TEST_CASE("md5_password_hash is md5(password || user)", "[md5]") {
    // Password first, then the role name: password "foo", user "bar" hashes "foobar".
    CHECK(md5_password_hash("foo", "bar") == "md53858f62230ac3c915f300c664312c63f");
    // ...and password "bar", user "foo" hashes "barfoo".
    CHECK(md5_password_hash("bar", "foo") == "md596948aad3fcae80c08a35c9b5958cd89");
    // As stored by PostgreSQL 15 for role u_md5 with password 'pencil'.
    CHECK(md5_password_hash("pencil", "u_md5") == "md56520b9e6d1360465923cccaa4a18e5f0");
}

TEST_CASE("md5 salted response from password and from stored hash agree", "[md5]") {
    std::array<unsigned char, 4> salt{1, 2, 3, 4};
    CHECK(md5_salted_response_from_password("foo", "bar", salt) ==
          "md56e4f0b50f7277feb74acbf2a7734c9cb");
    CHECK(md5_salted_response_from_hash("md53858f62230ac3c915f300c664312c63f", salt) ==
          "md56e4f0b50f7277feb74acbf2a7734c9cb");
    // A bare digest without the prefix is accepted too.
    CHECK(md5_salted_response_from_hash("3858f62230ac3c915f300c664312c63f", salt) ==
          "md56e4f0b50f7277feb74acbf2a7734c9cb");

    std::array<unsigned char, 4> salt2{0xde, 0xad, 0xbe, 0xef};
    CHECK(md5_salted_response_from_hash("md56520b9e6d1360465923cccaa4a18e5f0", salt2) ==
          "md50653f8b0f34acb24da186da218c158d9");
    CHECK(md5_salted_response_from_password("pencil", "u_md5", salt2) ==
          "md50653f8b0f34acb24da186da218c158d9");
    // Salt bytes matter, including NUL bytes.
    std::array<unsigned char, 4> zero{0, 0, 0, 0};
    CHECK(md5_salted_response_from_password("pencil", "u_md5", zero) !=
          md5_salted_response_from_password("pencil", "u_md5", salt2));
}

TEST_CASE("is_md5_hash follows get_password_type", "[md5]") {
    CHECK(is_md5_hash("md56520b9e6d1360465923cccaa4a18e5f0"));
    CHECK_FALSE(is_md5_hash("md56520B9E6D1360465923CCCAA4A18E5F0"));   // lowercase only
    CHECK_FALSE(is_md5_hash("md56520b9e6d1360465923cccaa4a18e5f"));    // too short
    CHECK_FALSE(is_md5_hash("md56520b9e6d1360465923cccaa4a18e5f00"));  // too long
    CHECK_FALSE(is_md5_hash("md56520b9e6d1360465923cccaa4a18e5fg"));   // not hex
    CHECK_FALSE(is_md5_hash("xx56520b9e6d1360465923cccaa4a18e5f0"));
    CHECK_FALSE(is_md5_hash(""));
}
