#include "router/sql_lexer.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

namespace pgpilot::router {

namespace {

// Byte classes after scan.l.
enum : std::uint8_t {
    c_space = 1,        // space [ \t\n\r\f\v]
    c_ident_start = 2,  // ident_start [A-Za-z\200-\377_]
    c_ident_cont = 4,   // ident_cont [A-Za-z\200-\377_0-9\$]
    c_dolq_cont = 8,    // dolq_cont [A-Za-z\200-\377_0-9] (no `$`)
    c_digit = 16,       // [0-9]
    c_op = 32,          // op_chars [\~\!\@\#\^\&\|\`\?\+\-\*\/\%\<\>\=]
    c_non_math = 64,    // op chars that keep a trailing + or - in an operator: ~!@#^&|`?%
};

constexpr std::array<std::uint8_t, 256> make_classes() {
    std::array<std::uint8_t, 256> t{};
    for (unsigned char c : std::string_view(" \t\n\r\f\v"))
        t[c] |= c_space;
    for (int c = 0; c < 256; ++c) {
        const bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
        const bool digit = c >= '0' && c <= '9';
        if (alpha) t[c] |= c_ident_start | c_ident_cont | c_dolq_cont;
        if (digit) t[c] |= c_digit | c_ident_cont | c_dolq_cont;
    }
    t['$'] |= c_ident_cont;
    for (unsigned char c : std::string_view("~!@#^&|`?+-*/%<>="))
        t[c] |= c_op;
    for (unsigned char c : std::string_view("~!@#^&|`?%"))
        t[c] |= c_non_math;
    return t;
}
constexpr std::array<std::uint8_t, 256> classes = make_classes();

// What a token starting with a byte can be: one switch instead of a chain of tests.
enum start : std::uint8_t {
    s_other,
    s_space,
    s_ident,   // a word
    s_prefix,  // a word, or E'', B'', X'', N'', U&'' and U&"" (e b x n u, either case)
    s_digit,
    s_dot,
    s_quote,
    s_dquote,
    s_dollar,
    s_minus,
    s_slash,
    s_op,
    s_colon,
    s_lparen,
    s_rparen,
    s_lbracket,
    s_rbracket,
    s_comma,
    s_semicolon,
};

constexpr std::array<std::uint8_t, 256> make_starts() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const auto b = static_cast<unsigned char>(c);
        if (classes[b] & c_space) t[b] = s_space;
        if (classes[b] & c_ident_start) t[b] = s_ident;
        if (classes[b] & c_digit) t[b] = s_digit;
        if (classes[b] & c_op) t[b] = s_op;
    }
    for (unsigned char c : std::string_view("eEbBxXnNuU"))
        t[c] = s_prefix;
    t['.'] = s_dot;
    t['\''] = s_quote;
    t['"'] = s_dquote;
    t['$'] = s_dollar;
    t['-'] = s_minus;
    t['/'] = s_slash;
    t[':'] = s_colon;
    t['('] = s_lparen;
    t[')'] = s_rparen;
    t['['] = s_lbracket;
    t[']'] = s_rbracket;
    t[','] = s_comma;
    t[';'] = s_semicolon;
    return t;
}
constexpr std::array<std::uint8_t, 256> starts = make_starts();

constexpr bool is(unsigned char c, std::uint8_t cls) {
    return (classes[c] & cls) != 0;
}
constexpr bool is_space(unsigned char c) {
    return is(c, c_space);
}
constexpr bool is_digit(unsigned char c) {
    return is(c, c_digit);
}
constexpr bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_ident_start(unsigned char c) {
    return is(c, c_ident_start);
}
constexpr bool is_ident_cont(unsigned char c) {
    return is(c, c_ident_cont);
}
constexpr bool is_dolq_cont(unsigned char c) {
    return is(c, c_dolq_cont);
}
constexpr bool is_op_char(unsigned char c) {
    return is(c, c_op);
}
constexpr bool is_non_math_op_char(unsigned char c) {
    return is(c, c_non_math);
}
constexpr char ascii_upper(char c) {
    return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
}
constexpr char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}

struct scanner {
    std::string_view s;
    std::size_t n;

    unsigned char at(std::size_t i) const { return i < n ? static_cast<unsigned char>(s[i]) : 0; }

    // A quoted string or identifier whose opening quote `q` is at `i`; `body_start` is i + 1.
    // '' (or "") stands for one quote; with `backslash`, \ escapes the next byte.
    raw_token quoted(token_kind kind, std::size_t begin, std::size_t i, char q,
                     bool backslash) const {
        ++i;
        while (i < n) {
            const char c = s[i];
            if (backslash && c == '\\') {
                i += 2;
                continue;
            }
            if (c == q) {
                if (at(i + 1) == static_cast<unsigned char>(q)) {
                    i += 2;
                    continue;
                }
                return {kind, false, begin, i + 1};
            }
            ++i;
        }
        return {kind, true, begin, n};
    }

    raw_token block_comment(std::size_t begin) const {
        std::size_t i = begin + 2;
        std::size_t depth = 1;
        while (i < n) {
            if (s[i] == '/' && at(i + 1) == '*') {
                ++depth;
                i += 2;
            } else if (s[i] == '*' && at(i + 1) == '/') {
                i += 2;
                if (--depth == 0) return {token_kind::comment, false, begin, i};
            } else {
                ++i;
            }
        }
        return {token_kind::comment, true, begin, n};
    }

    raw_token number(std::size_t begin) const {
        std::size_t i = begin;
        const auto digits = [&] {
            // PostgreSQL 16 allows single underscores between digits.
            while (i < n && (is_digit(at(i)) || (at(i) == '_' && is_digit(at(i + 1)))))
                ++i;
        };
        if (at(i) == '0' &&
            (at(i + 1) == 'x' || at(i + 1) == 'X' || at(i + 1) == 'o' || at(i + 1) == 'O' ||
             at(i + 1) == 'b' || at(i + 1) == 'B') &&
            (is_digit(at(i + 2)) || is_alpha(at(i + 2)) || at(i + 2) == '_')) {
            i += 2;  // PostgreSQL 16 hexadecimal, octal, binary integers
            while (i < n && (is_digit(at(i)) || is_alpha(at(i)) || at(i) == '_'))
                ++i;
            return {token_kind::number, false, begin, i};
        }
        digits();
        if (at(i) == '.' && at(i + 1) != '.') {  // `1..2` is 1 followed by `..`
            ++i;
            digits();
        }
        if (at(i) == 'e' || at(i) == 'E') {
            std::size_t j = i + 1;
            if (at(j) == '+' || at(j) == '-') ++j;
            if (is_digit(at(j))) {
                i = j;
                digits();
            }
        }
        return {token_kind::number, false, begin, i};
    }

    raw_token dollar(std::size_t begin) const {
        if (is_digit(at(begin + 1))) {
            std::size_t i = begin + 1;
            while (i < n && is_digit(at(i)))
                ++i;
            return {token_kind::parameter, false, begin, i};
        }
        std::size_t i = begin + 1;
        if (i < n && is_ident_start(at(i))) {
            while (i < n && is_dolq_cont(at(i)))
                ++i;
        }
        if (at(i) != '$') return {token_kind::other, false, begin, begin + 1};
        const std::string_view delimiter = s.substr(begin, i + 1 - begin);
        const std::size_t close = s.find(delimiter, i + 1);
        if (close == std::string_view::npos) return {token_kind::string, true, begin, n};
        return {token_kind::string, false, begin, close + delimiter.size()};
    }

    raw_token operator_(std::size_t begin) const {
        std::size_t i = begin;
        while (i < n && is_op_char(at(i))) {
            // A comment start ends the operator (the first two bytes are never one: see next()).
            if (i > begin &&
                ((at(i) == '-' && at(i + 1) == '-') || (at(i) == '/' && at(i + 1) == '*')))
                break;
            ++i;
        }
        std::size_t len = i - begin;
        if (len > 1 && (s[begin + len - 1] == '+' || s[begin + len - 1] == '-')) {
            bool keep = false;
            for (std::size_t k = begin; k + 1 < begin + len; ++k)
                if (is_non_math_op_char(at(k))) keep = true;
            if (!keep) {
                do {
                    --len;
                } while (len > 1 && (s[begin + len - 1] == '+' || s[begin + len - 1] == '-'));
            }
        }
        return {token_kind::op, false, begin, begin + len};
    }

    std::size_t word_end(std::size_t i) const {
        const auto* p = reinterpret_cast<const unsigned char*>(s.data());
        while (i < n && is_ident_cont(p[i]))
            ++i;
        return i;
    }

    [[gnu::always_inline]] raw_token next(std::size_t pos, const lex_options& options) const {
        const auto* p = reinterpret_cast<const unsigned char*>(s.data());
        while (pos < n && is_space(p[pos]))
            ++pos;
        if (pos >= n) return {token_kind::end, false, n, n};
        const std::size_t b = pos;
        const unsigned char c = p[pos];
        switch (starts[c]) {
            case s_ident:
                return {token_kind::word, false, b, word_end(pos + 1)};
            case s_prefix: {
                const unsigned char d = at(pos + 1);
                if (d == '\'') {
                    if (c == 'e' || c == 'E')
                        return quoted(token_kind::string, b, pos + 1, '\'', true);
                    if (c != 'u' && c != 'U')  // B'' X'' N''
                        return quoted(
                            token_kind::string, b, pos + 1, '\'',
                            !options.standard_conforming_strings && (c == 'n' || c == 'N'));
                } else if ((c == 'u' || c == 'U') && d == '&') {
                    if (at(pos + 2) == '\'')
                        return quoted(token_kind::string, b, pos + 2, '\'', false);
                    if (at(pos + 2) == '"')
                        return quoted(token_kind::quoted_identifier, b, pos + 2, '"', false);
                }
                return {token_kind::word, false, b, word_end(pos + 1)};
            }
            case s_digit:
                return number(b);
            case s_dot:
                if (is_digit(at(pos + 1))) return number(b);
                return {token_kind::dot, false, b, b + 1};
            case s_quote:
                return quoted(token_kind::string, b, pos, '\'',
                              !options.standard_conforming_strings);
            case s_dquote:
                return quoted(token_kind::quoted_identifier, b, pos, '"', false);
            case s_dollar:
                return dollar(b);
            case s_minus:
                if (at(pos + 1) == '-') {
                    std::size_t i = pos + 2;
                    while (i < n && p[i] != '\n' && p[i] != '\r')
                        ++i;
                    return {token_kind::comment, false, b, i};
                }
                return operator_(b);
            case s_slash:
                if (at(pos + 1) == '*') return block_comment(b);
                return operator_(b);
            case s_op:
                return operator_(b);
            case s_colon: {
                const unsigned char d = at(pos + 1);
                return {token_kind::op, false, b, (d == ':' || d == '=') ? b + 2 : b + 1};
            }
            case s_lparen:
                return {token_kind::lparen, false, b, b + 1};
            case s_rparen:
                return {token_kind::rparen, false, b, b + 1};
            case s_lbracket:
                return {token_kind::lbracket, false, b, b + 1};
            case s_rbracket:
                return {token_kind::rbracket, false, b, b + 1};
            case s_comma:
                return {token_kind::comma, false, b, b + 1};
            case s_semicolon:
                return {token_kind::semicolon, false, b, b + 1};
            default:
                return {token_kind::other, false, b, b + 1};
        }
    }
};

/// ASCII upper case of `in` into `out` (in.size() bytes), eight bytes at a time.
void to_upper(std::string_view in, char* out) {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    std::size_t i = 0;
    for (; i + 8 <= in.size(); i += 8) {
        std::uint64_t x;
        std::memcpy(&x, in.data() + i, 8);
        const std::uint64_t low7 = x & (0x7f * ones);
        const std::uint64_t ge_a = low7 + (0x80 - 'a') * ones;      // high bit: byte >= 'a'
        const std::uint64_t gt_z = low7 + (0x80 - 'z' - 1) * ones;  // high bit: byte > 'z'
        const std::uint64_t lower = ge_a & ~gt_z & ~x & (0x80 * ones);
        x ^= lower >> 2;  // 0x80 >> 2 == 0x20: 'a' - 'A'
        std::memcpy(out + i, &x, 8);
    }
    for (; i < in.size(); ++i)
        out[i] = ascii_upper(in[i]);
}

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_upper(a[i]) != ascii_upper(b[i])) return false;
    return true;
}

// pgpool's hint: /*NO LOAD BALANCE*/, in any case, with any whitespace between the words.
bool is_no_load_balance_hint(std::string_view comment) {
    if (comment.size() < 4 || comment.substr(0, 2) != "/*" ||
        comment.substr(comment.size() - 2) != "*/")
        return false;
    std::string_view body = comment.substr(2, comment.size() - 4);
    static constexpr std::string_view words[] = {"NO", "LOAD", "BALANCE"};
    std::size_t i = 0;
    for (std::string_view w : words) {
        while (i < body.size() && is_space(static_cast<unsigned char>(body[i])))
            ++i;
        std::size_t j = i;
        while (j < body.size() && !is_space(static_cast<unsigned char>(body[j])))
            ++j;
        if (!iequals_ascii(body.substr(i, j - i), w)) return false;
        i = j;
    }
    while (i < body.size() && is_space(static_cast<unsigned char>(body[i])))
        ++i;
    return i == body.size();
}

}  // namespace

const char* to_string(token_kind k) {
    switch (k) {
        case token_kind::word:
            return "word";
        case token_kind::quoted_identifier:
            return "quoted_identifier";
        case token_kind::string:
            return "string";
        case token_kind::number:
            return "number";
        case token_kind::parameter:
            return "parameter";
        case token_kind::op:
            return "op";
        case token_kind::lparen:
            return "lparen";
        case token_kind::rparen:
            return "rparen";
        case token_kind::lbracket:
            return "lbracket";
        case token_kind::rbracket:
            return "rbracket";
        case token_kind::comma:
            return "comma";
        case token_kind::dot:
            return "dot";
        case token_kind::semicolon:
            return "semicolon";
        case token_kind::comment:
            return "comment";
        case token_kind::other:
            return "other";
        case token_kind::end:
            return "end";
    }
    return "other";
}

raw_token next_token(std::string_view sql, std::size_t pos, const lex_options& options) {
    return scanner{sql, sql.size()}.next(pos, options);
}

void lexed_query::assign(std::string_view sql, const lex_options& options) {
    sql_ = sql;
    tokens_.clear();
    statements_.clear();
    starts_.clear();
    upper_.resize(sql.size());  // never reallocated below: `upper` views stay valid
    to_upper(sql, upper_.data());
    tokens_.reserve(sql.size() / 3 + 16);  // typical SQL: no reallocation

    struct pending {
        std::size_t first_token = 0;
        std::size_t text_begin = std::string_view::npos;
        std::size_t text_end = 0;
        bool unterminated = false;
        bool no_load_balance = false;
        bool stray_rparen = false;  // a `)` with no `(` open
    };
    const scanner sc{sql, sql.size()};
    pending cur;
    // psql's heuristic for SQL-standard function bodies (psqlscan.l): in a statement that
    // starts CREATE [OR REPLACE] {FUNCTION|PROCEDURE}, BEGIN (and CASE inside it) opens and
    // END closes a block outside parentheses; a `;` inside a block does not end the statement.
    std::string_view first_words[4];
    std::size_t word_count = 0;
    bool routine = false;
    int paren_depth = 0;
    int begin_depth = 0;

    const auto finish = [&] {
        const bool has_tokens = tokens_.size() > cur.first_token;
        if (has_tokens || cur.unterminated) {
            sql_statement st;
            // Pointed at the final token buffer below, once tokens_ stops growing.
            st.tokens = std::span<const token>(tokens_.data(), tokens_.size() - cur.first_token);
            st.text = sql.substr(cur.text_begin, cur.text_end - cur.text_begin);
            st.unterminated = cur.unterminated;
            st.no_load_balance = cur.no_load_balance;
            st.parens_balanced = !cur.stray_rparen && paren_depth == 0;
            statements_.push_back(st);
            starts_.push_back(cur.first_token);
        }
        cur = pending{};
        cur.first_token = tokens_.size();
        word_count = 0;
        routine = false;
        paren_depth = 0;
        begin_depth = 0;
    };

    std::size_t pos = 0;
    for (;;) {
        const raw_token r = sc.next(pos, options);
        pos = r.end;
        if (r.kind == token_kind::end) {
            finish();
            break;
        }
        if (r.kind == token_kind::semicolon && begin_depth == 0) {
            finish();
            continue;
        }
        if (cur.text_begin == std::string_view::npos) cur.text_begin = r.begin;
        cur.text_end = r.end;
        if (r.unterminated) cur.unterminated = true;
        const std::string_view text(sql.data() + r.begin, r.end - r.begin);
        if (r.kind == token_kind::comment) {
            if (tokens_.size() == cur.first_token && !r.unterminated &&
                is_no_load_balance_hint(text))
                cur.no_load_balance = true;
            continue;
        }
        token t;
        t.kind = r.kind;
        t.unterminated = r.unterminated;
        t.text = text;
        t.upper = text;
        if (r.kind == token_kind::word) {
            t.upper = std::string_view(upper_.data() + r.begin, text.size());
            if (word_count < 4) {
                first_words[word_count] = t.upper;
                if (word_count == 1 || word_count == 3) {
                    const auto fn = [](std::string_view w) {
                        return w == "FUNCTION" || w == "PROCEDURE";
                    };
                    routine =
                        first_words[0] == "CREATE" &&
                        (fn(first_words[1]) || (word_count == 3 && first_words[1] == "OR" &&
                                                first_words[2] == "REPLACE" && fn(first_words[3])));
                }
            }
            ++word_count;
            if (routine && paren_depth == 0) {
                if (t.upper == "BEGIN") {
                    ++begin_depth;
                } else if (t.upper == "CASE") {
                    if (begin_depth >= 1) ++begin_depth;
                } else if (t.upper == "END") {
                    if (begin_depth > 0) --begin_depth;
                }
            }
        } else if (r.kind == token_kind::lparen) {
            ++paren_depth;
        } else if (r.kind == token_kind::rparen) {
            if (paren_depth > 0)
                --paren_depth;
            else
                cur.stray_rparen = true;
        }
        tokens_.push_back(t);
    }

    for (std::size_t i = 0; i < statements_.size(); ++i)
        statements_[i].tokens =
            std::span<const token>(tokens_.data() + starts_[i], statements_[i].tokens.size());
}

std::vector<std::string_view> split_statements(std::string_view sql, const lex_options& options) {
    const lexed_query q(sql, options);
    std::vector<std::string_view> out;
    out.reserve(q.statements().size());
    for (const auto& s : q.statements())
        out.push_back(s.text);
    return out;
}

std::string identifier_value(const token& t) {
    std::string out;
    if (t.kind == token_kind::word) {
        out.resize(t.text.size());
        std::transform(t.text.begin(), t.text.end(), out.begin(), ascii_lower);
        return out;
    }
    if (t.kind != token_kind::quoted_identifier) return std::string(t.text);
    std::string_view body = t.text;
    if (!body.empty() && body.front() != '"') body.remove_prefix(2);  // U&
    if (!body.empty()) body.remove_prefix(1);
    if (!t.unterminated && !body.empty()) body.remove_suffix(1);
    out.reserve(body.size());
    for (std::size_t i = 0; i < body.size(); ++i) {
        out.push_back(body[i]);
        if (body[i] == '"' && i + 1 < body.size() && body[i + 1] == '"') ++i;
    }
    return out;
}

bool starts_with_ascii_ci(std::string_view text, std::string_view upper_word) {
    return text.size() >= upper_word.size() &&
           iequals_ascii(text.substr(0, upper_word.size()), upper_word);
}

bool contains_ascii_ci(std::string_view text, std::string_view upper_word) {
    if (upper_word.empty()) return true;
    if (text.size() < upper_word.size()) return false;
    // memchr (vectorised) finds the places where the word's first letter is, in either case,
    // and only there is the rest compared (comparing at every byte cost 16 % of a pgbench -S
    // transaction's instructions when the router called this for every statement).
    const char up = upper_word[0];
    const char low = ascii_lower(up);
    const std::string_view rest = upper_word.substr(1);
    const std::size_t starts = text.size() - upper_word.size() + 1;  // where the word may start
    auto find = [&](char c, std::size_t from) {
        const void* p = std::memchr(text.data() + from, c, starts - from);
        return p != nullptr ? std::size_t(static_cast<const char*>(p) - text.data()) : starts;
    };
    std::size_t at_up = find(up, 0);
    std::size_t at_low = low == up ? starts : find(low, 0);
    while (at_up < starts || at_low < starts) {
        const std::size_t i = std::min(at_up, at_low);
        if (starts_with_ascii_ci(text.substr(i + 1), rest)) return true;
        if (i == at_up)
            at_up = find(up, i + 1);
        else
            at_low = find(low, i + 1);
    }
    return false;
}

}  // namespace pgpilot::router
