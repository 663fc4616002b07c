#include "config/pgpool_import.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>

#include "config/config.hpp"
#include "config/hba.hpp"
#include "config/lines.hpp"
#include "config/schema.hpp"

namespace pgpilot::config {

namespace {

struct setting {
    std::string name;  // lower case
    std::string value;
    int line = 0;
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

/// One line of PostgreSQL's configuration file syntax: `name [=] value [# comment]`, the value
/// a single-quoted string ('' and backslash escapes inside) or a word. nullopt for a blank or
/// comment line; sets *error for anything else that is not a setting.
std::optional<setting> parse_line(std::string_view line, std::string* error) {
    std::size_t i = 0;
    auto skip_space = [&] {
        while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i])))
            ++i;
    };
    skip_space();
    if (i == line.size() || line[i] == '#') return std::nullopt;
    const auto name_start = i;
    while (i < line.size() &&
           (std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '_' || line[i] == '.'))
        ++i;
    if (i == name_start) {
        *error = "expected a setting name";
        return std::nullopt;
    }
    setting s;
    s.name = lower(line.substr(name_start, i - name_start));
    skip_space();
    if (i < line.size() && line[i] == '=') ++i;
    skip_space();
    if (i < line.size() && line[i] == '\'') {
        for (++i;; ++i) {
            if (i >= line.size()) {
                *error = "unterminated quoted string";
                return std::nullopt;
            }
            const char c = line[i];
            if (c == '\'' && i + 1 < line.size() && line[i + 1] == '\'') {
                s.value += '\'';
                ++i;
            } else if (c == '\'') {
                ++i;
                break;
            } else if (c == '\\' && i + 1 < line.size()) {
                const char e = line[++i];
                s.value += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            } else {
                s.value += c;
            }
        }
    } else {
        const auto start = i;
        while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i])) &&
               line[i] != '#')
            ++i;
        if (i == start || line[start] == '=') {
            *error = fmt::format("no value for \"{}\"", s.name);
            return std::nullopt;
        }
        s.value = std::string(line.substr(start, i - start));
    }
    skip_space();
    if (i < line.size() && line[i] != '#') {
        *error = fmt::format("unexpected \"{}\" after the value of \"{}\"", line.substr(i), s.name);
        return std::nullopt;
    }
    return s;
}

std::optional<bool> parse_bool(std::string_view text) {
    const auto v = lower(trim(text));
    if (v == "on" || v == "true" || v == "yes" || v == "1") return true;
    if (v == "off" || v == "false" || v == "no" || v == "0") return false;
    return std::nullopt;
}

std::optional<double> parse_number(std::string_view text) {
    text = trim(text);
    double v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(v))
        return std::nullopt;
    return v;
}

std::vector<std::string> split_list(std::string_view text) {
    std::vector<std::string> out;
    while (!text.empty()) {
        const auto comma = text.find(',');
        const auto item = trim(text.substr(0, comma));
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return out;
}

/// Length of the valid UTF-8 sequence at text[i], or 0 if none starts there.
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c < 0x80             ? 1
                          : (c & 0xE0) == 0xC0 ? 2
                          : (c & 0xF0) == 0xE0 ? 3
                          : (c & 0xF8) == 0xF0 ? 4
                                               : 0;
    if (n == 0 || i + n > text.size() || (n == 2 && c < 0xC2) || (n == 4 && c > 0xF4)) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 0;
    const auto c1 = static_cast<unsigned char>(text[i + 1 < text.size() ? i + 1 : i]);
    if ((n == 3 && c == 0xE0 && c1 < 0xA0) || (n == 3 && c == 0xED && c1 > 0x9F) ||
        (n == 4 && c == 0xF0 && c1 < 0x90) || (n == 4 && c == 0xF4 && c1 > 0x8F))
        return 0;  // overlong, surrogate, beyond U+10FFFF
    return n;
}

bool valid_utf8(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
        const auto n = utf8_sequence(text, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/// `text` with bytes that are not UTF-8 written \xHH: a TOML file (comments too) must be UTF-8.
std::string utf8_only(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        const auto n = utf8_sequence(text, i);
        if (n == 0) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[i++]));
        } else {
            out.append(text.substr(i, n));
            i += n;
        }
    }
    return out;
}

/// pgpool-II's defaults, for the pool sizes derived from both of them.
constexpr std::int64_t pgpool_num_init_children = 32;
constexpr std::int64_t pgpool_max_pool = 4;
/// The largest whole number taken from a pgpool.conf (2^50).
constexpr double max_whole = double(std::int64_t(1) << 50);

const char* const no_children =
    "not needed: pgpilot serves every client from a few event-loop threads, with no process per "
    "client";
const char* const no_watchdog =
    "not imported: pgpilot has no watchdog yet (run one pgpilot, or several behind a virtual IP "
    "of your own)";
const char* const no_pcp =
    "not imported: pgpilot has no PCP; node control is PGPOOL ATTACH/DETACH/PROMOTE NODE in SQL "
    "or POST /nodes/ID/... on the HTTP admin endpoint ([admin] port, docs/admin.md)";
const char* const no_tls = "not imported: pgpilot has no TLS yet";
const char* const no_cache = "not imported: pgpilot has no query cache";
const char* const no_logging =
    "not imported: pgpilot logs to stderr; [server] log_level sets how much";
const char* const no_recovery = "not imported: pgpilot has no online recovery (pcp_recovery_node)";
const char* const no_file = "not needed by pgpilot";

/// Settings dropped by prefix: (prefix, reason).
const std::pair<std::string_view, const char*> dropped_prefixes[] = {
    {"wd_", no_watchdog},
    {"heartbeat_", no_watchdog},
    {"other_pgpool_", no_watchdog},
    {"other_wd_", no_watchdog},
    {"if_", no_watchdog},
    {"arping_", no_watchdog},
    {"ssl", no_tls},
    {"memqcache_", no_cache},
    {"log_", no_logging},
    {"syslog_", no_logging},
    {"recovery_", no_recovery},
    {"pcp_", no_pcp},
    {"relcache_", "not needed: pgpilot keeps no relation cache"},
};

/// Settings dropped by name: (name, reason).
const std::pair<std::string_view, const char*> dropped_names[] = {
    {"child_life_time", no_children},
    {"child_max_connections", no_children},
    {"min_spare_children", no_children},
    {"max_spare_children", no_children},
    {"process_management_mode", no_children},
    {"process_management_strategy", no_children},
    {"listen_backlog_multiplier", no_children},
    {"serialize_accept", no_children},
    {"use_watchdog", no_watchdog},
    {"delegate_ip", no_watchdog},
    {"trusted_servers", no_watchdog},
    {"trusted_server_command", no_watchdog},
    {"ping_path", no_watchdog},
    {"failover_when_quorum_exists", no_watchdog},
    {"failover_require_consensus", no_watchdog},
    {"allow_multiple_failover_requests_from_node", no_watchdog},
    {"enable_consensus_with_half_votes", no_watchdog},
    {"clear_memqcache_on_escalation", no_watchdog},
    {"memory_cache_enabled", no_cache},
    {"cache_safe_memqcache_table_list", no_cache},
    {"cache_unsafe_memqcache_table_list", no_cache},
    {"logging_collector", no_logging},
    {"client_min_messages", no_logging},
    {"pid_file_name", no_file},
    {"logdir", no_file},
    {"client_idle_limit_in_recovery", no_recovery},

    {"allow_clear_text_frontend_auth",
     "not imported: pgpilot checks every client against [[user]] (from pool_passwd)"},
    {"check_temp_table", "not needed: pgpilot tracks temporary tables from the statements"},
    {"check_unlogged_table", "not needed: pgpilot routes reads of any table by the statement"},
    {"enable_shared_relcache", "not needed: pgpilot keeps no relation cache"},
    {"ignore_leading_white_space", "not needed: pgpilot's SQL lexer skips white space"},
    {"allow_sql_comments", "not needed: pgpilot's SQL lexer skips comments"},
    {"prefer_lower_delay_standby", "not imported: use [load_balance] delay_threshold"},
    {"primary_routing_query_pattern_list",
     "not imported: pgpilot routes by statement, not pattern"},
    {"black_query_pattern_list", "not imported: pgpilot routes by statement, not pattern"},
    {"health_check_test", "not imported (a pgpool-II testing switch)"},
    {"backend_socket_dir", "not imported: give [[backend]] host the socket directory"},
};

bool is_watchdog_node_key(const std::string& name) {
    static const std::regex re(
        "(hostname|pgpool_port|wd_port|heartbeat_hostname|heartbeat_port|"
        "heartbeat_device)[0-9]+");
    return std::regex_match(name, re);
}

class importer {
  public:
    importer(const std::string& source, const file_reader& read_file)
        : source_(source), read_file_(read_file) {}

    pgpool_import run(std::string_view text);

  private:
    void note(const setting& s, std::string_view what) {
        notes_.emplace_back(s.line, fmt::format("{}:{}: {}: {}", source_, s.line, s.name, what));
    }
    void error(const setting& s, std::string_view what) {
        errors_.emplace_back(s.line, fmt::format("{}:{}: {}: {}", source_, s.line, s.name, what));
    }
    toml::table& section(std::string_view name) {
        if (!root_.contains(name)) root_.insert(name, toml::table{});
        return *root_[name].as_table();
    }
    template <class T>
    void set(std::string_view table, std::string_view key, T value) {
        section(table).insert_or_assign(key, std::move(value));
    }
    std::optional<bool> as_bool(const setting& s) {
        auto v = parse_bool(s.value);
        if (!v) error(s, fmt::format("expected on or off, got \"{}\"", s.value));
        return v;
    }
    std::optional<double> as_number(const setting& s) {
        auto v = parse_number(s.value);
        if (!v) error(s, fmt::format("expected a number, got \"{}\"", s.value));
        return v;
    }
    std::optional<std::int64_t> as_integer(const setting& s) {
        auto v = as_number(s);
        if (v && *v != std::floor(*v)) {
            error(s, fmt::format("expected a whole number, got \"{}\"", s.value));
            return std::nullopt;
        }
        // Far beyond any setting's range, and what an int64 holds exactly (and at all).
        if (v && std::fabs(*v) > max_whole) {
            error(s, fmt::format("{} is out of range", s.value));
            return std::nullopt;
        }
        return v ? std::optional<std::int64_t>(std::int64_t(*v)) : std::nullopt;
    }
    /// A value copied with its type: string, integer, number, boolean; a millisecond value
    /// turned into seconds.
    enum class kind { string, integer, number, boolean, milliseconds };
    /// Copies s into `into` (the table `path`: "server", "backend[1]") as `key`.
    void copy(const setting& s, kind k, toml::table& into, std::string_view path,
              std::string_view key);

    bool apply(const setting& s);
    bool apply_backend(const setting& s);
    void finish_pool_sizes();
    void import_users();
    bool import_hba();
    void finish_failover();
    std::string render();

    const std::string& source_;
    const file_reader& read_file_;
    toml::table root_;
    std::map<int, toml::table> backends_;
    std::map<int, int> backend_lines_;                    // the first line of each node's settings
    std::map<std::string, std::string> plain_passwords_;  // pool_passwd's plain-text passwords
    std::vector<std::pair<int, std::string>> notes_, errors_;
    std::optional<setting> num_init_children_, max_pool_, pool_passwd_, failover_command_,
        follow_command_, enable_pool_hba_;
    std::vector<setting> password_users_;  // sr_check_user, health_check_user
    /// The setting each copied key came from ("server.port", "backend[1].port").
    std::map<std::string, setting, std::less<>> origins_;
};

void importer::copy(const setting& s, kind k, toml::table& into, std::string_view path,
                    std::string_view key) {
    origins_[fmt::format("{}.{}", path, key)] = s;
    switch (k) {
        case kind::string:
            into.insert_or_assign(key, s.value);
            break;
        case kind::integer:
            if (auto v = as_integer(s)) into.insert_or_assign(key, *v);
            break;
        case kind::number:
            if (auto v = as_number(s)) into.insert_or_assign(key, *v);
            break;
        case kind::boolean:
            if (auto v = as_bool(s)) into.insert_or_assign(key, *v);
            break;
        case kind::milliseconds:
            if (auto v = as_number(s)) {
                into.insert_or_assign(key, *v / 1000);
                note(s, fmt::format("{} ms, carried over in seconds: {}", s.value, *v / 1000));
            }
            break;
    }
}

bool importer::apply(const setting& s) {
    using enum kind;
    static const std::vector<std::tuple<std::string_view, std::string_view, std::string_view, kind>>
        simple{
            {"listen_addresses", "server", "listen_addresses", string},
            {"port", "server", "port", integer},
            {"reserved_connections", "pool", "reserved_connections", integer},
            {"connection_life_time", "pool", "connection_life_time", number},
            {"client_idle_limit", "pool", "client_idle_limit", number},
            {"authentication_timeout", "pool", "authentication_timeout", number},
            {"load_balance_mode", "load_balance", "enabled", boolean},
            {"statement_level_load_balance", "load_balance", "statement_level", boolean},
            {"database_redirect_preference_list", "load_balance",
             "database_redirect_preference_list", string},
            {"app_name_redirect_preference_list", "load_balance",
             "app_name_redirect_preference_list", string},
            {"delay_threshold", "load_balance", "delay_threshold", number},
            {"delay_threshold_by_time", "load_balance", "delay_threshold_by_time", number},
            {"sr_check_period", "streaming_replication_check", "period", number},
            {"sr_check_user", "streaming_replication_check", "user", string},
            {"sr_check_password", "streaming_replication_check", "password", string},
            {"sr_check_database", "streaming_replication_check", "database", string},
            {"health_check_period", "health_check", "period", number},
            {"health_check_timeout", "health_check", "timeout", number},
            {"health_check_max_retries", "health_check", "max_retries", integer},
            {"health_check_retry_delay", "health_check", "retry_delay", number},
            {"connect_timeout", "health_check", "connect_timeout", milliseconds},
            {"health_check_user", "health_check", "user", string},
            {"health_check_password", "health_check", "password", string},
            {"health_check_database", "health_check", "database", string},
            {"failback_command", "failover", "failback_command", string},
            {"failover_on_backend_error", "failover", "on_backend_error", boolean},
            {"failover_on_backend_shutdown", "failover", "on_backend_shutdown", boolean},
            {"search_primary_node_timeout", "failover", "search_primary_node_timeout", number},
            {"auto_failback", "failover", "auto_failback", boolean},
            {"auto_failback_interval", "failover", "auto_failback_interval", number},
            {"detach_false_primary", "failover", "detach_false_primary", boolean},
        };
    for (const auto& [name, table, key, k] : simple) {
        if (s.name != name) continue;
        copy(s, k, section(table), table, key);
        if (s.name == "sr_check_user" || s.name == "health_check_user")
            password_users_.push_back(s);
        return true;
    }
    const auto& n = s.name;
    if (n == "unix_socket_directories" || n == "socket_dir") {
        const auto dirs = split_list(s.value);
        set("server", "unix_socket_dir", dirs.empty() ? std::string() : dirs.front());
        if (dirs.size() > 1)
            note(s, fmt::format("pgpilot has one Unix socket: only \"{}\" is kept", dirs.front()));
    } else if (n == "log_min_messages") {
        const auto v = lower(s.value);
        const char* level = v.starts_with("debug")                         ? "debug"
                            : v == "info" || v == "notice" || v == "log"   ? "info"
                            : v == "warning"                               ? "warning"
                            : v == "error" || v == "fatal" || v == "panic" ? "error"
                                                                           : nullptr;
        if (!level) {
            error(s, fmt::format("unknown level \"{}\"", s.value));
        } else {
            set("server", "log_level", std::string(level));
            if (v != level)
                note(s, fmt::format("carried over as [server] log_level = \"{}\"", level));
        }
    } else if (n == "num_init_children") {
        if (as_integer(s)) num_init_children_ = s;
    } else if (n == "max_pool") {
        if (as_integer(s)) max_pool_ = s;
    } else if (n == "connection_cache") {
        if (auto on = as_bool(s); on && !*on) {
            set("pool", "max_pool", std::int64_t(0));
            note(s, "carried over as [pool] max_pool = 0: no idle connection is kept for reuse");
        }
    } else if (n == "backend_clustering_mode") {
        if (lower(s.value) != "streaming_replication")
            error(s, fmt::format("pgpilot serves streaming replication only, not \"{}\"", s.value));
    } else if (n == "master_slave_sub_mode") {
        if (lower(s.value) != "stream")
            error(s, fmt::format("pgpilot serves streaming replication only, not \"{}\"", s.value));
    } else if (n == "replication_mode") {
        if (auto on = as_bool(s); on && *on)
            error(s,
                  "pgpilot serves streaming replication only, not pgpool-II's native replication");
    } else if (n == "master_slave_mode") {
        if (auto on = as_bool(s); on && !*on)
            note(s, "pgpilot always runs in streaming replication mode (master_slave_mode = on)");
    } else if (n == "disable_load_balance_on_write") {
        const auto v = lower(s.value);
        if (v == "off" || v == "transaction" || v == "trans_transaction" || v == "always")
            set("load_balance", "disable_load_balance_on_write", v);
        else
            note(s,
                 fmt::format("\"{}\" is not supported; pgpilot's default \"transaction\" applies "
                             "(reads never see data older than the client's own writes)",
                             s.value));
    } else if (n == "write_function_list" || n == "black_function_list" ||
               n == "read_only_function_list" || n == "white_function_list") {
        const bool write = n == "write_function_list" || n == "black_function_list";
        toml::array names;
        for (const auto& f : split_list(s.value))
            names.push_back(f);
        set("load_balance", write ? "write_functions" : "read_only_functions", std::move(names));
        if (s.value.find_first_of("*.[]()|+?^$\\") != std::string::npos)
            note(s, "pgpool-II reads these as regular expressions; pgpilot compares names exactly");
    } else if (n == "failover_command") {
        failover_command_ = s;
        set("failover", "command", s.value);
    } else if (n == "follow_primary_command" || n == "follow_master_command") {
        follow_command_ = s;
        set("failover", "follow_primary_command", s.value);
    } else if (n == "pool_passwd") {
        pool_passwd_ = s;
    } else if (n == "enable_pool_hba") {
        if (auto on = as_bool(s)) enable_pool_hba_ = on.value() ? std::optional(s) : std::nullopt;
    } else {
        return apply_backend(s);
    }
    return true;
}

bool importer::apply_backend(const setting& s) {
    using enum kind;
    static const std::regex per_node("([a-z_]+[a-z])([0-9]+)");
    std::smatch m;
    if (!std::regex_match(s.name, m, per_node)) return false;
    const std::string base = m[1];
    static const std::map<std::string, std::pair<std::string_view, kind>, std::less<>> keys{
        {"backend_hostname", {"host", string}},
        {"backend_port", {"port", integer}},
        {"backend_weight", {"weight", number}},
        {"backend_data_directory", {"data_directory", string}},
        {"backend_application_name", {"application_name", string}},
        {"health_check_period", {"health_check_period", number}},
        {"health_check_timeout", {"health_check_timeout", number}},
        {"health_check_max_retries", {"health_check_max_retries", integer}},
        {"health_check_retry_delay", {"health_check_retry_delay", number}},
        {"connect_timeout", {"health_check_connect_timeout", milliseconds}},
        {"health_check_user", {"health_check_user", string}},
        {"health_check_password", {"health_check_password", string}},
        {"health_check_database", {"health_check_database", string}},
    };
    const auto found = keys.find(base);
    if (found == keys.end() && base != "backend_flag") return false;
    const int id = std::stoi(m[2].str().substr(0, 6));
    auto& node = backends_[id];
    backend_lines_.emplace(id, s.line);
    if (base == "backend_flag") {
        // pgpool-II joins flags with '|'; pgpilot takes one, ALWAYS_PRIMARY first.
        const auto flags = lower(s.value);
        const bool always = flags.find("always_primary") != std::string::npos;
        const bool disallow = flags.find("disallow_to_failover") != std::string::npos;
        node.insert_or_assign("flag", std::string(always     ? "ALWAYS_PRIMARY"
                                                  : disallow ? "DISALLOW_TO_FAILOVER"
                                                             : "ALLOW_TO_FAILOVER"));
        if (always && disallow)
            note(s, "carried over as ALWAYS_PRIMARY, which pgpilot never fails over");
        return true;
    }
    const auto& [key, k] = found->second;
    copy(s, k, node, fmt::format("backend[{}]", id), key);
    return true;
}

// pgpool-II: every client process may hold a connection to each node for any user and
// database (max_pool of them cached), so a user and database can have num_init_children
// connections to a node, and a node num_init_children * max_pool in all.
void importer::finish_pool_sizes() {
    if (!num_init_children_ && !max_pool_) return;
    const auto children =
        num_init_children_ ? *parse_number(num_init_children_->value) : pgpool_num_init_children;
    const auto cached = max_pool_ ? *parse_number(max_pool_->value) : pgpool_max_pool;
    // Both are at most max_whole; their product is capped there (pgpilot's range check then
    // says what is wrong).
    const auto per_node = std::int64_t(std::min(children * std::max<double>(cached, 1), max_whole));
    // What pgpilot's range checks say of these is said of the pgpool.conf lines.
    const auto& origin = num_init_children_ ? *num_init_children_ : *max_pool_;
    for (const char* key : {"max_client_connections", "pool_size", "max_backend_connections"})
        origins_[fmt::format("pool.{}", key)] = origin;
    if (max_pool_) origins_["pool.max_pool"] = *max_pool_;
    if (num_init_children_) {
        set("pool", "max_client_connections", std::int64_t(children));
        set("pool", "pool_size", std::int64_t(children));
        note(*num_init_children_,
             fmt::format("carried over as [pool] max_client_connections = {0} (clients beyond "
                         "it wait, as for pgpool-II's processes) and pool_size = {0} (server "
                         "connections per user, database and node)",
                         std::int64_t(children)));
    }
    set("pool", "max_backend_connections", per_node);
    if (max_pool_) {
        set("pool", "max_pool", std::int64_t(cached));
        note(*max_pool_, fmt::format("carried over as [pool] max_pool = {} (idle connections "
                                     "kept per user, database and node) and "
                                     "max_backend_connections = {} (num_init_children x max_pool, "
                                     "per node)",
                                     std::int64_t(cached), per_node));
    }
}

// pool_passwd (pgpool-II's default: the file pool_passwd beside pgpool.conf), read as [auth]
// passwd_file reads it (parse_passwd), copied into [[user]]: the imported configuration
// stands alone.
void importer::import_users() {
    std::string name = pool_passwd_ ? pool_passwd_->value : "pool_passwd";
    const setting where = pool_passwd_ ? *pool_passwd_ : setting{"pool_passwd", name, 0};
    const auto path = path_beside(source_, name);
    std::optional<std::string> text;
    if (!path.empty()) text = read_file_(path);
    toml::array users;
    bool any_md5 = false;
    const auto parsed = parse_passwd(text.value_or(""), path);
    for (const auto& e : parsed.errors)
        notes_.emplace_back(0, fmt::format("{}; skipped", e));
    for (const auto& u : parsed.users) {
        if (!valid_utf8(u.name) || !valid_utf8(u.password)) {
            notes_.emplace_back(0, fmt::format("{}: user \"{}\": not valid UTF-8; skipped", path,
                                               utf8_only(u.name)));
            continue;
        }
        const bool md5 = u.password.starts_with("md5") && u.password.size() == 35;
        any_md5 = any_md5 || md5;
        if (!md5 && !u.password.starts_with("SCRAM-SHA-256$"))
            plain_passwords_[u.name] = u.password;
        users.push_back(toml::table{{"name", u.name}, {"password", u.password}});
    }
    const bool hba = import_hba();
    if (!users.empty()) {
        const auto count = users.size();
        const char* method = any_md5 ? "md5" : "scram-sha-256";
        root_.insert_or_assign("user", std::move(users));
        if (!hba) set("auth", "method", std::string(method));
        notes_.emplace_back(where.line,
                            hba ? fmt::format("{}: {} users imported as [[user]]", path, count)
                                : fmt::format("{}: {} users imported as [[user]]; [auth] method = "
                                              "\"{}\" for every client",
                                              path, count, method));
    } else if (pool_passwd_ || text) {
        notes_.emplace_back(where.line,
                            fmt::format("{}: {}; [auth] method stays \"trust\": pgpilot lets "
                                        "clients in and logs in to the backends as them; add "
                                        "[[user]] entries and set [auth] method",
                                        path.empty() ? "pool_passwd = ''" : path,
                                        path.empty() ? "no password file"
                                        : text       ? "no user in it"
                                                     : "cannot be read"));
    }
    // pgpool-II looks up an empty sr_check_password or health_check_password in pool_passwd.
    for (const auto& s : password_users_) {
        const bool sr = s.name == "sr_check_user";
        auto& table = section(sr ? "streaming_replication_check" : "health_check");
        const auto* given = table.get_as<std::string>("password");
        const auto found = plain_passwords_.find(s.value);
        if ((!given || given->get().empty()) && found != plain_passwords_.end()) {
            table.insert_or_assign("password", found->second);
            note(s, "its password is taken from pool_passwd, as pgpool-II does");
        }
    }
}

// enable_pool_hba = on: pool_hba.conf beside pgpool.conf becomes [auth] hba_file when pgpilot
// can read every line of it (same syntax; pgpilot's methods: trust, reject, password, md5,
// scram-sha-256). Whether it did.
bool importer::import_hba() {
    if (!enable_pool_hba_) return false;
    const auto path = path_beside(source_, "pool_hba.conf");
    const auto text = read_file_(path);
    if (!text) {
        note(*enable_pool_hba_, fmt::format("cannot read {}; [auth] method applies to every "
                                            "client instead",
                                            path));
        return false;
    }
    const auto parsed = parse_hba(*text, path);
    if (!parsed.errors.empty()) {
        note(*enable_pool_hba_,
             fmt::format("{} is not carried over, [auth] method applies to every client "
                         "instead: {}",
                         path, parsed.errors.front()));
        return false;
    }
    set("auth", "hba_file", std::filesystem::absolute(path).string());
    return true;
}

// Without failover_command pgpool-II promotes nothing, and without follow_primary_command it
// leaves the other standbys as they are; pgpilot would do both itself (builtin_promote and
// builtin_follow). Keep pgpool-II's behaviour; the note says how to have pgpilot's.
void importer::finish_failover() {
    const std::tuple<const std::optional<setting>&, const char*, const char*> commands[] = {
        {failover_command_, "failover_command: [failover] builtin_promote",
         "pgpool-II promotes nothing without one (set it to true to have pgpilot promote the "
         "standby with the most WAL)"},
        {follow_command_, "follow_primary_command: [failover] builtin_follow",
         "pgpool-II leaves the other standbys alone without one"},
    };
    for (const auto& [command, what, why] : commands) {
        if (command && !command->value.empty()) continue;
        const std::string_view key =
            std::string_view(what).substr(std::string_view(what).rfind(' ') + 1);
        set("failover", key, false);
        notes_.emplace_back(command ? command->line : 0,
                            fmt::format("{}: no {} = false, as {}", source_, what, why));
    }
}

std::string importer::render() {
    toml::array backends;
    for (auto& [id, node] : backends_)
        backends.push_back(std::move(node));
    root_.insert_or_assign("backend", std::move(backends));
    std::ostringstream out;
    out << "# pgpilot configuration imported from " << source_
        << " by pgpilot --import-pgpool.\n"
           "# Settings that were not carried over as they were are listed at the end.\n\n"
        << toml::toml_formatter{root_} << "\n";
    if (!notes_.empty()) {
        out << "\n# Notes of the import:\n";
        for (const auto& [line, text] : notes_)
            out << "#   " << utf8_only(detail::escape_control_characters(text)) << "\n";
    }
    return out.str();
}

pgpool_import importer::run(std::string_view text) {
    std::map<std::string, setting> last;
    std::vector<setting> settings;
    detail::for_each_line(text, [&](int line_no, std::string_view line) {
        std::string why;
        auto s = parse_line(line, &why);
        if (!why.empty()) {
            errors_.emplace_back(line_no, fmt::format("{}:{}: {}", source_, line_no, why));
            return;
        }
        if (!s) return;
        s->line = line_no;
        if (!valid_utf8(s->value)) {
            errors_.emplace_back(line_no, fmt::format("{}:{}: {}: not valid UTF-8: \"{}\"", source_,
                                                      line_no, s->name, utf8_only(s->value)));
            return;
        }
        if (auto it = last.find(s->name); it != last.end())
            note(it->second,
                 fmt::format("set again on line {}; that value is the one used", line_no));
        last[s->name] = *s;
    });
    for (const auto& [name, s] : last)
        settings.push_back(s);
    std::sort(settings.begin(), settings.end(),
              [](const setting& a, const setting& b) { return a.line < b.line; });
    for (const auto& s : settings) {
        if (apply(s)) continue;
        const char* reason = nullptr;
        for (const auto& [prefix, why] : dropped_prefixes)
            if (s.name.starts_with(prefix)) reason = why;
        for (const auto& [name, why] : dropped_names)
            if (s.name == name) reason = why;
        if (!reason && is_watchdog_node_key(s.name)) reason = no_watchdog;
        note(s, reason ? reason : "unknown to pgpilot; not imported");
    }
    finish_pool_sizes();
    finish_failover();
    for (int id = 0; id < int(backends_.size()); ++id) {
        const auto it = backends_.find(id);
        if (it == backends_.end()) {
            const auto [next, line] = *backend_lines_.upper_bound(id);
            errors_.emplace_back(
                line, fmt::format("{}:{}: backend {} has settings but there is no backend {}: "
                                  "pgpilot numbers backends 0, 1, 2, ... in order",
                                  source_, line, next, id));
            break;
        }
        if (!it->second.contains("host"))
            errors_.emplace_back(backend_lines_[id],
                                 fmt::format("{}:{}: backend_hostname{} is missing", source_,
                                             backend_lines_[id], id));
    }
    if (backends_.empty())
        errors_.emplace_back(
            0, fmt::format("{}: no backend_hostname0: nothing to connect to", source_));
    import_users();

    pgpool_import result;
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    // Values quoted from the files: control characters escaped, one line each.
    for (auto& [line, e] : errors_)
        result.errors.push_back(detail::escape_control_characters(e));
    if (!result.errors.empty()) return result;
    std::stable_sort(notes_.begin(), notes_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    result.toml = render();
    // What pgpilot itself would reject (a port out of range, say), said of the pgpool.conf
    // line it came from: load_string's "SOURCE:LINE:COL: KEY: message" is about the text
    // made here.
    // The hba file was read and parsed above (through read_file): not again from disk here.
    auto checked = root_;
    if (auto* auth = checked["auth"].as_table()) auth->erase("hba_file");
    std::ostringstream checked_text;
    checked_text << toml::toml_formatter{checked};
    auto check = load_string(checked_text.str(), "imported");
    for (const auto& e : check.errors) {
        std::string_view rest = e;
        for (int colons = 0; colons < 3 && !rest.empty(); ++colons)
            rest.remove_prefix(std::min(rest.size(), rest.find(':') + 1));
        rest = trim(rest);
        const auto key = rest.substr(0, rest.find(':'));
        if (const auto it = origins_.find(key); it != origins_.end())
            result.errors.push_back(fmt::format("{}:{}: {}: {} (as {})", source_, it->second.line,
                                                it->second.name, trim(rest.substr(key.size() + 1)),
                                                key));
        else
            result.errors.push_back(
                fmt::format("{}: the imported configuration: {}", source_, rest));
    }
    if (!result.errors.empty()) {
        result.toml.clear();
        return result;
    }
    for (auto& [line, n] : notes_)
        result.notes.push_back(detail::escape_control_characters(n));
    return result;
}

}  // namespace

pgpool_import import_pgpool_conf(std::string_view text, const std::string& source,
                                 const file_reader& read_file) {
    return importer(source, read_file).run(text);
}

}  // namespace pgpilot::config
