// Tests of client and backend authentication (protocol/auth.hpp). client_authenticator is driven
// with the bytes backend_authenticator produces, so each side tests the other; the expected
// behaviour follows PostgreSQL's src/backend/libpq/auth.c and crypt.c.
// https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
#include <catch2/catch.hpp>

#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/auth.hpp"
#include "protocol/frame.hpp"
#include "protocol/md5.hpp"
#include "protocol/scram.hpp"

using namespace pgpilot::protocol;
using namespace std::string_literals;

namespace {

using client_step = client_authenticator::step;
using backend_step = backend_authenticator::step;

struct parsed_frame {
    char tag;
    std::string body;
};

/// Splits a byte string that must consist of whole frames.
std::vector<parsed_frame> frames(std::string_view bytes) {
    std::vector<parsed_frame> out;
    while (!bytes.empty()) {
        whole_frame f;
        REQUIRE(next_whole_frame(as_bytes(bytes), f) == frame_status::header);
        out.push_back({f.tag, std::string(as_chars(f.body))});
        bytes.remove_prefix(f.total);
    }
    return out;
}

std::uint32_t auth_code(const parsed_frame& f) {
    REQUIRE(f.tag == 'R');
    REQUIRE(f.body.size() >= 4);
    return read_u32(as_bytes(f.body).data());
}

/// The outcome of a client (backend_authenticator) talking to client_authenticator.
struct outcome {
    bool ok = false;                   ///< server said done_ok and the client saw AuthenticationOk
    std::string server_error;          ///< client_authenticator's fail text
    std::string sqlstate;              ///< client_authenticator's failure_sqlstate()
    std::string client_error;          ///< backend_authenticator's fail text
    std::vector<std::uint32_t> codes;  ///< Authentication codes the server sent, in order
    std::optional<std::string> cleartext;
};

outcome converse(auth_method method, const std::string& user, std::optional<std::string> stored,
                 std::optional<std::string> client_password) {
    client_authenticator server(method, user, std::move(stored));
    backend_authenticator client(user, std::move(client_password));
    outcome out;
    client_step s = server.start();
    for (int round = 0; round < 10; ++round) {
        std::string reply;
        bool client_saw_ok = false;
        for (const auto& f : frames(s.to_send)) {
            out.codes.push_back(auth_code(f));
            backend_step b = client.on_authentication(as_bytes(f.body));
            if (b.k == backend_step::fail) {
                out.client_error = b.error;
                return out;
            }
            if (b.k == backend_step::send) reply += b.to_send;
            if (b.k == backend_step::ok) client_saw_ok = true;
        }
        if (s.k == client_step::send_and_done_ok) {
            out.ok = client_saw_ok;
            out.cleartext = server.cleartext_password();
            return out;
        }
        if (s.k == client_step::fail) {
            out.server_error = s.error;
            out.sqlstate = std::string(server.failure_sqlstate());
            return out;
        }
        auto replies = frames(reply);
        REQUIRE(replies.size() == 1);
        REQUIRE(replies[0].tag == 'p');
        s = server.on_message('p', as_bytes(replies[0].body));
    }
    FAIL("conversation did not end");
    return out;
}

const std::string user = "bob";
const std::string failed = "password authentication failed for user \"bob\"";

std::string sasl_initial_response(std::string_view mechanism, std::optional<std::string> data) {
    std::string b;
    append_cstr(b, mechanism);
    if (data) {
        append_u32(b, std::uint32_t(data->size()));
        b += *data;
    } else {
        append_u32(b, 0xffffffffu);
    }
    return b;
}

std::string cstr(std::string_view s) {
    std::string b;
    append_cstr(b, s);
    return b;
}

std::string auth_body(auth_request code, std::string_view payload = {}) {
    std::string b;
    append_u32(b, std::uint32_t(code));
    b += payload;
    return b;
}

/// Pulls the SCRAM data out of a SASLContinue frame.
std::string sasl_continue_data(const client_step& s) {
    auto fs = frames(s.to_send);
    REQUIRE(fs.size() == 1);
    REQUIRE(auth_code(fs[0]) == 11);
    return fs[0].body.substr(4);
}

std::string salt_of(std::string_view server_first) {
    auto s = server_first.find(",s=");
    auto e = server_first.find(",i=");
    return std::string(server_first.substr(s + 3, e - s - 3));
}

}  // namespace

TEST_CASE("classify_secret", "[auth]") {
    CHECK(classify_secret("pencil") == secret_kind::plain);
    CHECK(classify_secret("") == secret_kind::plain);
    CHECK(classify_secret(md5_password_hash("pencil", "bob")) == secret_kind::md5);
    CHECK(classify_secret("md5NOTHEX") == secret_kind::plain);
    CHECK(classify_secret(encode_scram_verifier(make_scram_verifier("pencil", "salt", 2))) ==
          secret_kind::scram);
    CHECK(classify_secret("SCRAM-SHA-256$4096:garbage") == secret_kind::plain);
}

TEST_CASE("authentication_message frames", "[auth]") {
    CHECK(authentication_message(auth_request::ok) == "R\0\0\0\x08\0\0\0\0"s);
    CHECK(authentication_message(auth_request::cleartext_password) == "R\0\0\0\x08\0\0\0\x03"s);
    CHECK(authentication_message(auth_request::md5_password, "\x01\x02\x03\x04") ==
          "R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04"s);
}

TEST_CASE("client_authenticator: every method x stored form x password", "[auth]") {
    const std::string plain = "pencil";
    const std::string md5 = md5_password_hash("pencil", user);
    const std::string scram = encode_scram_verifier(make_scram_verifier("pencil", "saltsalt", 16));
    const std::vector<std::uint32_t> sasl_ok = {10, 11, 12, 0};

    SECTION("trust accepts anyone without asking") {
        for (auto stored : {std::optional<std::string>(plain), std::optional<std::string>()}) {
            auto o = converse(auth_method::trust, user, stored, std::nullopt);
            CHECK(o.ok);
            CHECK(o.codes == std::vector<std::uint32_t>{0});
        }
    }

    SECTION("password") {
        for (const auto& stored : {plain, md5, scram}) {
            INFO(stored);
            auto right = converse(auth_method::password, user, stored, "pencil");
            CHECK(right.ok);
            CHECK(right.codes == std::vector<std::uint32_t>{3, 0});
            CHECK(right.cleartext == "pencil");

            auto wrong = converse(auth_method::password, user, stored, "pencil2");
            CHECK_FALSE(wrong.ok);
            CHECK(wrong.server_error == failed);
            CHECK(wrong.sqlstate == "28P01");
        }
        auto unknown = converse(auth_method::password, user, std::nullopt, "pencil");
        CHECK(unknown.codes == std::vector<std::uint32_t>{3});
        CHECK(unknown.server_error == failed);
        CHECK(unknown.sqlstate == "28P01");
    }

    SECTION("md5 with an md5 or plain secret challenges with MD5") {
        for (const auto& stored : {plain, md5}) {
            INFO(stored);
            auto right = converse(auth_method::md5, user, stored, "pencil");
            CHECK(right.ok);
            CHECK(right.codes == std::vector<std::uint32_t>{5, 0});
            CHECK_FALSE(right.cleartext);

            auto wrong = converse(auth_method::md5, user, stored, "pencil2");
            CHECK(wrong.server_error == failed);
            CHECK(wrong.sqlstate == "28P01");
        }
        // A client configured with the hash instead of the password answers just as well.
        CHECK(converse(auth_method::md5, user, md5, md5).ok);
        CHECK(converse(auth_method::md5, user, plain, md5).ok);
    }

    SECTION("md5 with a SCRAM secret runs SCRAM, as PostgreSQL does") {
        auto right = converse(auth_method::md5, user, scram, "pencil");
        CHECK(right.ok);
        CHECK(right.codes == sasl_ok);
        auto wrong = converse(auth_method::md5, user, scram, "pencil2");
        CHECK(wrong.server_error == failed);
        CHECK(wrong.codes == std::vector<std::uint32_t>{10, 11});
    }

    SECTION("md5 with an unknown user goes through an MD5 exchange, then fails") {
        auto o = converse(auth_method::md5, user, std::nullopt, "pencil");
        CHECK(o.codes == std::vector<std::uint32_t>{5});
        CHECK(o.server_error == failed);
        CHECK(o.sqlstate == "28P01");
    }

    SECTION("scram-sha-256 with a SCRAM or plain secret") {
        for (const auto& stored : {scram, plain}) {
            INFO(stored);
            auto right = converse(auth_method::scram_sha_256, user, stored, "pencil");
            CHECK(right.ok);
            CHECK(right.codes == sasl_ok);
            auto wrong = converse(auth_method::scram_sha_256, user, stored, "pencil2");
            CHECK(wrong.server_error == failed);
            CHECK(wrong.sqlstate == "28P01");
            CHECK(wrong.codes == std::vector<std::uint32_t>{10, 11});
        }
    }

    SECTION("scram-sha-256 with an md5 secret fails after the whole exchange") {
        auto o = converse(auth_method::scram_sha_256, user, md5, "pencil");
        CHECK(o.codes == std::vector<std::uint32_t>{10, 11});
        CHECK(o.server_error == failed);
        CHECK(o.sqlstate == "28P01");
    }

    SECTION("scram-sha-256 with an unknown user looks like a wrong password") {
        auto o = converse(auth_method::scram_sha_256, user, std::nullopt, "pencil");
        CHECK(o.codes == std::vector<std::uint32_t>{10, 11});
        CHECK(o.server_error == failed);
        CHECK(o.sqlstate == "28P01");
    }

    SECTION("an empty stored secret counts as no password") {
        for (auto m : {auth_method::password, auth_method::md5, auth_method::scram_sha_256}) {
            auto o = converse(m, user, ""s, "pencil");
            CHECK_FALSE(o.ok);
            CHECK(o.server_error == failed);
        }
    }

    SECTION("a client without a password gives up on its side") {
        for (auto m : {auth_method::password, auth_method::md5, auth_method::scram_sha_256}) {
            auto o = converse(m, user, plain, std::nullopt);
            CHECK_FALSE(o.ok);
            CHECK(o.client_error == "backend asked for a password and none is configured");
        }
    }
}

TEST_CASE("client_authenticator: SCRAM salt does not reveal unknown users", "[auth]") {
    auto server_first_for = [](std::optional<std::string> stored) {
        client_authenticator a(auth_method::scram_sha_256, "carol", std::move(stored));
        a.start();
        auto s = a.on_message(
            'p', as_bytes(sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=clientnonce"s)));
        REQUIRE(s.k == client_step::send_and_read);
        return sasl_continue_data(s);
    };
    std::string unknown1 = server_first_for(std::nullopt);
    std::string unknown2 = server_first_for(std::nullopt);
    std::string plain = server_first_for("pencil"s);
    CHECK(salt_of(unknown1) == salt_of(unknown2));
    // A user with a plain secret gets the same stable salt an unknown user of that name would.
    CHECK(salt_of(plain) == salt_of(unknown1));
    CHECK(unknown1.substr(unknown1.find(",i=")) == ",i=4096");
    // The server nonce is fresh each time.
    CHECK(unknown1 != unknown2);
}

TEST_CASE("client_authenticator: malformed messages", "[auth]") {
    const std::string scram = encode_scram_verifier(make_scram_verifier("pencil", "saltsalt", 4));
    auto sasl_server = [&] {
        client_authenticator a(auth_method::scram_sha_256, user, scram);
        auto s = a.start();
        REQUIRE(s.k == client_step::send_and_read);
        return a;
    };
    auto expect_violation = [](client_authenticator& a, const client_step& s,
                               std::string_view error) {
        CHECK(s.k == client_step::fail);
        CHECK(s.error == error);
        CHECK(a.failure_sqlstate() == "08P01");
        CHECK(s.to_send.empty());
    };

    SECTION("a message with another tag") {
        client_authenticator pw(auth_method::password, user, "pencil"s);
        pw.start();
        auto s = pw.on_message('Q', as_bytes(cstr("select 1")));
        expect_violation(pw, s, "expected password response, got message type 'Q'");

        auto a = sasl_server();
        auto s2 = a.on_message('Q', as_bytes(cstr("select 1")));
        expect_violation(a, s2, "expected SASL response, got message type 'Q'");

        client_authenticator m(auth_method::md5, user, "pencil"s);
        m.start();
        expect_violation(m, m.on_message('\0', {}),
                         "expected password response, got message type 0");
    }

    SECTION("password packets") {
        for (auto method : {auth_method::password, auth_method::md5}) {
            client_authenticator a(method, user, "pencil"s);
            a.start();
            expect_violation(a, a.on_message('p', as_bytes("pencil"s)),
                             "invalid password packet size");
            client_authenticator b(method, user, "pencil"s);
            b.start();
            expect_violation(b, b.on_message('p', as_bytes("pen\0cil\0"s)),
                             "invalid password packet size");
            client_authenticator c(method, user, "pencil"s);
            c.start();
            expect_violation(c, c.on_message('p', {}), "invalid password packet size");
            client_authenticator d(method, user, "pencil"s);
            d.start();
            auto s = d.on_message('p', as_bytes("\0"s));
            CHECK(s.k == client_step::fail);
            CHECK(s.error == "empty password returned by client");
            CHECK(d.failure_sqlstate() == "28P01");
        }
    }

    SECTION("truncated SASLInitialResponse") {
        const std::string full = sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=abc"s);
        auto a = sasl_server();
        expect_violation(a, a.on_message('p', as_bytes("SCRAM-SHA-256"s)),
                         "malformed SASLInitialResponse message (unterminated mechanism name)");
        auto b = sasl_server();
        expect_violation(b, b.on_message('p', as_bytes(full.substr(0, 16))),
                         "malformed SASLInitialResponse message (truncated length)");
        auto c = sasl_server();
        expect_violation(c, c.on_message('p', as_bytes(full.substr(0, full.size() - 1))),
                         "malformed SASLInitialResponse message (length mismatch)");
        auto d = sasl_server();
        expect_violation(d, d.on_message('p', as_bytes(full + "x")),
                         "malformed SASLInitialResponse message (length mismatch)");
        auto e = sasl_server();
        expect_violation(e,
                         e.on_message('p', as_bytes(sasl_initial_response("SCRAM-SHA-256", ""s))),
                         "malformed SCRAM message (empty message)");
        auto f = sasl_server();
        std::string negative = cstr("SCRAM-SHA-256");
        append_u32(negative, 0xfffffffeu);
        expect_violation(f, f.on_message('p', as_bytes(negative)),
                         "malformed SASLInitialResponse message (length mismatch)");
    }

    SECTION("wrong mechanism") {
        for (std::string mech : {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "", "scram-sha-256"}) {
            auto a = sasl_server();
            expect_violation(a,
                             a.on_message('p', as_bytes(sasl_initial_response(mech, "n,,n=,r=x"s))),
                             "client selected an invalid SASL authentication mechanism");
        }
    }

    SECTION("channel binding required by the client is an unsupported feature") {
        auto a = sasl_server();
        auto s = a.on_message('p', as_bytes(sasl_initial_response(
                                       "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=x"s)));
        CHECK(s.k == client_step::fail);
        CHECK(a.failure_sqlstate() == "0A000");
    }

    SECTION("bad client-final: bad base64, wrong nonce") {
        auto run_final = [&](auto make_final) {
            auto a = sasl_server();
            auto s =
                a.on_message('p', as_bytes(sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=abc"s)));
            REQUIRE(s.k == client_step::send_and_read);
            std::string server_first = sasl_continue_data(s);
            std::string nonce = server_first.substr(2, server_first.find(',') - 2);
            return std::pair{std::move(a), make_final(nonce)};
        };
        {
            auto [a, final_msg] =
                run_final([](const std::string& nonce) { return "c=biws,r=" + nonce + ",p=%%%%"; });
            expect_violation(a, a.on_message('p', as_bytes(final_msg)),
                             "malformed SCRAM message (malformed proof in client-final-message)");
        }
        {
            auto [a, final_msg] = run_final([](const std::string& nonce) {
                return "c=biws,r=" + nonce + "x,p=" + base64_encode(std::string(32, 'p'));
            });
            expect_violation(a, a.on_message('p', as_bytes(final_msg)),
                             "invalid SCRAM response (nonce mismatch)");
        }
        {
            auto [a, final_msg] = run_final([](const std::string& nonce) {
                return "c=biws,r=" + nonce + ",p=" + base64_encode(std::string(32, 'p'));
            });
            auto s = a.on_message('p', as_bytes(final_msg));
            CHECK(s.error == failed);  // well-formed but wrong proof
            CHECK(a.failure_sqlstate() == "28P01");
        }
    }

    SECTION("SASLInitialResponse without data: empty challenge, then client-first") {
        client_authenticator a(auth_method::scram_sha_256, user, scram);
        a.start();
        auto s = a.on_message('p', as_bytes(sasl_initial_response("SCRAM-SHA-256", std::nullopt)));
        REQUIRE(s.k == client_step::send_and_read);
        CHECK(sasl_continue_data(s).empty());

        scram_client c("pencil");
        s = a.on_message('p', as_bytes(c.client_first()));
        REQUIRE(s.k == client_step::send_and_read);
        auto fin = c.on_server_first(sasl_continue_data(s));
        REQUIRE(fin.ok);
        s = a.on_message('p', as_bytes(fin.message));
        REQUIRE(s.k == client_step::send_and_done_ok);
        auto fs = frames(s.to_send);
        REQUIRE(fs.size() == 2);
        CHECK(auth_code(fs[0]) == 12);
        CHECK(c.on_server_final(fs[0].body.substr(4)).ok);
        CHECK(auth_code(fs[1]) == 0);
        CHECK(fs[1].body.size() == 4);

        // Data after a -1 length is malformed.
        client_authenticator b(auth_method::scram_sha_256, user, scram);
        b.start();
        auto bad = sasl_initial_response("SCRAM-SHA-256", std::nullopt) + "x";
        expect_violation(b, b.on_message('p', as_bytes(bad)),
                         "malformed SASLInitialResponse message (length mismatch)");
    }

    SECTION("out of order and oversized") {
        client_authenticator a(auth_method::password, user, "pencil"s);
        auto s = a.on_message('p', as_bytes(cstr("pencil")));
        expect_violation(a, s, "unexpected message before authentication started");

        client_authenticator b(auth_method::password, user, "pencil"s);
        b.start();
        REQUIRE(b.on_message('p', as_bytes(cstr("pencil"))).k == client_step::send_and_done_ok);
        expect_violation(b, b.on_message('p', as_bytes(cstr("pencil"))),
                         "unexpected message after authentication finished");

        client_authenticator c(auth_method::password, user, "pencil"s);
        c.start();
        CHECK(c.start().k == client_step::fail);

        client_authenticator d(auth_method::password, user, "pencil"s);
        d.start();
        expect_violation(d, d.on_message('p', as_bytes(std::string(70000, 'x') + '\0')),
                         "authentication message too long");
    }
}

TEST_CASE("backend_authenticator", "[auth]") {
    SECTION("AuthenticationOk") {
        backend_authenticator b("alice", std::nullopt);
        CHECK(b.on_authentication(as_bytes(auth_body(auth_request::ok))).k == backend_step::ok);
        backend_authenticator c("alice", std::nullopt);
        CHECK(c.on_authentication(as_bytes("\0\0\0"s)).k == backend_step::fail);
        backend_authenticator d("alice", std::nullopt);
        CHECK(d.on_authentication(as_bytes(auth_body(auth_request::ok, "x"))).k ==
              backend_step::fail);
    }

    SECTION("cleartext") {
        backend_authenticator b("alice", "s3cret"s);
        auto s = b.on_authentication(as_bytes(auth_body(auth_request::cleartext_password)));
        REQUIRE(s.k == backend_step::send);
        CHECK(s.to_send == "p\0\0\0\x0bs3cret\0"s);
    }

    SECTION("no password configured") {
        for (auto code : {auth_request::cleartext_password, auth_request::md5_password}) {
            for (auto pw : {std::optional<std::string>(), std::optional<std::string>(""s)}) {
                backend_authenticator b("alice", pw);
                auto s = b.on_authentication(as_bytes(auth_body(code, "salt")));
                CHECK(s.k == backend_step::fail);
                CHECK(s.error == "backend asked for a password and none is configured");
            }
        }
        backend_authenticator b("alice", std::nullopt);
        auto s = b.on_authentication(
            as_bytes(auth_body(auth_request::sasl, cstr("SCRAM-SHA-256") + '\0')));
        CHECK(s.error == "backend asked for a password and none is configured");
    }

    SECTION("md5 from a password and from a stored hash") {
        std::array<unsigned char, 4> salt{0xde, 0xad, 0xbe, 0xef};
        std::string salt_bytes(reinterpret_cast<const char*>(salt.data()), 4);
        backend_authenticator b("u_md5", "pencil"s);
        auto s = b.on_authentication(as_bytes(auth_body(auth_request::md5_password, salt_bytes)));
        REQUIRE(s.k == backend_step::send);
        auto f = frames(s.to_send);
        REQUIRE(f.size() == 1);
        CHECK(f[0].tag == 'p');
        CHECK(f[0].body == cstr("md50653f8b0f34acb24da186da218c158d9"));

        backend_authenticator h("u_md5", "md56520b9e6d1360465923cccaa4a18e5f0"s);
        auto s2 = h.on_authentication(as_bytes(auth_body(auth_request::md5_password, salt_bytes)));
        REQUIRE(s2.k == backend_step::send);
        CHECK(s2.to_send == s.to_send);

        backend_authenticator t("u_md5", "pencil"s);
        CHECK(t.on_authentication(as_bytes(auth_body(auth_request::md5_password, "abc"))).k ==
              backend_step::fail);
    }

    SECTION("an md5 hash or SCRAM secret cannot answer cleartext or SCRAM") {
        const std::string md5 = md5_password_hash("pencil", "alice");
        const std::string scram = encode_scram_verifier(make_scram_verifier("pencil", "s", 2));
        for (const auto& pw : {md5, scram}) {
            for (auto code : {auth_request::cleartext_password, auth_request::sasl}) {
                backend_authenticator b("alice", pw);
                auto s =
                    b.on_authentication(as_bytes(auth_body(code, cstr("SCRAM-SHA-256") + '\0')));
                CHECK(s.k == backend_step::fail);
            }
        }
        backend_authenticator b("alice", scram);
        auto s = b.on_authentication(as_bytes(auth_body(auth_request::md5_password, "salt")));
        CHECK(s.k == backend_step::fail);
        CHECK_THAT(s.error, Catch::Contains("SCRAM secret"));
    }

    SECTION("SASL mechanism selection") {
        backend_authenticator b("alice", "pencil"s);
        auto s = b.on_authentication(as_bytes(auth_body(
            auth_request::sasl, cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + '\0')));
        REQUIRE(s.k == backend_step::send);
        auto f = frames(s.to_send);
        REQUIRE(f.size() == 1);
        CHECK(f[0].tag == 'p');
        const std::string& body = f[0].body;
        REQUIRE(body.substr(0, 14) == cstr("SCRAM-SHA-256"));
        std::uint32_t len = read_u32(as_bytes(body).data() + 14);
        CHECK(len == body.size() - 18);
        CHECK(body.substr(18, 8) == "n,,n=,r=");

        backend_authenticator only_plus("alice", "pencil"s);
        auto s2 = only_plus.on_authentication(
            as_bytes(auth_body(auth_request::sasl, cstr("SCRAM-SHA-256-PLUS") + '\0')));
        CHECK(s2.k == backend_step::fail);
        CHECK(s2.error ==
              "backend offered no supported SASL mechanism (offered: SCRAM-SHA-256-PLUS)");

        backend_authenticator none("alice", "pencil"s);
        CHECK(none.on_authentication(as_bytes(auth_body(auth_request::sasl, "\0"s))).error ==
              "backend offered no supported SASL mechanism (offered: none)");

        backend_authenticator unterminated("alice", "pencil"s);
        CHECK(
            unterminated.on_authentication(as_bytes(auth_body(auth_request::sasl, "SCRAM-SHA-256")))
                .k == backend_step::fail);
    }

    SECTION("SASL out of order, bad signature, early AuthenticationOk") {
        backend_authenticator b("alice", "pencil"s);
        CHECK(b.on_authentication(as_bytes(auth_body(auth_request::sasl_continue, "r=x"))).k ==
              backend_step::fail);
        backend_authenticator c("alice", "pencil"s);
        CHECK(c.on_authentication(as_bytes(auth_body(auth_request::sasl_final, "v=x"))).k ==
              backend_step::fail);

        // A full exchange against a scram_server, with the last steps tampered with.
        auto drive = [](backend_authenticator& ba, scram_server& server) -> std::string {
            auto s = ba.on_authentication(
                as_bytes(auth_body(auth_request::sasl, cstr("SCRAM-SHA-256") + '\0')));
            REQUIRE(s.k == backend_step::send);
            std::string first = frames(s.to_send)[0].body.substr(18);
            auto sf = server.on_client_first(first);
            REQUIRE(sf.ok);
            s = ba.on_authentication(as_bytes(auth_body(auth_request::sasl_continue, sf.message)));
            REQUIRE(s.k == backend_step::send);
            auto fin = server.on_client_final(frames(s.to_send)[0].body);
            REQUIRE(fin.ok);
            return fin.message;
        };
        auto v = make_scram_verifier("pencil", "salt", 4);
        {
            // A server-first-message with an iteration count above the bound fails at once.
            backend_authenticator ba("alice", "pencil"s);
            auto s = ba.on_authentication(
                as_bytes(auth_body(auth_request::sasl, cstr("SCRAM-SHA-256") + '\0')));
            REQUIRE(s.k == backend_step::send);
            std::string first = frames(s.to_send)[0].body.substr(18);
            std::string nonce = first.substr(first.find("r=") + 2);
            s = ba.on_authentication(as_bytes(
                auth_body(auth_request::sasl_continue, "r=" + nonce + "srv,s=c2FsdA==,i=100001")));
            CHECK(s.k == backend_step::fail);
            CHECK(s.error ==
                  "SCRAM authentication with the backend failed: SCRAM iteration count 100001 "
                  "from the server is too large (pgpilot accepts 1 to 100000)");
        }
        {
            backend_authenticator ba("alice", "pencil"s);
            scram_server server(v);
            std::string server_final = drive(ba, server);
            auto s =
                ba.on_authentication(as_bytes(auth_body(auth_request::sasl_final, server_final)));
            CHECK(s.k == backend_step::none);
            CHECK(ba.on_authentication(as_bytes(auth_body(auth_request::ok))).k ==
                  backend_step::ok);
        }
        {
            backend_authenticator ba("alice", "pencil"s);
            scram_server server(v);
            drive(ba, server);
            auto s = ba.on_authentication(as_bytes(
                auth_body(auth_request::sasl_final, "v=" + base64_encode(std::string(32, 'x')))));
            CHECK(s.k == backend_step::fail);
            CHECK_THAT(s.error, Catch::Contains("incorrect server signature"));
        }
        {
            backend_authenticator ba("alice", "pencil"s);
            scram_server server(v);
            drive(ba, server);
            auto s = ba.on_authentication(as_bytes(auth_body(auth_request::ok)));
            CHECK(s.k == backend_step::fail);
            CHECK(s.error ==
                  "backend sent AuthenticationOk before completing SCRAM authentication");
        }
    }

    SECTION("unsupported methods are named") {
        struct c {
            std::uint32_t code;
            std::string name;
        };
        for (auto [code, name] :
             {c{7, "GSSAPI"}, c{9, "SSPI"}, c{2, "Kerberos V5"}, c{6, "SCM credentials"},
              c{8, "GSSAPI continue"}, c{99, "unknown"}}) {
            backend_authenticator b("alice", "pencil"s);
            std::string body;
            append_u32(body, code);
            auto s = b.on_authentication(as_bytes(body));
            CHECK(s.k == backend_step::fail);
            CHECK(s.error == "backend requested an unsupported authentication method: " + name +
                                 " (code " + std::to_string(code) + ")");
        }
    }
}

TEST_CASE("authenticators survive random input", "[auth][fuzz]") {
    std::mt19937 rng(7677);
    auto random_bytes = [&](std::size_t max_len) {
        std::string s(rng() % (max_len + 1), '\0');
        for (auto& ch : s)
            ch = char(rng() & 0xff);
        return s;
    };
    const std::string scram = encode_scram_verifier(make_scram_verifier("pencil", "salt", 2));
    const std::string md5 = md5_password_hash("pencil", user);
    const std::vector<std::optional<std::string>> stored = {std::nullopt, "pencil"s, md5, scram};

    for (int i = 0; i < 2000; ++i) {
        // Random first answer to every method, and random second SCRAM message.
        auto method = auth_method(rng() % 4);
        const auto& secret = stored[rng() % stored.size()];
        // Plain secrets under SCRAM cost a 4096-iteration derivation; keep them rare.
        if (secret == "pencil"s && method != auth_method::password && i % 20) continue;
        client_authenticator a(method, user, secret);
        a.start();
        char tag = (rng() % 8) ? 'p' : char(rng() & 0xff);
        std::string noise = random_bytes(120);
        if (rng() % 2) noise = sasl_initial_response("SCRAM-SHA-256", random_bytes(60));
        auto s = a.on_message(tag, as_bytes(noise));
        if (s.k == client_step::send_and_done_ok) {
            // Only the password methods can succeed by chance (they cannot, with random bytes).
            CHECK(method == auth_method::trust);
        }
        if (s.k == client_step::send_and_read) (void)a.on_message('p', as_bytes(random_bytes(120)));

        // A valid SCRAM start, then a random client-final.
        client_authenticator b(auth_method::scram_sha_256, user, scram);
        b.start();
        auto first = b.on_message(
            'p', as_bytes(sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=" + std::to_string(i))));
        REQUIRE(first.k == client_step::send_and_read);
        CHECK(b.on_message('p', as_bytes(random_bytes(150))).k == client_step::fail);

        // Random Authentication messages to a backend_authenticator.
        backend_authenticator ba(user,
                                 (i % 3) ? std::optional<std::string>("pencil") : std::nullopt);
        for (int k = 0; k < 4; ++k) {
            std::string body;
            append_u32(body, (rng() % 3) ? std::uint32_t(rng() % 14) : std::uint32_t(rng()));
            body += random_bytes(40);
            if (ba.on_authentication(as_bytes(body)).k == backend_step::fail) break;
        }

        // A valid SASL start toward a backend, then a mutated server-first.
        backend_authenticator bs(user, "pencil"s);
        auto s1 = bs.on_authentication(
            as_bytes(auth_body(auth_request::sasl, cstr("SCRAM-SHA-256") + '\0')));
        REQUIRE(s1.k == backend_step::send);
        std::string client_first = frames(s1.to_send)[0].body.substr(18);
        std::string server_first = "r=" + client_first.substr(8) + "srv,s=c2FsdA==,i=2";
        std::size_t pos = rng() % server_first.size();
        server_first[pos] = char(rng() & 0xff);
        if (rng() % 2) server_first.resize(rng() % server_first.size());
        auto s2 =
            bs.on_authentication(as_bytes(auth_body(auth_request::sasl_continue, server_first)));
        if (s2.k == backend_step::send)
            CHECK(bs.on_authentication(
                        as_bytes(auth_body(auth_request::sasl_final, random_bytes(50))))
                      .k == backend_step::fail);
    }
    SUCCEED("no crash");
}
