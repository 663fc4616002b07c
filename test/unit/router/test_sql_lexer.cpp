#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/sql_lexer.hpp"

using namespace pgpilot::router;

namespace {

/// Kind and text of every token of every statement, as "kind:text".
std::vector<std::string> dump(std::string_view sql, const lex_options& options = {}) {
    const lexed_query q(sql, options);
    std::vector<std::string> out;
    for (const auto& s : q.statements())
        for (const auto& t : s.tokens)
            out.push_back(std::string(to_string(t.kind)) + ":" + std::string(t.text));
    return out;
}

/// The raw tokens next_token() returns, comments included.
std::vector<std::string> raw(std::string_view sql) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    for (;;) {
        const raw_token t = next_token(sql, pos);
        if (t.kind == token_kind::end) break;
        out.push_back(std::string(to_string(t.kind)) + ":" +
                      std::string(sql.substr(t.begin, t.end - t.begin)) +
                      (t.unterminated ? "!" : ""));
        pos = t.end;
    }
    return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("lexer: words are uppercased for comparison, text is kept", "[router][lexer]") {
    const lexed_query q("select Foo, \"Bar\" FROM t");
    REQUIRE(q.statements().size() == 1);
    const auto toks = q.statements()[0].tokens;
    REQUIRE(toks.size() == 6);
    CHECK(toks[0].text == "select");
    CHECK(toks[0].upper == "SELECT");
    CHECK(toks[0].is("SELECT"));
    CHECK_FALSE(toks[0].is("select"));
    CHECK(toks[1].upper == "FOO");
    CHECK(toks[2].kind == token_kind::comma);
    CHECK(toks[3].kind == token_kind::quoted_identifier);
    CHECK(toks[3].upper == "\"Bar\"");
    CHECK_FALSE(toks[3].is("BAR"));
    CHECK(toks[4].is("FROM"));
}

TEST_CASE("lexer: every token kind", "[router][lexer]") {
    CHECK(dump("SELECT a.b, $1, 3.5, .5e3, 1e-2, 42, 0x1F, 1_000 FROM t;") ==
          strings{"word:SELECT",  "word:a",      "dot:.",        "word:b",    "comma:,",
                  "parameter:$1", "comma:,",     "number:3.5",   "comma:,",   "number:.5e3",
                  "comma:,",      "number:1e-2", "comma:,",      "number:42", "comma:,",
                  "number:0x1F",  "comma:,",     "number:1_000", "word:FROM", "word:t"});
    CHECK(dump("x[1] :: int := => <> != <= >= || @>") ==
          strings{"word:x", "lbracket:[", "number:1", "rbracket:]", "op:::", "word:int",
                  "op::=", "op:=>", "op:<>", "op:!=", "op:<=", "op:>=", "op:||", "op:@>"});
    CHECK(dump("f(a)") == strings{"word:f", "lparen:(", "word:a", "rparen:)"});
    CHECK(dump("a\\b{c}") ==
          strings{"word:a", "other:\\", "word:b", "other:{", "word:c", "other:}"});
}

TEST_CASE("lexer: identifiers", "[router][lexer]") {
    CHECK(dump("a$b _x ñame x1") == strings{"word:a$b", "word:_x", "word:ñame", "word:x1"});
    CHECK(dump("\"a\"\"b\" U&\"d\\0061t\" \"select\"") ==
          strings{"quoted_identifier:\"a\"\"b\"", "quoted_identifier:U&\"d\\0061t\"",
                  "quoted_identifier:\"select\""});
    const lexed_query q("FooBar \"Foo\"\"Bar\" U&\"x\" 'lit'");
    const auto t = q.statements()[0].tokens;
    CHECK(identifier_value(t[0]) == "foobar");
    CHECK(identifier_value(t[1]) == "Foo\"Bar");
    CHECK(identifier_value(t[2]) == "x");
    CHECK(identifier_value(t[3]) == "'lit'");
}

TEST_CASE("lexer: string constants", "[router][lexer]") {
    CHECK(dump("'it''s' 'a' 'b'") == strings{"string:'it''s'", "string:'a'", "string:'b'"});
    // E'' strings: backslash escapes, so \' does not end the string.
    CHECK(dump(R"(E'\';UPDATE t' e'x')") == strings{R"(string:E'\';UPDATE t')", "string:e'x'"});
    CHECK(dump(R"(E'\\';UPDATE t)") == strings{R"(string:E'\\')", "word:UPDATE", "word:t"});
    // Standard strings: backslash is an ordinary character.
    CHECK(dump(R"('\';x)") == strings{R"(string:'\')", "word:x"});
    // ... unless standard_conforming_strings is off.
    lex_options off;
    off.standard_conforming_strings = false;
    CHECK(dump(R"('\'';x)", off) == strings{R"(string:'\'')", "word:x"});
    // U&'' strings keep '' as the only escape.
    CHECK(dump(R"(U&'d\0061t\+000061' UESCAPE '!')") ==
          strings{R"(string:U&'d\0061t\+000061')", "word:UESCAPE", "string:'!'"});
    CHECK(dump("B'1010' X'FF' N'abc' b'1' x'f' n'z'") == strings{"string:B'1010'", "string:X'FF'",
                                                                 "string:N'abc'", "string:b'1'",
                                                                 "string:x'f'", "string:n'z'"});
    // A word ending in e/b/x/n before a quote is not a prefix.
    CHECK(dump("note'x'") == strings{"word:note", "string:'x'"});
}

TEST_CASE("lexer: dollar quotes and parameters", "[router][lexer]") {
    CHECK(dump("SELECT $$; UPDATE t SET a=1$$") ==
          strings{"word:SELECT", "string:$$; UPDATE t SET a=1$$"});
    CHECK(dump("$fn$ a $$ b $x$ c $fn$ d") == strings{"string:$fn$ a $$ b $x$ c $fn$", "word:d"});
    CHECK(dump("$a$ $A$ $a$") == strings{"string:$a$ $A$ $a$"});  // tags are case-sensitive
    CHECK(dump("$1 $23x") == strings{"parameter:$1", "parameter:$23", "word:x"});
    CHECK(dump("a$$b$$") == strings{"word:a$$b$$"});  // `$` continues an identifier
    CHECK(dump("$ $1$") == strings{"other:$", "parameter:$1", "other:$"});
    CHECK(dump("$_x1$q$_x1$") == strings{"string:$_x1$q$_x1$"});
    CHECK(dump("$1a$ b $1a$") == strings{"parameter:$1", "word:a$", "word:b", "parameter:$1",
                                         "word:a$"});  // a tag cannot start with a digit
}

TEST_CASE("lexer: comments", "[router][lexer]") {
    CHECK(raw("-- c\nSELECT 1") == strings{"comment:-- c", "word:SELECT", "number:1"});
    CHECK(raw("/* a /* nested */ b */ SELECT 1") ==
          strings{"comment:/* a /* nested */ b */", "word:SELECT", "number:1"});
    CHECK(raw("a--b\r\nc") == strings{"word:a", "comment:--b", "word:c"});
    CHECK(raw("1+--x\n2") == strings{"number:1", "op:+", "comment:--x", "number:2"});
    CHECK(raw("1*/*x*/2") == strings{"number:1", "op:*", "comment:/*x*/", "number:2"});
    CHECK(raw("/* /* */ x") == strings{"comment:/* /* */ x!"});
    CHECK(dump("SELECT /* ; */ 1 -- ;\n") == strings{"word:SELECT", "number:1"});
}

TEST_CASE("lexer: operators follow PostgreSQL's + and - rule", "[router][lexer]") {
    CHECK(raw("a+-b") == strings{"word:a", "op:+", "op:-", "word:b"});
    CHECK(raw("a@-b") == strings{"word:a", "op:@-", "word:b"});
    CHECK(raw("a<=-1") == strings{"word:a", "op:<=", "op:-", "number:1"});
    CHECK(raw("a!=-1") == strings{"word:a", "op:!=-", "number:1"});
    CHECK(raw("a - -1") == strings{"word:a", "op:-", "op:-", "number:1"});
}

TEST_CASE("lexer: unterminated tokens run to the end and are flagged", "[router][lexer]") {
    CHECK(raw("'abc") == strings{"string:'abc!"});
    CHECK(raw("\"abc") == strings{"quoted_identifier:\"abc!"});
    CHECK(raw("$$abc") == strings{"string:$$abc!"});
    CHECK(raw("$t$abc$$") == strings{"string:$t$abc$$!"});
    CHECK(raw(R"(E'abc\')") == strings{R"(string:E'abc\'!)"});
    CHECK(raw(R"(E'abc\)") == strings{R"(string:E'abc\!)"});
    CHECK(raw("/* abc") == strings{"comment:/* abc!"});
    CHECK(raw("U&'x") == strings{"string:U&'x!"});
    const lexed_query q("SELECT 1; SELECT 'x; SELECT 2");
    REQUIRE(q.statements().size() == 2);
    CHECK_FALSE(q.statements()[0].unterminated);
    CHECK(q.statements()[1].unterminated);
    CHECK(q.statements()[1].text == "SELECT 'x; SELECT 2");
}

TEST_CASE("lexer: splitting into statements", "[router][lexer]") {
    CHECK(split_statements("SELECT 1; UPDATE t SET x=1") ==
          std::vector<std::string_view>{"SELECT 1", "UPDATE t SET x=1"});
    CHECK(split_statements("  SELECT 1 ;;  ; UPDATE t  ;  ") ==
          std::vector<std::string_view>{"SELECT 1", "UPDATE t"});
    CHECK(split_statements("").empty());
    CHECK(split_statements("   \n\t ").empty());
    CHECK(split_statements("-- only a comment").empty());
    CHECK(split_statements("/* a */ ; -- b\n;").empty());
    CHECK(split_statements("SELECT ';' ; SELECT \";\"; SELECT $$;$$") ==
          std::vector<std::string_view>{"SELECT ';'", "SELECT \";\"", "SELECT $$;$$"});
    // A statement's text includes its leading comments.
    CHECK(split_statements("-- c\nSELECT 1; /* d */ SELECT 2 /* e */") ==
          std::vector<std::string_view>{"-- c\nSELECT 1", "/* d */ SELECT 2 /* e */"});
    // An unterminated comment makes a statement of its own.
    const lexed_query q("SELECT 1; /* open");
    REQUIRE(q.statements().size() == 2);
    CHECK(q.statements()[1].tokens.empty());
    CHECK(q.statements()[1].unterminated);
}

TEST_CASE("lexer: BEGIN ATOMIC bodies are not split (as psql)", "[router][lexer]") {
    CHECK(split_statements("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
                           "SELECT 2; END; SELECT 3")
              .size() == 2);
    CHECK(split_statements("create or replace procedure p() begin atomic select case when true "
                           "then 1 else 2 end; insert into t values (1); end; select 3")
              .size() == 2);
    CHECK(split_statements("CREATE FUNCTION f(begin int) RETURNS int AS 'select 1' LANGUAGE sql;"
                           " SELECT 2")
              .size() == 2);
    CHECK(split_statements("CREATE TABLE begin (a int); SELECT 1").size() == 2);
    CHECK(split_statements("BEGIN; SELECT 1; END;").size() == 3);
    const auto parts =
        split_statements("CREATE PROCEDURE p() BEGIN ATOMIC UPDATE t SET a = 1; END; COMMIT");
    REQUIRE(parts.size() == 2);
    CHECK(parts[0] == "CREATE PROCEDURE p() BEGIN ATOMIC UPDATE t SET a = 1; END");
    CHECK(parts[1] == "COMMIT");
}

TEST_CASE("lexer: parenthesis balance per statement", "[router][lexer]") {
    const lexed_query q("SELECT (1); SELECT (1; SELECT 1); SELECT ')' ; SELECT f(g(1))");
    REQUIRE(q.statements().size() == 5);
    CHECK(q.statements()[0].parens_balanced);
    CHECK_FALSE(q.statements()[1].parens_balanced);  // SELECT (1
    CHECK_FALSE(q.statements()[2].parens_balanced);  // SELECT 1)
    CHECK(q.statements()[3].parens_balanced);        // SELECT ')'
    CHECK(q.statements()[4].parens_balanced);
    CHECK(lexed_query(")(").statements()[0].parens_balanced == false);
}

TEST_CASE("lexer: the NO LOAD BALANCE hint", "[router][lexer]") {
    const auto hint = [](std::string_view sql) {
        const lexed_query q(sql);
        REQUIRE(q.statements().size() == 1);
        return q.statements()[0].no_load_balance;
    };
    CHECK(hint("/*NO LOAD BALANCE*/ SELECT 1"));
    CHECK(hint("  /*no load balance*/SELECT 1"));
    CHECK(hint("/* NO  LOAD\nBALANCE */ SELECT 1"));
    CHECK(hint("-- x\n/*NO LOAD BALANCE*/ SELECT 1"));
    CHECK_FALSE(hint("SELECT /*NO LOAD BALANCE*/ 1"));
    CHECK_FALSE(hint("/*NO LOAD BALANCES*/ SELECT 1"));
    CHECK_FALSE(hint("/*NO LOAD*/ SELECT 1"));
    CHECK_FALSE(hint("-- NO LOAD BALANCE\nSELECT 1"));
    const lexed_query q("/*NO LOAD BALANCE*/ SELECT 1; SELECT 2; /*NO LOAD BALANCE*/ SELECT 3");
    REQUIRE(q.statements().size() == 3);
    CHECK(q.statements()[0].no_load_balance);
    CHECK_FALSE(q.statements()[1].no_load_balance);
    CHECK(q.statements()[2].no_load_balance);
}

TEST_CASE("lexer: views stay valid when the result is moved or reused", "[router][lexer]") {
    const std::string sql = "select a; update b";
    lexed_query q(sql);
    lexed_query moved(std::move(q));
    REQUIRE(moved.statements().size() == 2);
    CHECK(moved.statements()[0].tokens[0].upper == "SELECT");
    CHECK(moved.statements()[1].tokens[1].upper == "B");
    const std::string other = "values (1)";
    moved.assign(other);
    REQUIRE(moved.statements().size() == 1);
    CHECK(moved.statements()[0].tokens[0].upper == "VALUES");
    CHECK(moved.tokens().size() == 4);
}

TEST_CASE("lexer: next_token covers the input and always advances", "[router][lexer]") {
    const std::string_view sql = "SELECT 'a' -- x\n, $q$ $q$ /* c */ ;";
    std::size_t pos = 0;
    std::size_t count = 0;
    for (;;) {
        const raw_token t = next_token(sql, pos);
        REQUIRE(t.begin >= pos);
        REQUIRE(t.end <= sql.size());
        if (t.kind == token_kind::end) {
            CHECK(t.begin == sql.size());
            break;
        }
        REQUIRE(t.end > t.begin);
        pos = t.end;
        ++count;
    }
    CHECK(count == 7);
    CHECK(next_token("", 0).kind == token_kind::end);
    CHECK(next_token("abc", 10).kind == token_kind::end);
}

TEST_CASE("lexer: contains_ascii_ci finds a word in any case", "[router][lexer]") {
    CHECK(contains_ascii_ci("declare c cursor with hold for select 1", "WITH HOLD"));
    CHECK(contains_ascii_ci("SELECT Pg_Advisory_Lock(1)", "PG_ADVISORY_LOCK"));
    CHECK(contains_ascii_ci("show pool_nodes", "POOL"));
    CHECK(contains_ascii_ci("POOL", "POOL"));
    CHECK(contains_ascii_ci("anything", ""));
    CHECK_FALSE(contains_ascii_ci("show poo", "POOL"));
    CHECK_FALSE(contains_ascii_ci("with  hold", "WITH HOLD"));
    CHECK_FALSE(contains_ascii_ci("", "POOL"));
    // Only ASCII letters fold: a byte above 0x7f never matches a letter.
    CHECK_FALSE(contains_ascii_ci("p\xc3\xb6ol", "POOL"));
    // Places where the first letter is but the word is not, in both cases, before and between
    // the match; a match that ends the text; a word that starts with something not a letter.
    CHECK(contains_ascii_ci("pPpO pOoPpoOL", "POOL"));
    CHECK(contains_ascii_ci("Pp pPOO copy from stdin", "STDIN"));
    CHECK(contains_ascii_ci("select 1 from pg_catalog.pg_class", "PG_CLASS"));
    CHECK(contains_ascii_ci("a_b _x_ _y", "_Y"));
    CHECK_FALSE(contains_ascii_ci("a_b _x_ _y", "_Z"));
    CHECK_FALSE(contains_ascii_ci("pppppppppoo", "POOL"));
    CHECK_FALSE(contains_ascii_ci("POO", "POOL"));
}
