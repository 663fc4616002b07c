#include "ha/replication.hpp"

#include <cstdlib>

#include "router/cluster.hpp"

namespace pgpilot::ha {

// https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-RECOVERY-INFO-TABLE and
// https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-REPLICATION-VIEW
// pg_current_wal_lsn() fails during recovery, hence the CASE (pg_is_in_recovery() is volatile,
// so the planner does not fold it).
const std::string_view replication_check_sql =
    "SELECT 'node', pg_is_in_recovery()::text, "
    "(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_lsn() END)::text, "
    "pg_last_wal_receive_lsn()::text, "
    "(SELECT conninfo FROM pg_stat_wal_receiver LIMIT 1), "
    "current_setting('cluster_name'), NULL "
    "UNION ALL "
    "SELECT 'walsender', application_name, host(client_addr), state, sync_state, "
    "extract(epoch FROM replay_lag)::text, replay_lsn::text FROM pg_stat_replication";

namespace {

const std::string& text_or_empty(const std::optional<std::string>& v) {
    static const std::string empty;
    return v ? *v : empty;
}

std::string application_name_of(const std::optional<std::string>& receiver_conninfo,
                                const std::optional<std::string>& cluster_name) {
    if (receiver_conninfo) {
        if (auto c = parse_conninfo(*receiver_conninfo)) {
            if (auto v = conninfo_value(*c, "application_name"); v && !v->empty()) return *v;
            if (auto v = conninfo_value(*c, "fallback_application_name"); v && !v->empty())
                return *v;
        }
    }
    // The WAL receiver's default application_name: cluster_name, else "walreceiver".
    if (cluster_name && !cluster_name->empty()) return *cluster_name;
    return receiver_conninfo ? "walreceiver" : "";
}

}  // namespace

std::optional<replication_sample> parse_replication_sample(const std::vector<text_row>& rows,
                                                           std::string& error) {
    replication_sample s;
    bool have_node = false;
    for (const auto& row : rows) {
        if (row.size() != 7 || !row[0]) {
            error = "unexpected row shape";
            return std::nullopt;
        }
        if (*row[0] == "node") {
            if (have_node || !row[1] || !row[2]) {
                error = "missing recovery state or WAL position";
                return std::nullopt;
            }
            have_node = true;
            s.in_recovery = *row[1] == "true";
            auto lsn = router::parse_lsn(*row[2]);
            if (!lsn) {
                error = "bad WAL position \"" + *row[2] + "\"";
                return std::nullopt;
            }
            s.wal_lsn = *lsn;
            if (row[3]) s.receive_lsn = router::parse_lsn(*row[3]);
            if (s.in_recovery) s.application_name = application_name_of(row[4], row[5]);
        } else if (*row[0] == "walsender") {
            walsender_row w;
            w.application_name = text_or_empty(row[1]);
            w.client_addr = text_or_empty(row[2]);
            w.state = text_or_empty(row[3]);
            w.sync_state = text_or_empty(row[4]);
            if (row[5]) w.replay_lag = std::strtod(row[5]->c_str(), nullptr);
            if (row[6]) w.replay_lsn = router::parse_lsn(*row[6]);
            s.walsenders.push_back(std::move(w));
        } else {
            error = "unexpected row kind \"" + *row[0] + "\"";
            return std::nullopt;
        }
    }
    if (!have_node) {
        error = "no row about the node";
        return std::nullopt;
    }
    return s;
}

std::optional<std::size_t> match_walsender(const std::vector<walsender_row>& rows,
                                           std::string_view application_name,
                                           std::string_view host) {
    std::vector<std::size_t> named;
    for (std::size_t i = 0; i < rows.size(); ++i)
        if (application_name.empty() || rows[i].application_name == application_name)
            named.push_back(i);
    if (named.size() == 1 && !application_name.empty()) return named.front();
    std::optional<std::size_t> found;
    for (auto i : named) {
        if (!host.empty() && rows[i].client_addr == host) {
            if (found) return std::nullopt;
            found = i;
        }
    }
    return found;
}

std::optional<conninfo> parse_conninfo(std::string_view text) {
    if (text.starts_with("postgresql://") || text.starts_with("postgres://")) return std::nullopt;
    conninfo out;
    std::size_t i = 0;
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    for (;;) {
        while (i < text.size() && space(text[i]))
            ++i;
        if (i == text.size()) return out;
        std::size_t key_begin = i;
        while (i < text.size() && text[i] != '=' && !space(text[i]))
            ++i;
        std::string key(text.substr(key_begin, i - key_begin));
        while (i < text.size() && space(text[i]))
            ++i;
        if (key.empty() || i == text.size() || text[i] != '=') return std::nullopt;
        ++i;
        while (i < text.size() && space(text[i]))
            ++i;
        std::string value;
        if (i < text.size() && text[i] == '\'') {
            ++i;
            for (;;) {
                if (i == text.size()) return std::nullopt;  // unterminated quote
                char c = text[i++];
                if (c == '\'') break;
                if (c == '\\') {
                    if (i == text.size()) return std::nullopt;
                    c = text[i++];
                }
                value.push_back(c);
            }
        } else {
            while (i < text.size() && !space(text[i])) {
                char c = text[i++];
                if (c == '\\' && i < text.size()) c = text[i++];
                value.push_back(c);
            }
        }
        out.emplace_back(std::move(key), std::move(value));
    }
}

std::string format_conninfo(const conninfo& c) {
    std::string out;
    for (const auto& [k, v] : c) {
        if (!out.empty()) out += ' ';
        out += k;
        out += "='";
        for (char ch : v) {
            if (ch == '\'' || ch == '\\') out += '\\';
            out += ch;
        }
        out += '\'';
    }
    return out;
}

std::optional<std::string> conninfo_value(const conninfo& c, std::string_view key) {
    std::optional<std::string> v;
    for (const auto& [k, value] : c)
        if (k == key) v = value;
    return v;
}

void set_conninfo_value(conninfo& c, std::string_view key, std::optional<std::string> value) {
    bool placed = false;
    for (auto it = c.begin(); it != c.end();) {
        if (it->first != key) {
            ++it;
        } else if (value && !placed) {
            it->second = *value;
            placed = true;
            ++it;
        } else {
            it = c.erase(it);
        }
    }
    if (value && !placed) c.emplace_back(std::string(key), std::move(*value));
}

std::string sql_literal(std::string_view text) {
    std::string out = "E'";
    for (char ch : text) {
        if (ch == '\'' || ch == '\\') out += ch;
        out += ch;
    }
    out += '\'';
    return out;
}

}  // namespace pgpilot::ha
