// A lexer for PostgreSQL SQL text, after the server's own lexical rules (scan.l), as far as
// routing needs them: comments, every kind of string and quoted identifier, dollar quotes,
// parameters, numbers, operators and punctuation. It splits a simple Query string into
// statements at the semicolons the server would split at. It never fails: a string, quoted
// identifier or comment that is not closed runs to the end of the input and is flagged.
// https://www.postgresql.org/docs/15/sql-syntax-lexical.html
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgpilot::router {

/// What one token is.
enum class token_kind : std::uint8_t {
    word,               ///< identifier or keyword, unquoted (`upper` holds it in upper case)
    quoted_identifier,  ///< "..." or U&"..." (text includes the quotes)
    string,             ///< '...', E'...', U&'...', B'...', X'...', N'...', $tag$...$tag$
    number,             ///< 42, 3.5, .5e-3, 0x1F, 1_000
    parameter,          ///< $1
    op,                 ///< operator: = <> || ::  := => * + ... (also a lone `:`)
    lparen,             ///< (
    rparen,             ///< )
    lbracket,           ///< [
    rbracket,           ///< ]
    comma,              ///< ,
    dot,                ///< .
    semicolon,          ///< ; (in a lexed_query only inside BEGIN ATOMIC: elsewhere it splits)
    comment,            ///< -- ... or /* ... */ (only from next_token; never in a lexed_query)
    other,              ///< any other byte (`$` that starts nothing, `\`, `{`, control bytes...)
    end,                ///< end of input (only from next_token)
};

const char* to_string(token_kind);

/// Lexer settings that change how text is split.
struct lex_options {
    /// PostgreSQL's standard_conforming_strings: when off, backslash escapes also in '...'.
    bool standard_conforming_strings = true;
};

/// One token as next_token() finds it: a byte range of the input.
struct raw_token {
    token_kind kind = token_kind::end;
    bool unterminated = false;  ///< string, quoted identifier or comment ran to the end of input
    std::size_t begin = 0;
    std::size_t end = 0;
};

/// The token starting at or after `pos` (whitespace skipped; comments are returned as tokens).
/// Returns kind `end` with begin == end == sql.size() at the end of input. Never fails.
raw_token next_token(std::string_view sql, std::size_t pos, const lex_options& options = {});

/// One token of a lexed_query: views into the query text and into the upper-cased copy.
struct token {
    token_kind kind = token_kind::other;
    bool unterminated = false;  ///< string or quoted identifier ran to the end of input
    std::string_view text;      ///< exactly as in the input (quotes and prefixes included)
    std::string_view upper;     ///< words: text in ASCII upper case; other kinds: same as text

    /// Whether this is the unquoted word `upper_keyword` (given in upper case).
    bool is(std::string_view upper_keyword) const noexcept {
        return kind == token_kind::word && upper == upper_keyword;
    }
    /// The same for a literal: a fixed-length compare, unrolled by the compiler.
    template <std::size_t N>
    bool is(const char (&upper_keyword)[N]) const noexcept {
        if (kind != token_kind::word || upper.size() != N - 1) return false;
        for (std::size_t i = 0; i + 1 < N; ++i)
            if (upper[i] != upper_keyword[i]) return false;
        return true;
    }
};

/// One statement of a Query string, without the `;` that ends it.
struct sql_statement {
    std::string_view text;          ///< from its first token or comment to its last
    std::span<const token> tokens;  ///< comments left out
    bool unterminated = false;      ///< a string, quoted identifier or comment runs to the end
    bool no_load_balance = false;   ///< a leading comment is pgpool's /*NO LOAD BALANCE*/ hint
    bool parens_balanced = true;    ///< every `(` is closed and every `)` closes one
};

/// A Query string lexed and split into statements. Statements with no tokens are left out
/// (`;;`, only comments), except one whose comment is unterminated. Semicolons inside a
/// CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC ... END body do not split (as psql).
/// Views point into the query text, which must outlive this object, and into this object
/// (moving keeps them valid; copying is not allowed).
class lexed_query {
  public:
    lexed_query() = default;
    explicit lexed_query(std::string_view sql, const lex_options& options = {}) {
        assign(sql, options);
    }
    lexed_query(const lexed_query&) = delete;
    lexed_query& operator=(const lexed_query&) = delete;
    lexed_query(lexed_query&&) noexcept = default;
    lexed_query& operator=(lexed_query&&) noexcept = default;

    /// Lexes `sql`, reusing this object's buffers.
    void assign(std::string_view sql, const lex_options& options = {});

    std::string_view sql() const noexcept { return sql_; }
    std::span<const token> tokens() const noexcept { return tokens_; }
    std::span<const sql_statement> statements() const noexcept { return statements_; }

  private:
    std::string_view sql_;
    std::vector<char> upper_;
    std::vector<token> tokens_;
    std::vector<sql_statement> statements_;
    std::vector<std::size_t> starts_;  // index in tokens_ of each statement's first token
};

/// The text of each statement of a Query string (as lexed_query splits them).
std::vector<std::string_view> split_statements(std::string_view sql,
                                               const lex_options& options = {});

/// The name a word or quoted identifier token denotes, as PostgreSQL folds it: an unquoted
/// word in ASCII lower case, a quoted identifier without its quotes and with "" undoubled
/// (U&"..." escapes are not decoded). Other tokens: their text.
std::string identifier_value(const token& t);

/// Whether `text` contains `upper_word` (given in upper case), ASCII letters of `text` in any
/// case; no copy of `text` is made.
bool contains_ascii_ci(std::string_view text, std::string_view upper_word);
/// Whether `text` begins with `upper_word` (given in upper case), ASCII letters of `text` in
/// any case.
bool starts_with_ascii_ci(std::string_view text, std::string_view upper_word);

}  // namespace pgpilot::router
