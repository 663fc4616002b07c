// Tests of SCRAM-SHA-256 (protocol/scram.hpp): RFC 7677's test vector, PostgreSQL's "n=," variant
// (expected values computed with python3 hashlib/hmac), verifiers made by a real PostgreSQL 15,
// client against server, malformed input and random input.
// https://www.rfc-editor.org/rfc/rfc7677#section-3
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/scram.hpp"

using namespace pgpilot::protocol;
using namespace std::string_literals;

namespace {

// RFC 7677 section 3 (user "user", password "pencil").
constexpr std::string_view rfc_client_nonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view rfc_salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
constexpr std::string_view rfc_verifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

// The same exchange as PostgreSQL's client sends it, with an empty username ("n=,r=...").
constexpr std::string_view pg_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=";
constexpr std::string_view pg_server_final = "v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=";

// Made by PostgreSQL 15: SET password_encryption = 'scram-sha-256'; CREATE ROLE u_scram PASSWORD
// 'pencil'; SELECT rolpassword FROM pg_authid.
constexpr std::string_view pg15_verifier =
    "SCRAM-SHA-256$4096:csSU4aBy2m/iuxOtOOYgig==$PtfA4GuAW9VhRrhaGwIfXcXXkBRxTJGfmpE4zV4y6hU=:"
    "XsSivkqg+i+mRTR6ZGAbJ2tavMpC74p7IDg0+7teacg=";

std::string rfc_salt() {
    return *base64_decode(rfc_salt_b64);
}

scram_verifier rfc_scram_verifier() {
    return *parse_scram_verifier(rfc_verifier);
}

/// Runs a whole exchange; returns true if both sides accept.
bool exchange(scram_client& c, scram_server& s) {
    auto sf = s.on_client_first(c.client_first());
    if (!sf.ok) return false;
    auto cf = c.on_server_first(sf.message);
    if (!cf.ok) return false;
    auto fin = s.on_client_final(cf.message);
    if (!fin.ok) return false;
    return c.on_server_final(fin.message).ok;
}

std::string mutate(std::string s, std::mt19937& rng) {
    std::uniform_int_distribution<int> op(0, 3), byte(0, 255);
    int n = 1 + int(rng() % 3);
    for (int k = 0; k < n; ++k) {
        std::size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
        switch (op(rng)) {
            case 0:
                if (pos < s.size()) s[pos] = char(byte(rng));
                break;
            case 1:
                s.insert(s.begin() + std::ptrdiff_t(pos), char(byte(rng)));
                break;
            case 2:
                if (pos < s.size()) s.erase(pos, 1 + rng() % 4);
                break;
            case 3:
                s.resize(pos);
                break;
        }
    }
    return s;
}

std::string random_string(std::mt19937& rng, std::size_t max_len) {
    std::string s(rng() % (max_len + 1), '\0');
    for (auto& c : s)
        c = char(rng() & 0xff);
    return s;
}

}  // namespace

TEST_CASE("base64 round trip and strict decoding", "[scram][base64]") {
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
    CHECK(base64_encode("foobar") == "Zm9vYmFy");
    CHECK(base64_encode("n,,") == "biws");
    CHECK(base64_encode("y,,") == "eSws");
    CHECK(base64_encode("\xff\xfe\x00"s) == "//4A");
    for (std::string s : {""s, "f"s, "fo"s, "foo"s, "\x00\x01\x02\xff"s}) {
        auto d = base64_decode(base64_encode(s));
        REQUIRE(d);
        CHECK(*d == s);
    }
    CHECK_FALSE(base64_decode("Zg"));        // missing padding
    CHECK_FALSE(base64_decode("Zg="));       // bad length
    CHECK_FALSE(base64_decode("Z==="));      // too much padding
    CHECK_FALSE(base64_decode("Zg==Zg=="));  // padding in the middle
    CHECK_FALSE(base64_decode("Zm=v"));      // data after padding
    CHECK_FALSE(base64_decode("Zm9 "));      // outside the alphabet
    CHECK_FALSE(base64_decode("Zm9v\n"));
    CHECK_FALSE(base64_decode("Zm-_"));  // URL-safe alphabet is not accepted
}

TEST_CASE("RFC 7677 vector through the generic proof helper", "[scram]") {
    // The RFC's client-first-message-bare includes "n=user"; it is part of AuthMessage.
    std::string bare = "n=user,r="s + std::string(rfc_client_nonce);
    std::string without_proof =
        "c=biws,r="s + std::string(rfc_client_nonce) + std::string(rfc_server_nonce);
    std::string auth_message = bare + "," + std::string(rfc_server_first) + "," + without_proof;
    auto salted = scram_salted_password("pencil", rfc_salt(), 4096);
    auto p = compute_scram_proof(salted, auth_message);
    std::string proof(reinterpret_cast<const char*>(p.client_proof.data()), 32);
    std::string sig(reinterpret_cast<const char*>(p.server_signature.data()), 32);
    CHECK(without_proof + ",p=" + base64_encode(proof) == rfc_client_final);
    CHECK("v=" + base64_encode(sig) == rfc_server_final);
}

TEST_CASE("RFC 7677 vector through scram_server", "[scram]") {
    scram_server server(rfc_scram_verifier(), std::string(rfc_server_nonce));
    auto first = server.on_client_first("n,,n=user,r="s + std::string(rfc_client_nonce));
    REQUIRE(first.ok);
    CHECK(first.message == rfc_server_first);
    auto fin = server.on_client_final(rfc_client_final);
    REQUIRE(fin.ok);
    CHECK(fin.message == rfc_server_final);
}

TEST_CASE("PostgreSQL's n=, variant of the RFC vector", "[scram]") {
    SECTION("scram_client produces libpq's messages") {
        scram_client client("pencil", std::string(rfc_client_nonce));
        CHECK(client.client_first() == "n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        auto fin = client.on_server_first(rfc_server_first);
        REQUIRE(fin.ok);
        CHECK(fin.message == pg_client_final);
        CHECK(client.on_server_final(pg_server_final).ok);
    }
    SECTION("scram_server accepts them") {
        scram_server server(rfc_scram_verifier(), std::string(rfc_server_nonce));
        auto first = server.on_client_first("n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        REQUIRE(first.ok);
        CHECK(first.message == rfc_server_first);
        auto fin = server.on_client_final(pg_client_final);
        REQUIRE(fin.ok);
        CHECK(fin.message == pg_server_final);
    }
    SECTION("the client rejects the RFC's server signature (different AuthMessage)") {
        scram_client client("pencil", std::string(rfc_client_nonce));
        client.client_first();
        REQUIRE(client.on_server_first(rfc_server_first).ok);
        auto r = client.on_server_final(rfc_server_final);
        CHECK_FALSE(r.ok);
        CHECK(r.error == "incorrect server signature");
    }
    SECTION("the server rejects the RFC's proof for an n=, client-first") {
        scram_server server(rfc_scram_verifier(), std::string(rfc_server_nonce));
        REQUIRE(server.on_client_first("n,,n=,r=rOprNGfwEbeRWgbNEkqO").ok);
        auto r = server.on_client_final(rfc_client_final);
        CHECK_FALSE(r.ok);
        CHECK_FALSE(server.protocol_violation());
    }
}

TEST_CASE("verifiers: make, encode, parse", "[scram]") {
    auto v = make_scram_verifier("pencil", rfc_salt(), 4096);
    CHECK(encode_scram_verifier(v) == rfc_verifier);
    auto back = parse_scram_verifier(encode_scram_verifier(v));
    REQUIRE(back);
    CHECK(back->iterations == 4096);
    CHECK(back->salt == rfc_salt());
    CHECK(back->stored_key == v.stored_key);
    CHECK(back->server_key == v.server_key);

    auto other = make_scram_verifier("secret", "0123456789abcdef", 17);
    auto other_back = parse_scram_verifier(encode_scram_verifier(other));
    REQUIRE(other_back);
    CHECK(other_back->iterations == 17);
    CHECK(encode_scram_verifier(*other_back) == encode_scram_verifier(other));
    CHECK(verify_scram_password(other, "secret"));
    CHECK_FALSE(verify_scram_password(other, "Secret"));
}

TEST_CASE("a verifier made by PostgreSQL 15", "[scram]") {
    auto v = parse_scram_verifier(pg15_verifier);
    REQUIRE(v);
    CHECK(v->iterations == 4096);
    CHECK(v->salt.size() == 16);
    CHECK(encode_scram_verifier(*v) == pg15_verifier);
    CHECK(verify_scram_password(*v, "pencil"));
    CHECK_FALSE(verify_scram_password(*v, "pencil "));
    // Recomputing from the same salt gives PostgreSQL's keys.
    auto mine = make_scram_verifier("pencil", v->salt, v->iterations);
    CHECK(mine.stored_key == v->stored_key);
    CHECK(mine.server_key == v->server_key);

    scram_client good("pencil");
    scram_server s1(*v);
    CHECK(exchange(good, s1));
    scram_client bad("pencil2");
    scram_server s2(*v);
    CHECK_FALSE(exchange(bad, s2));
}

TEST_CASE("parse_scram_verifier rejects malformed verifiers", "[scram]") {
    std::string good(pg15_verifier);
    REQUIRE(parse_scram_verifier(good));
    std::string keys = good.substr(good.find('$', 14));  // "$StoredKey:ServerKey"
    const std::vector<std::string> bad = {
        "",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256$",
        "scram-sha-256" + good.substr(13),                      // case matters
        "SCRAM-SHA-1" + good.substr(13),                        // other scheme
        "SCRAM-SHA-256$0:csSU4aBy2m/iuxOtOOYgig==" + keys,      // zero iterations
        "SCRAM-SHA-256$-1:csSU4aBy2m/iuxOtOOYgig==" + keys,     // negative
        "SCRAM-SHA-256$+4096:csSU4aBy2m/iuxOtOOYgig==" + keys,  // sign
        "SCRAM-SHA-256$4096x:csSU4aBy2m/iuxOtOOYgig==" + keys,
        "SCRAM-SHA-256$99999999999:csSU4aBy2m/iuxOtOOYgig==" + keys,  // overflow
        "SCRAM-SHA-256$:csSU4aBy2m/iuxOtOOYgig==" + keys,
        "SCRAM-SHA-256$4096:csSU4aBy2m/iuxOtOOYgig=" + keys,  // bad salt base64
        "SCRAM-SHA-256$4096csSU4aBy2m/iuxOtOOYgig==" + keys,  // missing ':'
        good.substr(0, good.size() - 4) + "AA==",             // server key wrong length
        good.substr(0, good.rfind(':')),                      // no server key
        good + ":AAAA",                                       // extra part
        good + "$",
        "SCRAM-SHA-256$4096:csSU4aBy2m/iuxOtOOYgig==$AAAA:AAAA",  // short keys
        "md56520b9e6d1360465923cccaa4a18e5f0",
        "pencil",
    };
    for (const auto& s : bad) {
        INFO(s);
        CHECK_FALSE(parse_scram_verifier(s));
    }
}

TEST_CASE("scram_client against scram_server", "[scram]") {
    auto v = make_scram_verifier("correct horse", "some salt bytes!", 64);
    SECTION("right password") {
        scram_client c("correct horse");
        scram_server s(v);
        CHECK(exchange(c, s));
    }
    SECTION("wrong password") {
        scram_client c("correct horse ");
        scram_server s(v);
        auto sf = s.on_client_first(c.client_first());
        REQUIRE(sf.ok);
        auto cf = c.on_server_first(sf.message);
        REQUIRE(cf.ok);
        auto fin = s.on_client_final(cf.message);
        CHECK_FALSE(fin.ok);
        CHECK(fin.error == "invalid SCRAM proof");
        CHECK_FALSE(s.protocol_violation());
    }
    SECTION("a doomed server rejects even the right password") {
        scram_client c("correct horse");
        scram_server s(v, {}, true);
        CHECK_FALSE(exchange(c, s));
    }
    SECTION("the client rejects a server that does not know the secret") {
        // A server with the same salt and iterations but another password's keys.
        scram_client c("correct horse");
        scram_server s(make_scram_verifier("other", "some salt bytes!", 64));
        auto sf = s.on_client_first(c.client_first());
        auto cf = c.on_server_first(sf.message);
        REQUIRE(cf.ok);
        CHECK_FALSE(s.on_client_final(cf.message).ok);
        // Even if an impostor says "v=" with some signature, the client refuses it.
        CHECK_FALSE(c.on_server_final("v=" + base64_encode(std::string(32, 'x'))).ok);
    }
    SECTION("empty and non-ASCII passwords are used as raw bytes") {
        for (std::string pw : {""s, "p\xC3\xA4ssw\xC3\xB6rd"s, "\xff\xfe"s}) {
            scram_client c(pw);
            scram_server s(make_scram_verifier(pw, "salt", 8));
            CHECK(exchange(c, s));
        }
    }
    SECTION("random nonces differ") {
        scram_client a("x"), b("x");
        CHECK(a.client_first() != b.client_first());
        CHECK(a.client_first().size() == std::string("n,,n=,r=").size() + 24);
    }
}

TEST_CASE("mock verifier salt is stable per user", "[scram]") {
    CHECK(scram_mock_salt("alice") == scram_mock_salt("alice"));
    CHECK(scram_mock_salt("alice") != scram_mock_salt("bob"));
    CHECK(scram_mock_salt("alice").size() == scram_default_salt_length);
    auto m = mock_scram_verifier("alice");
    CHECK(m.iterations == scram_default_iterations);
    CHECK(m.salt == scram_mock_salt("alice"));
}

TEST_CASE("scram_server rejects malformed client-first-messages", "[scram]") {
    struct bad_case {
        std::string msg;
        std::string error;
    };
    const std::vector<bad_case> cases = {
        {"", "malformed SCRAM message (empty message)"},
        {"n,,n=,r=abc\0def"s, "malformed SCRAM message (length mismatch)"},
        {"p=tls-server-end-point,,n=,r=abc",
         "client requires SCRAM channel binding, but it is not supported"},
        {"x,,n=,r=abc", "malformed SCRAM message (unexpected channel-binding flag 'x')"},
        {"n", "malformed SCRAM message (comma expected, got end of string)"},
        {"n;,n=,r=abc", "malformed SCRAM message (comma expected, got ';')"},
        {"n,a=bob,n=,r=abc", "client uses authorization identity, but it is not supported"},
        {"n,x,n=,r=abc", "malformed SCRAM message (comma expected, got 'x')"},
        {"n,,", "malformed SCRAM message (attribute 'n' expected, end of string found)"},
        {"n,,r=abc", "malformed SCRAM message (attribute 'n' expected, 'r' found)"},
        {"n,,m=ext,n=,r=abc", "client requires an unsupported SCRAM extension"},
        {"n,,n", "malformed SCRAM message (expected = in attr n)"},
        {"n,,n=", "malformed SCRAM message (attribute 'r' expected, end of string found)"},
        {"n,,n=,x=abc", "malformed SCRAM message (attribute 'r' expected, 'x' found)"},
        {"n,,n=,r=", "malformed SCRAM message (invalid nonce in client-first-message)"},
        {"n,,n=,r=a\x01"s, "malformed SCRAM message (invalid nonce in client-first-message)"},
        {"n,,n=,r=abc,",
         "malformed SCRAM message (attribute expected, invalid char end of string "
         "found)"},
        {"n,,n=,r=abc,1=x", "malformed SCRAM message (attribute expected, invalid char '1' found)"},
        {"n,,n=,r=abc,e", "malformed SCRAM message (expected = in attr e)"},
    };
    for (const auto& c : cases) {
        INFO(c.msg);
        scram_server s(rfc_scram_verifier(), "srv");
        auto r = s.on_client_first(c.msg);
        CHECK_FALSE(r.ok);
        CHECK(r.error == c.error);
        CHECK(s.protocol_violation());
    }
    SECTION("extensions after the nonce and a y flag are accepted") {
        scram_server s(rfc_scram_verifier(), "srv");
        CHECK(s.on_client_first("y,,n=whoever,r=abc,x=ext").ok);
    }
}

TEST_CASE("scram_server rejects malformed client-final-messages", "[scram]") {
    // Server nonce "srv", client nonce "abc": the combined nonce is "abcsrv".
    auto start = [](std::string_view first = "n,,n=,r=abc") {
        scram_server s(rfc_scram_verifier(), "srv");
        REQUIRE(s.on_client_first(first).ok);
        return s;
    };
    const std::string proof = "p=" + base64_encode(std::string(32, 'p'));
    struct bad_case {
        std::string msg;
        std::string error;
    };
    const std::vector<bad_case> cases = {
        {"", "malformed SCRAM message (empty message)"},
        {"c=biws,r=abcsrv,\0"s + proof, "malformed SCRAM message (length mismatch)"},
        {"r=abcsrv," + proof, "malformed SCRAM message (attribute 'c' expected, 'r' found)"},
        {"c=eSws,r=abcsrv," + proof,
         "unexpected SCRAM channel-binding attribute in client-final-message"},
        {"c=biws," + proof, "malformed SCRAM message (attribute 'r' expected, 'p' found)"},
        {"c=biws,r=abcsrv",
         "malformed SCRAM message (attribute 'p' expected, end of string found)"},
        {"c=biws,r=abcsrv,x=1",
         "malformed SCRAM message (attribute 'p' expected, end of string "
         "found)"},
        {"c=biws,r=abcsrv," + proof + ",x=1",
         "malformed SCRAM message (garbage at the end of client-final-message)"},
        {"c=biws,r=abcsrv,p=!!!!",
         "malformed SCRAM message (malformed proof in "
         "client-final-message)"},
        {"c=biws,r=abcsrv,p=AAAA",
         "malformed SCRAM message (malformed proof in "
         "client-final-message)"},
        {"c=biws,r=abcXXX," + proof, "invalid SCRAM response (nonce mismatch)"},
        {"c=biws,r=abc," + proof, "invalid SCRAM response (nonce mismatch)"},
    };
    for (const auto& c : cases) {
        INFO(c.msg);
        auto s = start();
        auto r = s.on_client_final(c.msg);
        CHECK_FALSE(r.ok);
        CHECK(r.error == c.error);
        CHECK(s.protocol_violation());
    }
    SECTION("a y,, client must send c=eSws") {
        auto s = start("y,,n=,r=abc");
        auto r = s.on_client_final("c=biws,r=abcsrv," + proof);
        CHECK(r.error == "unexpected SCRAM channel-binding attribute in client-final-message");
    }
    SECTION("a well-formed wrong proof is not a protocol violation") {
        auto s = start();
        auto r = s.on_client_final("c=biws,r=abcsrv,x=ext," + proof);
        CHECK(r.error == "invalid SCRAM proof");
        CHECK_FALSE(s.protocol_violation());
    }
    SECTION("out of order") {
        scram_server s(rfc_scram_verifier(), "srv");
        CHECK_FALSE(s.on_client_final("c=biws,r=abcsrv," + proof).ok);
        auto s2 = start();
        CHECK_FALSE(s2.on_client_first("n,,n=,r=abc").ok);
    }
}

TEST_CASE("scram_client rejects malformed server messages", "[scram]") {
    auto started = [] {
        scram_client c("pencil", "abc");
        c.client_first();
        return c;
    };
    struct bad_case {
        std::string msg;
        std::string error;
    };
    const std::vector<bad_case> cases = {
        {"r=xyz,s=QUJD,i=1", "invalid SCRAM response (nonce mismatch)"},
        {"r=ab,s=QUJD,i=1", "invalid SCRAM response (nonce mismatch)"},
        {"m=x,r=abcdef,s=QUJD,i=1", "server requires an unsupported SCRAM extension"},
        {"s=QUJD,r=abcdef,i=1", "malformed SCRAM message (attribute 'r' expected, 's' found)"},
        {"r=abcdef,s=QUJ,i=1", "malformed SCRAM message (invalid salt)"},
        {"r=abcdef,s=QUJD",
         "malformed SCRAM message (attribute 'i' expected, end of string found)"},
        {"r=abcdef,s=QUJD,i=0",
         "SCRAM iteration count 0 from the server is less than 1 (pgpilot accepts 1 to 100000)"},
        {"r=abcdef,s=QUJD,i=-1",
         "SCRAM iteration count -1 from the server is less than 1 (pgpilot accepts 1 to 100000)"},
        {"r=abcdef,s=QUJD,i=x", "malformed SCRAM message (invalid iteration count)"},
        {"r=abcdef,s=QUJD,i=", "malformed SCRAM message (invalid iteration count)"},
        {"r=abcdef,s=QUJD,i=+5", "malformed SCRAM message (invalid iteration count)"},
        {"r=abcdef,s=QUJD,i=-", "malformed SCRAM message (invalid iteration count)"},
        {"r=abcdef,s=QUJD,i=1,x=y",
         "malformed SCRAM message (garbage at end of "
         "server-first-message)"},
        {"r=abcdef,s=QUJD,i=1\0"s, "malformed SCRAM message (length mismatch)"},
        {"", "malformed SCRAM message (attribute 'r' expected, end of string found)"},
    };
    for (const auto& c : cases) {
        INFO(c.msg);
        auto cl = started();
        auto r = cl.on_server_first(c.msg);
        CHECK_FALSE(r.ok);
        CHECK(r.error == c.error);
    }
    SECTION("server-final") {
        auto fin = [&](std::string_view msg) {
            auto cl = started();
            REQUIRE(cl.on_server_first("r=abcdef,s=QUJD,i=1").ok);
            return cl.on_server_final(msg);
        };
        CHECK(fin("e=invalid-proof").error ==
              "error received from server in SCRAM exchange: invalid-proof");
        CHECK(fin("v=AAAA").error == "malformed SCRAM message (malformed server signature)");
        CHECK(fin("x=AAAA").error == "malformed SCRAM message (attribute 'v' expected, 'x' found)");
        CHECK(fin("v=" + base64_encode(std::string(32, 'x')) + ",x=1").error ==
              "malformed SCRAM message (garbage at end of server-final-message)");
        CHECK(fin("v=" + base64_encode(std::string(32, 'x'))).error ==
              "incorrect server signature");
    }
    SECTION("out of order") {
        scram_client c("pencil", "abc");
        CHECK_FALSE(c.on_server_first("r=abcdef,s=QUJD,i=1").ok);  // before client_first()
        auto c2 = started();
        CHECK_FALSE(c2.on_server_final("v=AAAA").ok);
        auto c3 = started();
        REQUIRE(c3.on_server_first("r=abcdef,s=QUJD,i=1").ok);
        CHECK_FALSE(c3.on_server_first("r=abcdef,s=QUJD,i=1").ok);
    }
}

TEST_CASE("scram_client bounds the iteration count a backend asks for", "[scram]") {
    // docs/fuzzing.md, F1: PBKDF2 runs on the event loop, so the count a backend sends must be
    // bounded before any derivation starts.
    STATIC_REQUIRE(scram_max_iterations == 100000);
    auto first = [](std::string_view count) {
        scram_client c("pencil", "abc");
        c.client_first();
        return c.on_server_first("r=abcdef,s=QUJD,i=" + std::string(count));
    };
    const std::string too_large = " from the server is too large (pgpilot accepts 1 to 100000)";
    // Checked first: without the bound, the cases below would run PBKDF2 for minutes.
    auto just_above = first("100001");
    REQUIRE_FALSE(just_above.ok);
    CHECK(just_above.error == "SCRAM iteration count 100001" + too_large);
    CHECK(just_above.message.empty());

    CHECK(first("2147483647").error == "SCRAM iteration count 2147483647" + too_large);
    CHECK(first("2147483648").error == "SCRAM iteration count 2147483648" + too_large);
    CHECK(first("0000200000").error == "SCRAM iteration count 0000200000" + too_large);
    CHECK(first(std::string(40, '9')).error ==
          "SCRAM iteration count " + std::string(20, '9') + "..." + too_large);
    CHECK(first("00").error ==
          "SCRAM iteration count 00 from the server is less than 1 (pgpilot accepts 1 to 100000)");

    // The bound itself and PostgreSQL's default are accepted (leading zeros as strtol reads them).
    CHECK(first("100000").ok);
    CHECK(first("0000100000").ok);
    CHECK(first("4096").ok);

    SECTION("a refused count is final") {
        scram_client c("pencil", "abc");
        c.client_first();
        REQUIRE_FALSE(c.on_server_first("r=abcdef,s=QUJD,i=1000000").ok);
        CHECK_FALSE(c.on_server_first("r=abcdef,s=QUJD,i=1").ok);
        CHECK_FALSE(c.on_server_final("v=" + base64_encode(std::string(32, 'x'))).ok);
    }
}

TEST_CASE("SCRAM parsers survive random and mutated input", "[scram][fuzz]") {
    std::mt19937 rng(20240521);
    auto v = make_scram_verifier("pencil", "salt", 2);
    const std::string verifier = encode_scram_verifier(v);

    // A valid exchange to mutate from.
    scram_client model_client("pencil", "clientnonce");
    scram_server model_server(v, "servernonce");
    const std::string client_first = model_client.client_first();
    const std::string server_first = model_server.on_client_first(client_first).message;
    const std::string client_final = model_client.on_server_first(server_first).message;
    const std::string server_final = model_server.on_client_final(client_final).message;
    REQUIRE_FALSE(server_final.empty());

    for (int i = 0; i < 3000; ++i) {
        std::string noise = random_string(rng, 80);
        (void)base64_decode(noise);
        (void)parse_scram_verifier(noise);
        (void)parse_scram_verifier(mutate(verifier, rng));
        (void)parse_scram_verifier("SCRAM-SHA-256$" + noise);

        scram_server s1(v, "servernonce");
        (void)s1.on_client_first(i % 2 ? noise : mutate(client_first, rng));
        (void)s1.on_client_final(mutate(client_final, rng));

        scram_server s2(v, "servernonce");
        REQUIRE(s2.on_client_first(client_first).ok);
        auto r = s2.on_client_final(i % 2 ? noise : mutate(client_final, rng));
        if (r.ok) CHECK(r.message == server_final);  // only if the mutation was a no-op

        scram_client c1("pencil", "clientnonce");
        c1.client_first();
        (void)c1.on_server_first(i % 2 ? noise : mutate(server_first, rng));
        (void)c1.on_server_final(mutate(server_final, rng));

        scram_client c2("pencil", "clientnonce");
        c2.client_first();
        REQUIRE(c2.on_server_first(server_first).ok);
        auto f = c2.on_server_final(i % 2 ? noise : mutate(server_final, rng));
        (void)f;
    }
    SUCCEED("no crash");
}
