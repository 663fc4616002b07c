// The streaming-replication check: the query ha/ runs on every node, what it means, and the
// libpq connection strings (primary_conninfo) that replication uses. Pure functions; the
// registry runs the query (registry.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ha/connector.hpp"

namespace pgpilot::ha {

/// One round trip per node and check: a "node" row about the node itself, then one
/// "walsender" row per pg_stat_replication entry (only a primary, or a cascading standby, has
/// them). Every column is text.
extern const std::string_view replication_check_sql;

/// One pg_stat_replication row, as seen on the node that sends WAL.
struct walsender_row {
    std::string application_name;
    std::string client_addr;  ///< "" for a Unix-socket connection or without the privilege
    std::string state;        ///< streaming, catchup, startup, backup, stopping
    std::string sync_state;   ///< async, potential, sync, quorum
    double replay_lag = 0;    ///< seconds; NULL (idle and caught up) reads as 0
    std::optional<std::uint64_t> replay_lsn;
};

/// What one node answered to replication_check_sql.
struct replication_sample {
    bool in_recovery = false;
    /// Primary: pg_current_wal_lsn(); standby: pg_last_wal_replay_lsn().
    std::uint64_t wal_lsn = 0;
    /// Standby: pg_last_wal_receive_lsn() (WAL received and flushed), when streaming started.
    std::optional<std::uint64_t> receive_lsn;
    /// Standby: the application_name its WAL receiver gives the primary (from
    /// pg_stat_wal_receiver.conninfo: application_name, else fallback_application_name), else
    /// cluster_name; "" when unknown.
    std::string application_name;
    std::vector<walsender_row> walsenders;
};

/// Reads the rows of replication_check_sql; nullopt (and `error`) when they make no sense.
std::optional<replication_sample> parse_replication_sample(const std::vector<text_row>& rows,
                                                           std::string& error);

/// Which of `rows` (a primary's walsenders) belongs to a standby known by `application_name`
/// (may be "") and `host`: the only row with that name, or among several (or with no name) the
/// only one whose client_addr is `host`. nullopt when none or ambiguous.
std::optional<std::size_t> match_walsender(const std::vector<walsender_row>& rows,
                                           std::string_view application_name,
                                           std::string_view host);

/// A libpq key/value connection string ("host=a port=5432 application_name='x y'"), in order.
using conninfo = std::vector<std::pair<std::string, std::string>>;

/// Parses a key/value connection string as libpq does (values bare or single-quoted, with
/// backslash escapes). nullopt for URIs (postgresql://...) and malformed strings.
std::optional<conninfo> parse_conninfo(std::string_view text);
/// Writes a connection string that parse_conninfo (and libpq) reads back as `c`; every value
/// is quoted.
std::string format_conninfo(const conninfo& c);
/// The value of `key` in `c`, if present (the last one wins, as in libpq).
std::optional<std::string> conninfo_value(const conninfo& c, std::string_view key);
/// Sets `key` to `value` (replacing every earlier occurrence), or removes it when value is
/// nullopt.
void set_conninfo_value(conninfo& c, std::string_view key, std::optional<std::string> value);

/// A SQL string literal that means `text` whatever standard_conforming_strings is: E'...'
/// with quotes and backslashes escaped.
std::string sql_literal(std::string_view text);

}  // namespace pgpilot::ha
