// Statement classification: whether a SQL statement may run on a hot standby, must run on the
// primary, or changes session state that every node the session uses must see. Works on the
// tokens of router/sql_lexer.hpp (no regex, no parser), after PostgreSQL's and pgpool-II's
// rules; docs/routing.md says what goes where and why.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "router/sql_lexer.hpp"

namespace pgpilot::router {

/// Where a statement may run.
enum class statement_class {
    read,           ///< may go to a standby
    write,          ///< primary
    session_state,  ///< SET/RESET/DISCARD/BEGIN/COMMIT/ROLLBACK/SAVEPOINT/...: every node used
    primary_only,   ///< a read that must still run on the primary (catalogs, NO LOAD BALANCE)
    unknown         ///< cannot classify -> primary
};

const char* to_string(statement_class);

/// What one statement is and what it does to the session.
struct statement_info {
    statement_class cls = statement_class::unknown;
    /// CREATE TEMP/TEMPORARY TABLE|VIEW|SEQUENCE, SELECT ... INTO TEMP, CREATE TABLE ... ON
    /// COMMIT, CREATE ... pg_temp.x: pins the session to the primary.
    bool creates_temp = false;
    bool listen = false;              ///< LISTEN: pins the session to the primary
    bool begins_transaction = false;  ///< BEGIN / START TRANSACTION / COMMIT|ROLLBACK AND CHAIN
    /// BEGIN READ ONLY / START TRANSACTION READ ONLY / ... ISOLATION LEVEL x READ ONLY.
    bool read_only_transaction = false;
    /// The transaction (or, for SET SESSION CHARACTERISTICS and default_transaction_isolation,
    /// every later one) must run on the primary: READ WRITE, ISOLATION LEVEL SERIALIZABLE
    /// (in BEGIN, START TRANSACTION, SET TRANSACTION...). Wins over read_only_transaction.
    bool pins_to_primary = false;
    /// COMMIT/END/ROLLBACK/ABORT (not ROLLBACK TO SAVEPOINT), PREPARE TRANSACTION.
    bool ends_transaction = false;
    /// SQL PREPARE name AS <inner>: cls is the inner statement's class.
    std::string prepare_name;
    /// SQL EXECUTE name: cls is unknown (the caller looks up what PREPARE said), or write when
    /// the arguments themselves call a write function (the caller takes the stronger class).
    std::string execute_name;
    /// DEALLOCATE [PREPARE] name | ALL ("*" for ALL).
    std::string deallocate_name;
};

/// Which function calls make a query a write, besides the built-in list (docs/routing.md).
/// Names are matched as PostgreSQL folds them: unquoted in lower case, quoted as written.
struct function_policy {
    /// Calls of these make a statement a write (lowercase, optionally schema-qualified).
    std::vector<std::string> write_functions;
    /// When non-empty: a call of any function NOT in this list makes it a write.
    std::vector<std::string> read_only_functions;
    /// Functions known to be volatile (from pg_proc, looked up by the caller): calls of these
    /// make it a write. Receives "name" or "schema.name". May be empty.
    std::function<bool(std::string_view name)> is_volatile;
};

/// What routing looks for in a statement's text besides its class, anywhere in it (strings
/// and comments too) and in any case; a false positive costs no wrong answer, only a
/// connection kept or a WAL position query sent later.
struct text_markers {
    /// Its effect outlives the transaction on that connection alone (besides what the
    /// classifier pins: temporary objects and LISTEN): a cursor WITH HOLD or a session-level
    /// advisory lock. "ADVISORY_LOCK" is in pg_advisory_lock, pg_try_advisory_lock and their
    /// _shared forms, not in pg_advisory_unlock or the pg_advisory_xact_lock family, whose
    /// locks end with the transaction.
    bool holds_session_state = false;
    bool copy_in = false;  ///< COPY ... FROM STDIN
};

/// The markers of a Query or Parse text: one pass over it, and a search for STDIN only in a
/// text that has COPY (it runs for every statement: four searches with contains_ascii_ci()
/// cost 7 % of a pgbench -S transaction).
text_markers markers_of(std::string_view text);

/// One statement_info per statement of a simple Query (empty statements left out).
std::vector<statement_info> classify(std::string_view query, const function_policy& policy = {},
                                     const lex_options& lex = {});

/// The class of one statement (a Parse message). Text that holds no statement, or more than
/// one, is unknown.
statement_info classify_one(std::string_view statement, const function_policy& policy = {},
                            const lex_options& lex = {});

/// The class of one statement lexed by lexed_query.
statement_info classify_statement(const sql_statement& statement,
                                  const function_policy& policy = {});

}  // namespace pgpilot::router
