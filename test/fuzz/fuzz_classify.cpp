// Fuzzes the SQL lexer and statement classifier (router/sql_lexer.hpp, router/classify.hpp) on
// arbitrary Query text.
//
// Input: one flags byte, then the SQL text.
//   bit 0  standard_conforming_strings off (backslash escapes in '...')
//   bit 1  a function policy with write_functions and an is_volatile callback
//   bit 2  a function policy with a read_only_functions allow-list
// Checks: the lexer always advances and stays inside the text, every view lexed_query and
// split_statements return points into the text, the two split alike, and the classifier never
// crashes, is deterministic and keeps its documented contracts (classify_one is unknown unless
// the text holds exactly one statement).

#include <string>
#include <string_view>
#include <vector>

#include "router/classify.hpp"
#include "router/sql_lexer.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::router;

namespace {

bool inside(std::string_view inner, std::string_view outer) {
    return pgpilot::fuzz::within(inner, pgpilot::protocol::as_bytes(outer));
}

bool same(const statement_info& a, const statement_info& b) {
    return a.cls == b.cls && a.creates_temp == b.creates_temp && a.listen == b.listen &&
           a.begins_transaction == b.begins_transaction &&
           a.read_only_transaction == b.read_only_transaction &&
           a.pins_to_primary == b.pins_to_primary && a.ends_transaction == b.ends_transaction &&
           a.prepare_name == b.prepare_name && a.execute_name == b.execute_name &&
           a.deallocate_name == b.deallocate_name;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    lex_options lex;
    lex.standard_conforming_strings = (data[0] & 1) == 0;
    function_policy policy;
    if (data[0] & 2) {
        policy.write_functions = {"nextval", "public.bump", "Quoted"};
        // Receives "name" or "schema.name"; a zero-length quoted identifier (`""()`, which
        // PostgreSQL rejects) arrives as "" (docs/fuzzing.md, O1).
        policy.is_volatile = [](std::string_view name) {
            if (name.empty()) FUZZ_TRACE("is_volatile(\"\")");
            return !name.empty() && name.front() == 'v';
        };
    }
    if (data[0] & 4) policy.read_only_functions = {"now", "lower", "pg_catalog.upper"};
    const std::string sql(reinterpret_cast<const char*>(data) + 1, size - 1);

    // The raw lexer: always advances, ranges inside the text, ends with `end`.
    std::size_t pos = 0;
    for (std::size_t n = 0;; ++n) {
        FUZZ_CHECK(n <= sql.size() + 1);
        raw_token t = next_token(sql, pos, lex);
        FUZZ_CHECK(t.begin >= pos && t.begin <= t.end && t.end <= sql.size());
        if (t.kind == token_kind::end) {
            FUZZ_CHECK(t.begin == sql.size() && t.end == sql.size());
            break;
        }
        FUZZ_CHECK(t.end > t.begin);
        pos = t.end;
    }

    lexed_query q(sql, lex);
    FUZZ_CHECK(q.sql() == sql);
    for (const token& t : q.tokens()) {
        FUZZ_CHECK(t.kind != token_kind::comment && t.kind != token_kind::end);
        FUZZ_CHECK(inside(t.text, sql) && !t.text.empty());
        FUZZ_CHECK(t.upper.size() == t.text.size());
        (void)identifier_value(t);
    }
    auto split = split_statements(sql, lex);
    FUZZ_CHECK(split.size() == q.statements().size());
    const auto all = q.tokens();
    for (std::size_t i = 0; i < split.size(); ++i) {
        const sql_statement& st = q.statements()[i];
        FUZZ_CHECK(inside(st.text, sql) && st.text == split[i]);
        if (!st.tokens.empty()) {
            FUZZ_CHECK(st.tokens.data() >= all.data() &&
                       st.tokens.data() + st.tokens.size() <= all.data() + all.size());
        }
        for (const token& t : st.tokens)
            FUZZ_CHECK(inside(t.text, st.text));
    }

    auto infos = classify(sql, policy, lex);
    FUZZ_CHECK(infos.size() <= q.statements().size());
    auto again = classify(sql, policy, lex);
    FUZZ_CHECK(again.size() == infos.size());
    for (std::size_t i = 0; i < infos.size(); ++i)
        FUZZ_CHECK(same(infos[i], again[i]));
    for (const sql_statement& st : q.statements())
        (void)classify_statement(st, policy);

    statement_info one = classify_one(sql, policy, lex);
    if (q.statements().size() != 1) FUZZ_CHECK(one.cls == statement_class::unknown);
    return 0;
}
