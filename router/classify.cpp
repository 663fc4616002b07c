#include "router/classify.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <span>

namespace pgpilot::router {

namespace {

using token_span = std::span<const token>;

/// Deepest EXPLAIN/PREPARE/COPY nesting looked into; deeper is unknown (bounds the recursion).
constexpr int max_nesting = 16;
/// PostgreSQL's NAMEDATALEN - 1: identifiers are truncated to this many bytes.
constexpr std::size_t max_identifier = 63;

// Keyword sets, upper case and sorted, after PostgreSQL's kwlist.h (releases 15 to 18).

// RESERVED_KEYWORD: never a function, type or column name unless quoted.
constexpr std::string_view reserved_keywords[] = {
    "ALL",          "ANALYSE",
    "ANALYZE",      "AND",
    "ANY",          "ARRAY",
    "AS",           "ASC",
    "ASYMMETRIC",   "BOTH",
    "CASE",         "CAST",
    "CHECK",        "COLLATE",
    "COLUMN",       "CONSTRAINT",
    "CREATE",       "CURRENT_CATALOG",
    "CURRENT_DATE", "CURRENT_ROLE",
    "CURRENT_TIME", "CURRENT_TIMESTAMP",
    "CURRENT_USER", "DEFAULT",
    "DEFERRABLE",   "DESC",
    "DISTINCT",     "DO",
    "ELSE",         "END",
    "EXCEPT",       "FALSE",
    "FETCH",        "FOR",
    "FOREIGN",      "FROM",
    "GRANT",        "GROUP",
    "HAVING",       "IN",
    "INITIALLY",    "INTERSECT",
    "INTO",         "LATERAL",
    "LEADING",      "LIMIT",
    "LOCALTIME",    "LOCALTIMESTAMP",
    "NOT",          "NULL",
    "OFFSET",       "ON",
    "ONLY",         "OR",
    "ORDER",        "PLACING",
    "PRIMARY",      "REFERENCES",
    "RETURNING",    "SELECT",
    "SESSION_USER", "SOME",
    "SYMMETRIC",    "SYSTEM_USER",
    "TABLE",        "THEN",
    "TO",           "TRAILING",
    "TRUE",         "UNION",
    "UNIQUE",       "USER",
    "USING",        "VARIADIC",
    "WHEN",         "WHERE",
    "WINDOW",       "WITH",
};

// COL_NAME_KEYWORD: may name a column or type but never a function; followed by `(` it is
// built-in syntax (COALESCE, EXTRACT, ROW, EXISTS, VALUES...) or a type modifier (NUMERIC(10,2)).
constexpr std::string_view col_name_keywords[] = {
    "BETWEEN",        "BIGINT",        "BIT",
    "BOOLEAN",        "CHAR",          "CHARACTER",
    "COALESCE",       "DEC",           "DECIMAL",
    "EXISTS",         "EXTRACT",       "FLOAT",
    "GRAPH_TABLE",    "GREATEST",      "GROUPING",
    "INOUT",          "INT",           "INTEGER",
    "INTERVAL",       "JSON",          "JSON_ARRAY",
    "JSON_ARRAYAGG",  "JSON_EXISTS",   "JSON_OBJECT",
    "JSON_OBJECTAGG", "JSON_QUERY",    "JSON_SCALAR",
    "JSON_SERIALIZE", "JSON_TABLE",    "JSON_VALUE",
    "LEAST",          "MERGE_ACTION",  "NATIONAL",
    "NCHAR",          "NONE",          "NORMALIZE",
    "NULLIF",         "NUMERIC",       "OUT",
    "OVERLAY",        "POSITION",      "PRECISION",
    "REAL",           "ROW",           "SETOF",
    "SMALLINT",       "SUBSTRING",     "TIME",
    "TIMESTAMP",      "TREAT",         "TRIM",
    "VALUES",         "VARCHAR",       "XMLATTRIBUTES",
    "XMLCONCAT",      "XMLELEMENT",    "XMLEXISTS",
    "XMLFOREST",      "XMLNAMESPACES", "XMLPARSE",
    "XMLPI",          "XMLROOT",       "XMLSERIALIZE",
    "XMLTABLE",
};

// TYPE_FUNC_NAME_KEYWORD.
constexpr std::string_view type_func_name_keywords[] = {
    "AUTHORIZATION", "BINARY", "COLLATION", "CONCURRENTLY", "CROSS",   "CURRENT_SCHEMA",
    "FREEZE",        "FULL",   "ILIKE",     "INNER",        "IS",      "ISNULL",
    "JOIN",          "LEFT",   "LIKE",      "NATURAL",      "NOTNULL", "OUTER",
    "OVERLAPS",      "RIGHT",  "SIMILAR",   "TABLESAMPLE",  "VERBOSE",
};

// Type-func-name keywords that are real functions when followed by `(`.
constexpr std::string_view keyword_functions[] = {"CURRENT_SCHEMA", "LEFT", "RIGHT"};

// Unreserved keywords that, followed by `(`, are syntax rather than a call: OPERATOR(...),
// CHARACTER VARYING(n), INTERVAL SECOND(n), OVER (...), FILTER (...), GROUPING SETS (...),
// CUBE (...), ROLLUP (...), TABLESAMPLE ... REPEATABLE (...), WITHIN GROUP (...).
constexpr std::string_view syntax_unreserved[] = {
    "CUBE",   "FILTER", "OPERATOR", "OVER",    "REPEATABLE",
    "ROLLUP", "SECOND", "SETS",     "VARYING", "WITHIN",
};

// Unreserved keywords after which an expression (so a function call) can start.
constexpr std::string_view expression_unreserved[] = {
    "AT",   "BY", "CALL",  "ESCAPE", "EXECUTE", "FIRST", "GROUPS",
    "NEXT", "OF", "RANGE", "RETURN", "ROWS",    "SET",   "ZONE",
};

// Functions whose calls make a query a write: they write, take locks or change state that
// only exists where they ran (docs/routing.md). Lower case, matched on the unqualified name.
constexpr std::string_view write_functions_exact[] = {
    "loread",
    "lowrite",
    "nextval",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_cancel_backend",
    "pg_copy_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_restore_point",
    "pg_current_xact_id",
    "pg_drop_replication_slot",
    "pg_file_rename",
    "pg_file_sync",
    "pg_file_unlink",
    "pg_file_write",
    "pg_import_system_collations",
    "pg_logical_emit_message",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_get_changes",
    "pg_notify",
    "pg_promote",
    "pg_reload_conf",
    "pg_replication_slot_advance",
    "pg_rotate_logfile",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_terminate_backend",
    "set_config",
    "setval",
    "txid_current",
};
constexpr std::string_view write_function_prefixes[] = {
    "lo_",                     // large objects: lo_create, lo_import, lo_open, lo_put, ...
    "pg_advisory_",            // pg_advisory_lock*, pg_advisory_xact_lock*, pg_advisory_unlock*
    "pg_replication_origin_",  // pg_replication_origin_create, _advance, _session_setup, ...
    "pg_stat_reset",           // pg_stat_reset, pg_stat_reset_shared, ...
    "pg_try_advisory_",        // pg_try_advisory_lock*, pg_try_advisory_xact_lock*
};
// Functions that only work, or only mean something, on the primary.
constexpr std::string_view primary_functions[] = {
    "currval",                   // the session's last nextval(), which ran there
    "lastval",                   // same
    "pg_current_wal_flush_lsn",  // "recovery is in progress" on a standby
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_current_xlog_flush_location",
    "pg_current_xlog_insert_location",
    "pg_current_xlog_location",
    "pg_walfile_name",
    "pg_walfile_name_offset",
    "pg_xlogfile_name",
    "pg_xlogfile_name_offset",
};

template <std::size_t N>
constexpr bool contains(const std::string_view (&set)[N], std::string_view w) {
    return std::binary_search(std::begin(set), std::end(set), w);
}
template <std::size_t N>
constexpr bool sorted(const std::string_view (&set)[N]) {
    return std::is_sorted(std::begin(set), std::end(set));
}
static_assert(sorted(reserved_keywords) && sorted(col_name_keywords) &&
              sorted(type_func_name_keywords) && sorted(keyword_functions) &&
              sorted(syntax_unreserved) && sorted(expression_unreserved) &&
              sorted(write_functions_exact) && sorted(write_function_prefixes) &&
              sorted(primary_functions));

/// What the query scanner does with a word (see scan_query).
enum class scan_word : std::uint8_t {
    none,
    from,
    join,
    table,
    with,
    into,
    for_,
    insert,
    merge,
    delete_,
    update,
    only,
    clause,  // starts a clause that ends a FROM list or a WITH list
};

/// Whether `p` starts with the literal (a fixed-length compare, unrolled by the compiler).
template <std::size_t N>
bool same_prefix(const char* p, const char (&lit)[N]) {
    for (std::size_t i = 0; i + 1 < N; ++i)
        if (p[i] != lit[i]) return false;
    return true;
}

/// The scan_word of an upper-case word: a switch on the length, then one fixed-size compare
/// (which the compiler turns into an integer compare).
scan_word scan_of(std::string_view u) {
    const char* p = u.data();
#define PGPILOT_IS(lit) same_prefix(p, lit)
    switch (u.size()) {
        case 3:
            if (PGPILOT_IS("FOR")) return scan_word::for_;
            break;
        case 4:
            switch (p[0]) {
                case 'F':
                    if (PGPILOT_IS("FROM")) return scan_word::from;
                    break;
                case 'J':
                    if (PGPILOT_IS("JOIN")) return scan_word::join;
                    break;
                case 'W':
                    if (PGPILOT_IS("WITH")) return scan_word::with;
                    break;
                case 'I':
                    if (PGPILOT_IS("INTO")) return scan_word::into;
                    break;
                case 'O':
                    if (PGPILOT_IS("ONLY")) return scan_word::only;
                    break;
            }
            break;
        case 5:
            switch (p[0]) {
                case 'T':
                    if (PGPILOT_IS("TABLE")) return scan_word::table;
                    break;
                case 'M':
                    if (PGPILOT_IS("MERGE")) return scan_word::merge;
                    break;
                case 'W':
                    if (PGPILOT_IS("WHERE")) return scan_word::clause;
                    break;
                case 'G':
                    if (PGPILOT_IS("GROUP")) return scan_word::clause;
                    break;
                case 'O':
                    if (PGPILOT_IS("ORDER")) return scan_word::clause;
                    break;
                case 'L':
                    if (PGPILOT_IS("LIMIT")) return scan_word::clause;
                    break;
                case 'F':
                    if (PGPILOT_IS("FETCH")) return scan_word::clause;
                    break;
                case 'U':
                    if (PGPILOT_IS("UNION")) return scan_word::clause;
                    break;
            }
            break;
        case 6:
            switch (p[0]) {
                case 'I':
                    if (PGPILOT_IS("INSERT")) return scan_word::insert;
                    break;
                case 'D':
                    if (PGPILOT_IS("DELETE")) return scan_word::delete_;
                    break;
                case 'U':
                    if (PGPILOT_IS("UPDATE")) return scan_word::update;
                    break;
                case 'S':
                    if (PGPILOT_IS("SELECT")) return scan_word::clause;
                    break;
                case 'V':
                    if (PGPILOT_IS("VALUES")) return scan_word::clause;
                    break;
                case 'H':
                    if (PGPILOT_IS("HAVING")) return scan_word::clause;
                    break;
                case 'W':
                    if (PGPILOT_IS("WINDOW")) return scan_word::clause;
                    break;
                case 'O':
                    if (PGPILOT_IS("OFFSET")) return scan_word::clause;
                    break;
                case 'E':
                    if (PGPILOT_IS("EXCEPT")) return scan_word::clause;
                    break;
            }
            break;
        case 9:
            if (PGPILOT_IS("INTERSECT") || PGPILOT_IS("RETURNING")) return scan_word::clause;
            break;
        default:
            break;
    }
#undef PGPILOT_IS
    return scan_word::none;
}

/// Keyword categories of a word.
enum : std::uint8_t {
    w_reserved = 1,
    w_col_name = 2,
    w_type_func = 4,
    w_keyword_function = 8,  // a type-func-name keyword that is a real function: left(...)
    w_syntax = 16,           // an unreserved keyword that is syntax before `(`
    w_expression = 32,       // an unreserved keyword after which an expression can start
};

struct word_info {
    std::uint8_t flags = 0;
};

/// An open-addressing hash set of words with a byte of flags each, built at compile time: one
/// lookup per word instead of a chain of comparisons.
template <std::size_t Size>
class word_table {
  public:
    static constexpr std::size_t max_word = 48;

    template <class Fill>
    constexpr explicit word_table(Fill fill) {
        fill(*this);
    }

    constexpr void add(std::string_view w, std::uint8_t flags) {
        std::size_t i = hash(w) & (Size - 1);
        while (!keys_[i].empty() && keys_[i] != w)
            i = (i + 1) & (Size - 1);
        keys_[i] = w;
        flags_[i] |= flags;
    }

    constexpr std::uint8_t find(std::string_view w) const {
        if (w.empty() || w.size() > max_word) return 0;
        for (std::size_t i = hash(w) & (Size - 1);; i = (i + 1) & (Size - 1)) {
            if (keys_[i].empty()) return 0;
            if (keys_[i].size() == w.size() && same(keys_[i], w)) return flags_[i];
        }
    }

    /// The longest probe sequence of any word in the table.
    constexpr std::size_t max_probe() const {
        std::size_t worst = 0;
        for (std::size_t k = 0; k < Size; ++k) {
            if (keys_[k].empty()) continue;
            std::size_t probes = 1;
            for (std::size_t i = hash(keys_[k]) & (Size - 1); keys_[i] != keys_[k];
                 i = (i + 1) & (Size - 1))
                ++probes;
            worst = std::max(worst, probes);
        }
        return worst;
    }

  private:
    // Length and five characters, mixed by one multiplication: cheap, and probe sequences
    // stay short (checked below).
    static constexpr std::size_t hash(std::string_view w) {
        const std::size_t n = w.size();
        const auto c = [&](std::size_t i) -> std::uint64_t {
            return static_cast<unsigned char>(w[i < n ? i : 0]);
        };
        std::uint64_t h = (n * 0x9E3779B97F4A7C15ull) ^
                          (c(0) | c(1) << 8 | c(n / 2) << 16 | c(n - 1) << 24 | c(n - 2) << 32);
        h *= 0xff51afd7ed558ccdull;
        return static_cast<std::size_t>(h >> 40);
    }
    static constexpr bool same(std::string_view a, std::string_view b) {
        for (std::size_t i = 0; i < a.size(); ++i)
            if (a[i] != b[i]) return false;
        return true;
    }

    std::array<std::string_view, Size> keys_{};
    std::array<std::uint8_t, Size> flags_{};
};

constexpr word_table<1024> words([](auto& t) {
    for (auto w : reserved_keywords)
        t.add(w, w_reserved);
    for (auto w : col_name_keywords)
        t.add(w, w_col_name);
    for (auto w : type_func_name_keywords)
        t.add(w, w_type_func);
    for (auto w : keyword_functions)
        t.add(w, w_keyword_function);
    for (auto w : syntax_unreserved)
        t.add(w, w_syntax);
    for (auto w : expression_unreserved)
        t.add(w, w_expression);
});
static_assert(words.max_probe() <= 4);
static_assert(words.find("SELECT") == w_reserved &&
              words.find("LEFT") == (w_type_func | w_keyword_function) && words.find("NOPE") == 0);

enum : std::uint8_t { f_write = 1, f_primary = 2 };
constexpr word_table<256> builtin_functions([](auto& t) {
    for (auto w : write_functions_exact)
        t.add(w, f_write);
    for (auto w : primary_functions)
        t.add(w, f_primary);
});
static_assert(builtin_functions.max_probe() <= 4);
static_assert(builtin_functions.find("nextval") == f_write &&
              builtin_functions.find("currval") == f_primary && builtin_functions.find("now") == 0);

/// An unquoted word that, followed by `(`, is not a function call.
bool is_call_syntax(const word_info& w) {
    return (w.flags & (w_reserved | w_col_name | w_syntax)) != 0 ||
           ((w.flags & w_type_func) != 0 && (w.flags & w_keyword_function) == 0);
}

/// An unquoted word after which an expression can start (so not a table name or alias).
bool leads_expression(const word_info& w) {
    return (w.flags & (w_reserved | w_col_name | w_type_func | w_expression)) != 0;
}

constexpr char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}

bool is_name(const token& t) {
    return t.kind == token_kind::word || t.kind == token_kind::quoted_identifier;
}

bool is_op(const token& t, std::string_view op) {
    return t.kind == token_kind::op && t.text == op;
}

/// The body of a quoted identifier: without U&, the quotes (and "" left doubled).
std::string_view quoted_body(const token& t) {
    std::string_view b = t.text;
    if (!b.empty() && b.front() != '"') b.remove_prefix(std::min<std::size_t>(2, b.size()));
    if (!b.empty()) b.remove_prefix(1);
    if (!t.unterminated && !b.empty()) b.remove_suffix(1);
    return b;
}

/// Whether a name token denotes `lower` (given in lower case, without quotes).
bool folded_equals(const token& t, std::string_view lower) {
    if (t.kind == token_kind::quoted_identifier) return quoted_body(t) == lower;
    if (t.kind != token_kind::word || t.text.size() != lower.size()) return false;
    for (std::size_t i = 0; i < lower.size(); ++i)
        if (ascii_lower(t.text[i]) != lower[i]) return false;
    return true;
}

/// Whether a name token denotes a name starting with `lower`.
bool folded_starts_with(const token& t, std::string_view lower) {
    std::string_view s;
    if (t.kind == token_kind::quoted_identifier)
        s = quoted_body(t);
    else if (t.kind == token_kind::word)
        s = t.text;
    else
        return false;
    if (s.size() < lower.size()) return false;
    for (std::size_t i = 0; i < lower.size(); ++i) {
        const char c = t.kind == token_kind::word ? ascii_lower(s[i]) : s[i];
        if (c != lower[i]) return false;
    }
    return true;
}

/// Schemas whose objects are system catalogs, statistics or temporary objects: every schema
/// named pg_* (user schemas cannot be) and information_schema.
bool is_system_schema(const token& t) {
    return folded_starts_with(t, "pg_") || folded_equals(t, "information_schema");
}

/// A quick test that lets most names skip is_system_schema().
bool may_be_system_schema(const token& t) {
    const char c = t.text.empty() ? '\0' : t.text[0];
    return c == 'p' || c == 'P' || c == 'i' || c == 'I' || c == '"' || c == 'u' || c == 'U';
}

/// pg_temp, or a session's own pg_temp_N.
bool is_temp_schema(const token& t) {
    return folded_equals(t, "pg_temp") || folded_starts_with(t, "pg_temp_");
}

/// The last component of the (possibly qualified) name starting at `i`.
std::size_t qualified_end(token_span t, std::size_t i) {
    while (i + 2 < t.size() && t[i + 1].kind == token_kind::dot && is_name(t[i + 2]))
        i += 2;
    return i;
}

/// The `)` that closes the `(` at `open`, or t.size().
std::size_t matching_paren(token_span t, std::size_t open) {
    std::size_t depth = 0;
    for (std::size_t i = open; i < t.size(); ++i) {
        if (t[i].kind == token_kind::lparen) {
            ++depth;
        } else if (t[i].kind == token_kind::rparen) {
            if (--depth == 0) return i;
        }
    }
    return t.size();
}

template <std::size_t N>
bool kw(token_span t, std::size_t i, const char (&upper)[N]) {
    return i < t.size() && t[i].is(upper);
}

/// A function name as PostgreSQL folds it ("schema.name" or "name"), built without allocating;
/// each part truncated to NAMEDATALEN - 1 bytes.
class function_name {
  public:
    function_name(const token* schema, const token& base) {
        if (schema) {
            append(*schema);
            schema_len_ = len_;
            buf_[len_++] = '.';
        }
        base_pos_ = len_;
        append(base);
    }
    std::string_view full() const { return {buf_.data(), len_}; }
    std::string_view schema() const { return {buf_.data(), schema_len_}; }
    std::string_view base() const { return {buf_.data() + base_pos_, len_ - base_pos_}; }

  private:
    void append(const token& t) {
        const std::size_t limit = len_ + max_identifier;
        if (t.kind == token_kind::word) {
            for (char c : t.text) {
                if (len_ == limit) break;
                buf_[len_++] = ascii_lower(c);
            }
            return;
        }
        const std::string_view b = quoted_body(t);
        for (std::size_t i = 0; i < b.size() && len_ < limit; ++i) {
            buf_[len_++] = b[i];
            if (b[i] == '"' && i + 1 < b.size() && b[i + 1] == '"') ++i;
        }
    }

    std::array<char, 2 * max_identifier + 1> buf_{};
    std::size_t len_ = 0;
    std::size_t schema_len_ = 0;
    std::size_t base_pos_ = 0;
};

bool builtin_write_function(std::string_view base) {
    if (builtin_functions.find(base) & f_write) return true;
    if (base.size() < 3 || (base[0] != 'l' && base[0] != 'p')) return false;  // quick reject
    for (std::string_view p : write_function_prefixes)
        if (base.starts_with(p)) return true;
    return false;
}

/// Whether a configured name ("name" or "schema.name") denotes the called function. An
/// unqualified call matches a qualified entry only when `unqualified_matches` (it may resolve
/// to that schema through search_path).
bool entry_matches(std::string_view entry, const function_name& call, bool unqualified_matches) {
    const std::size_t dot = entry.rfind('.');
    if (dot == std::string_view::npos) return entry == call.base();
    if (entry.substr(dot + 1) != call.base()) return false;
    if (call.schema().empty()) return unqualified_matches;
    return entry.substr(0, dot) == call.schema();
}

/// What scanning a query found.
struct query_facts {
    bool write = false;
    bool primary_only = false;  // touches catalogs/statistics or calls a primary-only function
    bool creates_temp = false;
};

void judge_call(const function_name& name, const function_policy& policy, query_facts& f) {
    if (builtin_write_function(name.base())) {
        f.write = true;
        return;
    }
    if (builtin_functions.find(name.base()) & f_primary) f.primary_only = true;
    for (const auto& e : policy.write_functions)
        if (entry_matches(e, name, true)) {
            f.write = true;
            return;
        }
    if (!policy.read_only_functions.empty()) {
        bool listed = false;
        for (const auto& e : policy.read_only_functions)
            if (entry_matches(e, name, false)) {
                listed = true;
                break;
            }
        if (!listed) {
            f.write = true;
            return;
        }
    }
    if (policy.is_volatile && policy.is_volatile(name.full())) f.write = true;
}

/// What the innermost open clause at a parenthesis depth is, as far as names care.
enum class clause : std::uint8_t { other, from, cte };

/// A name followed by `(` at `paren`: judged when it is a function call.
void check_call(token_span t, std::size_t paren, clause cl, const function_policy& policy,
                query_facts& f) {
    if (paren == 0 || !is_name(t[paren - 1])) return;
    const std::size_t last = paren - 1;
    std::size_t first = last;
    while (first >= 2 && t[first - 1].kind == token_kind::dot && is_name(t[first - 2]))
        first -= 2;
    const bool qualified = first != last;
    if (!qualified && t[last].kind == token_kind::word &&
        is_call_syntax(word_info{words.find(t[last].upper)}))
        return;
    if (first > 0) {
        const token& prev = t[first - 1];
        switch (prev.kind) {
            case token_kind::op:
                if (prev.text == "::") return;  // x::numeric(10,2)
                break;
            case token_kind::word:
                // CAST(x AS varchar(10)), f() AS g(i), TABLESAMPLE method(...), FETCH FIRST (n),
                // WITH [RECURSIVE] cte(a, b) AS (...)
                if (prev.is("AS") || prev.is("TABLESAMPLE") || prev.is("FETCH") ||
                    prev.is("WITH") || prev.is("RECURSIVE"))
                    return;
                // FROM tbl alias(a, b)
                if (cl == clause::from && !leads_expression(word_info{words.find(prev.upper)}))
                    return;
                break;
            case token_kind::quoted_identifier:  // FROM "tbl" alias(a, b)
            case token_kind::rparen:             // FROM f(x) alias(a, b)
                if (cl == clause::from) return;
                break;
            case token_kind::comma:  // WITH a AS (...), b(x) AS (...)
                if (cl == clause::cte) return;
                break;
            case token_kind::dot:  // part of a longer path that does not start with a name
                return;
            default:
                break;
        }
    }
    const function_name name(qualified ? &t[last - 2] : nullptr, t[last]);
    judge_call(name, policy, f);
}

/// A name at `i` that does not start a call: a qualified name in a system schema, or a
/// relation called pg_* where a relation is expected, makes the query primary-only.
void check_name(token_span t, std::size_t i, bool relation_expected, query_facts& f) {
    if (i > 0 && t[i - 1].kind == token_kind::dot) return;  // not the first component
    const std::size_t last = qualified_end(t, i);
    if (last + 1 < t.size() && t[last + 1].kind == token_kind::lparen) return;  // a call
    if (last != i && is_system_schema(t[i])) {  // pg_*, information_schema
        if (i > 0) {
            const token& prev = t[i - 1];
            if (is_op(prev, "::") || prev.is("AS")) return;  // a type: x::pg_catalog.int4
            if (prev.kind == token_kind::lparen && i > 1 && t[i - 2].is("OPERATOR")) return;
        }
        f.primary_only = true;
        return;
    }
    if (relation_expected && folded_starts_with(t[last], "pg_")) f.primary_only = true;
}

/// UPDATE [ONLY] name [*] [[AS] alias] SET: an UPDATE statement (not FOR UPDATE, not a column).
bool update_statement_at(token_span t, std::size_t i) {
    std::size_t j = i + 1;
    if (kw(t, j, "ONLY")) ++j;
    if (j >= t.size() || !is_name(t[j])) return false;
    j = qualified_end(t, j) + 1;
    if (j < t.size() && is_op(t[j], "*")) ++j;
    if (kw(t, j, "AS")) {
        ++j;
        if (j < t.size() && is_name(t[j])) ++j;
    } else if (j < t.size() && is_name(t[j]) && !t[j].is("SET")) {
        ++j;
    }
    return kw(t, j, "SET");
}

/// Whether INSERT/UPDATE/DELETE/MERGE at `i` can start a (data-modifying) statement: not when
/// it is a column or label in a select list (SELECT delete FROM t, SELECT a, update FROM t,
/// SELECT x AS merge ...). A statement inside a query starts after `(` (a CTE body) or after
/// the WITH list (`)`, or the last name of a SEARCH/CYCLE clause).
bool may_start_statement(token_span t, std::size_t i) {
    if (i == 0) return true;
    const token& prev = t[i - 1];
    switch (prev.kind) {
        case token_kind::comma:
        case token_kind::op:
            return false;
        case token_kind::word:
            return !(prev.is("SELECT") || prev.is("DISTINCT") || prev.is("ALL") || prev.is("AS"));
        default:
            return true;
    }
}

/// SELECT ... INTO [TEMP|TEMPORARY|LOCAL TEMP|...|UNLOGGED|TABLE] name: whether it is temporary.
bool into_temp_at(token_span t, std::size_t i) {
    std::size_t j = i + 1;
    if (kw(t, j, "LOCAL") || kw(t, j, "GLOBAL")) ++j;
    if (kw(t, j, "TEMP") || kw(t, j, "TEMPORARY")) return true;
    if (kw(t, j, "UNLOGGED")) ++j;
    if (kw(t, j, "TABLE")) ++j;
    return j + 1 < t.size() && is_temp_schema(t[j]) && t[j + 1].kind == token_kind::dot;
}

/// Scans every token of a query (at every nesting level) for what makes it a write or
/// primary-only: data-modifying statements (in CTEs), locking clauses, SELECT INTO, calls of
/// write functions, catalog relations.
void scan_query(token_span t, const function_policy& policy, query_facts& f) {
    // Per parenthesis depth; deeper levels share the last. Each level is set when entered.
    std::array<clause, 64> state;
    state[0] = clause::other;
    std::size_t depth = 0;
    const auto st = [&]() -> clause& { return state[std::min(depth, state.size() - 1)]; };
    bool expect_relation = false;
    const std::size_t n = t.size();
    for (std::size_t i = 0; i < n; ++i) {
        const token& k = t[i];
        const bool relation_here = expect_relation;
        expect_relation = false;
        switch (k.kind) {
            case token_kind::lparen:
                if (!f.write) check_call(t, i, st(), policy, f);
                ++depth;
                st() = clause::other;
                break;
            case token_kind::rparen:
                if (depth > 0) --depth;
                break;
            case token_kind::comma:
                if (st() == clause::from) expect_relation = true;
                break;
            case token_kind::quoted_identifier:
                if (relation_here ||
                    (i + 1 < n && t[i + 1].kind == token_kind::dot && may_be_system_schema(k)))
                    check_name(t, i, relation_here, f);
                break;
            case token_kind::word: {
                const scan_word w = scan_of(k.upper);
                if (relation_here && w == scan_word::only) {
                    expect_relation = true;  // FROM ONLY name
                    break;
                }
                if (relation_here ||
                    (i + 1 < n && t[i + 1].kind == token_kind::dot && may_be_system_schema(k)))
                    check_name(t, i, relation_here, f);
                switch (w) {
                    case scan_word::none:
                    case scan_word::only:
                        break;
                    case scan_word::from:
                        if (!(i > 0 && t[i - 1].is("DISTINCT"))) {  // not IS DISTINCT FROM
                            st() = clause::from;
                            expect_relation = true;
                        }
                        break;
                    case scan_word::join:
                    case scan_word::table:
                        expect_relation = true;
                        break;
                    case scan_word::with:
                        if (kw(t, i + 1, "RECURSIVE") ||
                            (i + 2 < n && is_name(t[i + 1]) && !t[i + 1].is("ORDINALITY") &&
                             (t[i + 2].kind == token_kind::lparen || t[i + 2].is("AS"))))
                            st() = clause::cte;
                        break;
                    case scan_word::into:
                        f.write = true;  // SELECT INTO, or INSERT/MERGE INTO in a CTE
                        if (!(i > 0 && (t[i - 1].is("INSERT") || t[i - 1].is("MERGE")) &&
                              may_start_statement(t, i - 1)) &&
                            into_temp_at(t, i))
                            f.creates_temp = true;
                        st() = clause::other;
                        break;
                    case scan_word::for_:
                        // FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE
                        if (kw(t, i + 1, "UPDATE") || kw(t, i + 1, "SHARE") ||
                            (kw(t, i + 1, "NO") && kw(t, i + 2, "KEY") && kw(t, i + 3, "UPDATE")) ||
                            (kw(t, i + 1, "KEY") && kw(t, i + 2, "SHARE")))
                            f.write = true;
                        st() = clause::other;
                        break;
                    case scan_word::insert:
                    case scan_word::merge:
                        if (kw(t, i + 1, "INTO") && may_start_statement(t, i)) f.write = true;
                        st() = clause::other;
                        break;
                    case scan_word::delete_:
                        if (kw(t, i + 1, "FROM") && may_start_statement(t, i)) f.write = true;
                        st() = clause::other;
                        break;
                    case scan_word::update:
                        if (update_statement_at(t, i) && may_start_statement(t, i)) f.write = true;
                        st() = clause::other;
                        break;
                    case scan_word::clause:
                        st() = clause::other;
                        break;
                }
                break;
            }
            default:
                break;
        }
    }
}

statement_info query_info(token_span t, const function_policy& policy) {
    query_facts f;
    scan_query(t, policy, f);
    statement_info info;
    info.cls = f.write          ? statement_class::write
               : f.primary_only ? statement_class::primary_only
                                : statement_class::read;
    info.creates_temp = f.creates_temp;
    return info;
}

statement_info with_class(statement_class c) {
    statement_info info;
    info.cls = c;
    return info;
}

/// Whether a boolean option value is false (PostgreSQL's parse_bool: unique prefixes of
/// false/no/off, and 0).
bool is_false_value(const token& t) {
    std::string_view s = t.text;
    if (t.kind == token_kind::string && s.size() >= 2 && s.front() == '\'' && s.back() == '\'')
        s = s.substr(1, s.size() - 2);
    std::array<char, 8> low{};
    if (s.empty() || s.size() > low.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        low[i] = ascii_lower(s[i]);
    const std::string_view v(low.data(), s.size());
    return std::string_view("false").starts_with(v) || std::string_view("no").starts_with(v) ||
           (v.size() >= 2 && std::string_view("off").starts_with(v)) || v == "0";
}

/// Transaction modes from `i`: ISOLATION LEVEL ..., READ ONLY | READ WRITE, [NOT] DEFERRABLE.
void transaction_modes(token_span t, std::size_t i, statement_info& info) {
    while (i < t.size()) {
        if (t[i].kind == token_kind::comma) {
            ++i;
        } else if (t[i].is("ISOLATION") && kw(t, i + 1, "LEVEL")) {
            i += 2;
            if (kw(t, i, "SERIALIZABLE")) {
                info.pins_to_primary = true;  // not available on a hot standby
                i += 1;
            } else if (kw(t, i, "REPEATABLE") || kw(t, i, "READ")) {
                i += 2;  // REPEATABLE READ, READ COMMITTED, READ UNCOMMITTED
            } else {
                return;
            }
        } else if (t[i].is("READ") && kw(t, i + 1, "ONLY")) {
            info.read_only_transaction = true;
            i += 2;
        } else if (t[i].is("READ") && kw(t, i + 1, "WRITE")) {
            info.pins_to_primary = true;
            i += 2;
        } else if (t[i].is("NOT") && kw(t, i + 1, "DEFERRABLE")) {
            i += 2;
        } else if (t[i].is("DEFERRABLE")) {
            i += 1;
        } else {
            return;
        }
    }
}

bool has_and_chain(token_span t) {
    for (std::size_t i = 0; i + 1 < t.size(); ++i)
        if (t[i].is("AND") && t[i + 1].is("CHAIN")) return true;
    return false;
}

statement_info classify_tokens(token_span t, const function_policy& policy, int nesting);

statement_info classify_set(token_span t) {
    statement_info info = with_class(statement_class::session_state);
    std::size_t i = 1;
    if (kw(t, 1, "SESSION") && kw(t, 2, "CHARACTERISTICS")) {
        // SET SESSION CHARACTERISTICS AS TRANSACTION modes
        if (kw(t, 3, "AS") && kw(t, 4, "TRANSACTION")) transaction_modes(t, 5, info);
        return info;
    }
    if (kw(t, 1, "SESSION") || kw(t, 1, "LOCAL")) i = 2;
    if (kw(t, i, "TRANSACTION")) {
        if (!kw(t, i + 1, "SNAPSHOT")) transaction_modes(t, i + 1, info);
        return info;
    }
    // SET [SESSION|LOCAL] name {TO|=} value
    if (i + 2 >= t.size() || !is_name(t[i])) return info;
    if (!(t[i + 1].is("TO") || is_op(t[i + 1], "="))) return info;
    const token& name = t[i];
    const token& value = t[i + 2];
    std::string_view v = value.text;
    if (value.kind == token_kind::string && v.size() >= 2 && v.front() == '\'')
        v = v.substr(1, v.size() - 2);
    const auto value_is = [&](std::string_view lower) {
        if (v.size() != lower.size()) return false;
        for (std::size_t k = 0; k < v.size(); ++k)
            if (ascii_lower(v[k]) != lower[k]) return false;
        return true;
    };
    if ((folded_equals(name, "transaction_isolation") ||
         folded_equals(name, "default_transaction_isolation")) &&
        value_is("serializable"))
        info.pins_to_primary = true;
    if (folded_equals(name, "transaction_read_only") && is_false_value(value))
        info.pins_to_primary = true;
    return info;
}

statement_info classify_explain(token_span t, const function_policy& policy, int nesting) {
    std::size_t i = 1;
    bool analyze = false;
    if (i < t.size() && t[i].kind == token_kind::lparen &&
        !(kw(t, i + 1, "SELECT") || kw(t, i + 1, "VALUES") || kw(t, i + 1, "WITH") ||
          kw(t, i + 1, "TABLE") || (i + 1 < t.size() && t[i + 1].kind == token_kind::lparen))) {
        // EXPLAIN (option [value], ...) statement
        const std::size_t close = matching_paren(t, i);
        if (close >= t.size()) return {};
        bool option_start = true;
        for (std::size_t j = i + 1; j < close; ++j) {
            if (t[j].kind == token_kind::comma) {
                option_start = true;
                continue;
            }
            if (option_start && (t[j].is("ANALYZE") || t[j].is("ANALYSE"))) {
                analyze = j + 1 >= close || t[j + 1].kind == token_kind::comma ||
                          !is_false_value(t[j + 1]);
            }
            option_start = false;
        }
        i = close + 1;
    } else {
        // EXPLAIN [ANALYZE] [VERBOSE] statement
        while (i < t.size() && (t[i].is("ANALYZE") || t[i].is("ANALYSE") || t[i].is("VERBOSE"))) {
            if (!t[i].is("VERBOSE")) analyze = true;
            ++i;
        }
    }
    if (i >= t.size()) return {};
    statement_info inner = classify_tokens(t.subspan(i), policy, nesting + 1);
    if (inner.cls == statement_class::session_state) return {};  // not explainable
    if (analyze) return inner;                                   // it runs
    statement_info info;
    // Without ANALYZE nothing runs: planning a write is a read.
    info.cls = inner.cls == statement_class::write ? statement_class::read : inner.cls;
    info.execute_name = std::move(inner.execute_name);
    return info;
}

statement_info classify_copy(token_span t, const function_policy& policy, int nesting) {
    std::size_t i = 1;
    statement_info info;
    statement_class source = statement_class::read;
    if (i < t.size() && t[i].kind == token_kind::lparen) {
        // COPY (query) TO ...
        const std::size_t close = matching_paren(t, i);
        if (close >= t.size()) return {};
        const statement_info inner =
            classify_tokens(t.subspan(i + 1, close - i - 1), policy, nesting + 1);
        if (inner.cls == statement_class::session_state || inner.cls == statement_class::unknown)
            return {};
        source = inner.cls;
        info.creates_temp = inner.creates_temp;
        i = close + 1;
    } else {
        // COPY [BINARY] table [(columns)] {FROM|TO} ...
        if (kw(t, i, "BINARY")) ++i;
        if (i >= t.size() || !is_name(t[i])) return {};
        const std::size_t last = qualified_end(t, i);
        if ((last != i && is_system_schema(t[i])) || folded_starts_with(t[last], "pg_"))
            source = statement_class::primary_only;
        i = last + 1;
        if (i < t.size() && t[i].kind == token_kind::lparen) {
            const std::size_t close = matching_paren(t, i);
            if (close >= t.size()) return {};
            i = close + 1;
        }
    }
    if (kw(t, i, "FROM")) {
        info.cls = statement_class::write;
        return info;
    }
    if (!kw(t, i, "TO")) return {};
    if (source == statement_class::write)
        info.cls = statement_class::write;
    else if (kw(t, i + 1, "STDOUT"))
        info.cls = source;
    else
        info.cls = statement_class::primary_only;  // a file or program on the primary's host
    return info;
}

statement_info classify_create(token_span t) {
    statement_info info = with_class(statement_class::write);
    std::size_t i = 1;
    if (kw(t, i, "OR") && kw(t, i + 1, "REPLACE")) i += 2;
    if (kw(t, i, "GLOBAL") || kw(t, i, "LOCAL")) ++i;
    if (kw(t, i, "TEMP") || kw(t, i, "TEMPORARY")) {
        info.creates_temp = true;
        return info;
    }
    if (kw(t, i, "UNLOGGED")) ++i;
    const bool table = kw(t, i, "TABLE");
    std::size_t depth = 0;
    for (std::size_t j = i; j < t.size(); ++j) {
        const token& k = t[j];
        if (k.kind == token_kind::lparen) {
            ++depth;
        } else if (k.kind == token_kind::rparen) {
            if (depth > 0) --depth;
        } else if ((table && depth == 0 && k.is("ON") && kw(t, j + 1, "COMMIT")) ||
                   (is_name(k) && j + 1 < t.size() && t[j + 1].kind == token_kind::dot &&
                    is_temp_schema(k))) {
            // ON COMMIT is only allowed on temporary tables; CREATE TABLE pg_temp.x
            info.creates_temp = true;
            break;
        }
    }
    return info;
}

statement_info classify_prepare(token_span t, const function_policy& policy, int nesting) {
    if (kw(t, 1, "TRANSACTION") && t.size() > 2 && t[2].kind == token_kind::string) {
        statement_info info = with_class(statement_class::write);
        info.ends_transaction = true;
        return info;
    }
    statement_info info;
    if (t.size() < 2 || !is_name(t[1])) return info;
    info.prepare_name = identifier_value(t[1]);
    std::size_t i = 2;
    if (i < t.size() && t[i].kind == token_kind::lparen) i = matching_paren(t, i) + 1;
    if (!kw(t, i, "AS") || i + 1 >= t.size()) return info;
    const statement_info inner = classify_tokens(t.subspan(i + 1), policy, nesting + 1);
    if (inner.cls != statement_class::session_state && inner.execute_name.empty())
        info.cls = inner.cls;
    return info;
}

statement_info classify_execute(token_span t, const function_policy& policy) {
    statement_info info;
    if (t.size() < 2 || !is_name(t[1])) return info;
    info.execute_name = identifier_value(t[1]);
    if (t.size() > 2) {
        query_facts f;
        scan_query(t.subspan(2), policy, f);  // the arguments: EXECUTE p(nextval('s'))
        if (f.write) info.cls = statement_class::write;
    }
    return info;
}

statement_info classify_deallocate(token_span t) {
    statement_info info = with_class(statement_class::session_state);
    std::size_t i = 1;
    if (kw(t, 1, "PREPARE") && t.size() > 2) i = 2;
    if (kw(t, i, "ALL")) {
        info.deallocate_name.push_back('*');  // (not = "*": a GCC 12 -Wrestrict false positive)
    } else if (i < t.size() && is_name(t[i])) {
        info.deallocate_name = identifier_value(t[i]);
    } else {
        return {};
    }
    return info;
}

statement_info classify_transaction_end(token_span t) {
    // COMMIT|END|ROLLBACK|ABORT [WORK|TRANSACTION] [AND [NO] CHAIN]; ROLLBACK ... TO savepoint
    if (kw(t, 1, "PREPARED"))
        return with_class(statement_class::write);  // COMMIT/ROLLBACK PREPARED
    statement_info info = with_class(statement_class::session_state);
    if (t[0].is("ROLLBACK")) {
        for (const token& k : t)
            if (k.is("TO")) return info;  // ROLLBACK TO SAVEPOINT: the transaction goes on
    }
    info.ends_transaction = true;
    if (has_and_chain(t)) info.begins_transaction = true;
    return info;
}

/// What a statement's first keyword makes it.
enum class verb : std::uint8_t {
    query,
    explain,
    show,
    copy,
    create,
    write,
    listen,
    prepare,
    execute,
    deallocate,
    set,
    session,
    begin,
    start,
    end_transaction,
};

struct verb_entry {
    std::string_view word;
    verb v;
    friend constexpr bool operator<(const verb_entry& a, const verb_entry& b) {
        return a.word < b.word;
    }
};

constexpr verb_entry verbs[] = {
    {"ABORT", verb::end_transaction},
    {"ALTER", verb::write},
    {"ANALYSE", verb::write},
    {"ANALYZE", verb::write},
    {"BEGIN", verb::begin},
    {"CALL", verb::write},
    {"CHECKPOINT", verb::write},
    {"CLOSE", verb::write},
    {"CLUSTER", verb::write},
    {"COMMENT", verb::write},
    {"COMMIT", verb::end_transaction},
    {"COPY", verb::copy},
    {"CREATE", verb::create},
    {"DEALLOCATE", verb::deallocate},
    {"DECLARE", verb::write},
    {"DELETE", verb::write},
    {"DISCARD", verb::session},
    {"DO", verb::write},
    {"DROP", verb::write},
    {"END", verb::end_transaction},
    {"EXECUTE", verb::execute},
    {"EXPLAIN", verb::explain},
    {"FETCH", verb::write},
    {"GRANT", verb::write},
    {"IMPORT", verb::write},
    {"INSERT", verb::write},
    {"LISTEN", verb::listen},
    {"LOAD", verb::write},
    {"LOCK", verb::write},
    {"MERGE", verb::write},
    {"MOVE", verb::write},
    {"NOTIFY", verb::write},
    {"PREPARE", verb::prepare},
    {"REASSIGN", verb::write},
    {"REFRESH", verb::write},
    {"REINDEX", verb::write},
    {"RELEASE", verb::session},
    {"RESET", verb::session},
    {"REVOKE", verb::write},
    {"ROLLBACK", verb::end_transaction},
    {"SAVEPOINT", verb::session},
    {"SECURITY", verb::write},
    {"SELECT", verb::query},
    {"SET", verb::set},
    {"SHOW", verb::show},
    {"START", verb::start},
    {"TABLE", verb::query},
    {"TRUNCATE", verb::write},
    {"UNLISTEN", verb::write},
    {"UPDATE", verb::write},
    {"VACUUM", verb::write},
    {"VALUES", verb::query},
    {"WITH", verb::query},
};
static_assert(std::is_sorted(std::begin(verbs), std::end(verbs)));

const verb_entry* find_verb(std::string_view upper) {
    const verb_entry key{upper, verb::query};
    const auto it = std::lower_bound(std::begin(verbs), std::end(verbs), key);
    return (it != std::end(verbs) && it->word == upper) ? it : nullptr;
}

statement_info classify_tokens(token_span t, const function_policy& policy, int nesting) {
    if (t.empty() || nesting > max_nesting) return {};
    std::size_t i = 0;
    while (i < t.size() && t[i].kind == token_kind::lparen)
        ++i;  // (SELECT 1) UNION ...
    if (i >= t.size() || t[i].kind != token_kind::word) return {};
    const verb_entry* v = find_verb(t[i].upper);
    if (!v) return {};
    if (i > 0 && v->v != verb::query) return {};
    switch (v->v) {
        case verb::query:
            return query_info(t, policy);
        case verb::explain:
            return classify_explain(t, policy, nesting);
        case verb::show:
            return with_class(statement_class::read);
        case verb::copy:
            return classify_copy(t, policy, nesting);
        case verb::create:
            return classify_create(t);
        case verb::write:
            return with_class(statement_class::write);
        case verb::listen: {
            statement_info info = with_class(statement_class::write);
            info.listen = true;
            return info;
        }
        case verb::prepare:
            return classify_prepare(t, policy, nesting);
        case verb::execute:
            return classify_execute(t, policy);
        case verb::deallocate:
            return classify_deallocate(t);
        case verb::set:
            return classify_set(t);
        case verb::session:
            return with_class(statement_class::session_state);
        case verb::begin: {
            statement_info info = with_class(statement_class::session_state);
            info.begins_transaction = true;
            transaction_modes(t, (kw(t, 1, "WORK") || kw(t, 1, "TRANSACTION")) ? 2 : 1, info);
            return info;
        }
        case verb::start: {
            if (!kw(t, 1, "TRANSACTION")) return {};
            statement_info info = with_class(statement_class::session_state);
            info.begins_transaction = true;
            transaction_modes(t, 2, info);
            return info;
        }
        case verb::end_transaction:
            return classify_transaction_end(t);
    }
    return {};
}

}  // namespace

const char* to_string(statement_class c) {
    switch (c) {
        case statement_class::read:
            return "read";
        case statement_class::write:
            return "write";
        case statement_class::session_state:
            return "session_state";
        case statement_class::primary_only:
            return "primary_only";
        case statement_class::unknown:
            return "unknown";
    }
    return "unknown";
}

statement_info classify_statement(const sql_statement& statement, const function_policy& policy) {
    if (statement.unterminated || !statement.parens_balanced) return {};
    statement_info info = classify_tokens(statement.tokens, policy, 0);
    if (statement.no_load_balance && info.cls == statement_class::read)
        info.cls = statement_class::primary_only;
    return info;
}

namespace {

/// A lexed_query to lex into: the calling thread's reusable one (no allocation once its
/// buffers have grown), or a fresh one for a large query or a nested call (a policy callback
/// that classifies).
class lexer_lease {
  public:
    lexer_lease(std::string_view sql, const lex_options& lex) {
        thread_local lexed_query scratch;
        thread_local bool busy = false;
        if (!busy && sql.size() <= max_reused) {
            busy_ = &busy;
            busy = true;
            q_ = &scratch;
        } else {
            q_ = &own_;
        }
        q_->assign(sql, lex);
    }
    ~lexer_lease() {
        if (busy_) *busy_ = false;
    }
    lexer_lease(const lexer_lease&) = delete;
    lexer_lease& operator=(const lexer_lease&) = delete;

    const lexed_query& operator*() const { return *q_; }
    const lexed_query* operator->() const { return q_; }

  private:
    static constexpr std::size_t max_reused =
        std::size_t{16} * 1024;  // bounds what each thread keeps
    lexed_query own_;
    lexed_query* q_ = nullptr;
    bool* busy_ = nullptr;
};

}  // namespace

text_markers markers_of(std::string_view text) {
    // Whether the text from `i` is `upper` (the caller has checked that `i` is in the text).
    auto at = [text](std::size_t i, std::string_view upper) {
        return starts_with_ascii_ci(text.substr(i), upper);
    };
    // Each word is found from a letter that few SQL words have (W of WITH HOLD, V of ADVISORY,
    // Y of COPY): one table lookup per byte, and a comparison at a handful of places.
    static constexpr auto anchors = [] {
        std::array<bool, 256> t{};
        for (unsigned char c : std::string_view("WwVvYy"))
            t[c] = true;
        return t;
    }();
    bool with_hold = false, advisory_lock = false, copy = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (!anchors[static_cast<unsigned char>(text[i])]) continue;
        switch (text[i] | 0x20) {  // the letter in lower case
            case 'w':
                with_hold = with_hold || at(i, "WITH HOLD");
                break;
            case 'v':
                advisory_lock = advisory_lock || (i >= 2 && at(i - 2, "ADVISORY_LOCK"));
                break;
            case 'y':
                copy = copy || (i >= 3 && at(i - 3, "COPY"));
                break;
            default:
                break;
        }
    }
    return {with_hold || advisory_lock, copy && contains_ascii_ci(text, "STDIN")};
}

std::vector<statement_info> classify(std::string_view query, const function_policy& policy,
                                     const lex_options& lex) {
    const lexer_lease q(query, lex);
    std::vector<statement_info> out;
    out.reserve(q->statements().size());
    for (const sql_statement& s : q->statements())
        out.push_back(classify_statement(s, policy));
    return out;
}

statement_info classify_one(std::string_view statement, const function_policy& policy,
                            const lex_options& lex) {
    const lexer_lease q(statement, lex);
    if (q->statements().size() != 1) return {};
    return classify_statement(q->statements().front(), policy);
}

}  // namespace pgpilot::router
