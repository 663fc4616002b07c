#include "config/config.hpp"

#include "config/lines.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <system_error>

#include "config/schema.hpp"

namespace pgpilot::config {
namespace {

using detail::bool_key;
using detail::emptiness;
using detail::enum_key;
using detail::integer_key;
using detail::key_spec;
using detail::key_table;
using detail::nested_key;
using detail::number_key;
using detail::optional_key;
using detail::required;
using detail::string_key;
using detail::string_list_key;

constexpr detail::enum_name<auth_method> auth_method_names[] = {
    {"trust", auth_method::trust},
    {"password", auth_method::password},
    {"md5", auth_method::md5},
    {"scram-sha-256", auth_method::scram_sha_256},
};

constexpr detail::enum_name<backend_flag> backend_flag_names[] = {
    {"ALLOW_TO_FAILOVER", backend_flag::allow_to_failover},
    {"DISALLOW_TO_FAILOVER", backend_flag::disallow_to_failover},
    {"ALWAYS_PRIMARY", backend_flag::always_primary},
};

constexpr detail::enum_name<log_level> log_level_names[] = {
    {"debug", log_level::debug},
    {"info", log_level::info},
    {"warning", log_level::warning},
    {"error", log_level::error},
};

constexpr detail::enum_name<lb_on_write> lb_on_write_names[] = {
    {"off", lb_on_write::off},
    {"transaction", lb_on_write::transaction},
    {"trans_transaction", lb_on_write::trans_transaction},
    {"always", lb_on_write::always},
};

constexpr detail::enum_name<pool_mode> pool_mode_names[] = {
    {"session", pool_mode::session},
    {"transaction", pool_mode::transaction},
};

constexpr detail::enum_name<consistency_mode> consistency_names[] = {
    {"global", consistency_mode::global},
    {"session", consistency_mode::session},
    {"eventual", consistency_mode::eventual},
};

template <class E, std::size_t N>
const char* name_of(E value, const detail::enum_name<E> (&names)[N]) {
    for (const auto& entry : names) {
        if (entry.value == value) return entry.name.data();
    }
    return "?";
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// listen_addresses: "a, b" (or ["a", "b"]); "" means no TCP listener.
template <class S>
key_spec<S> address_list_key(std::string_view name, std::vector<std::string> S::*member) {
    return {name, [member](S& target, const detail::field& f) {
                std::vector<std::string_view> tokens;
                if (const auto* s = f.node.as_string()) {
                    std::string_view rest = s->get();
                    if (!trim(rest).empty()) {
                        for (;;) {
                            const auto comma = rest.find(',');
                            tokens.push_back(trim(rest.substr(0, comma)));
                            if (comma == std::string_view::npos) break;
                            rest.remove_prefix(comma + 1);
                        }
                    }
                } else if (const auto* arr = f.node.as_array()) {
                    for (const auto& element : *arr) {
                        const auto* s = element.as_string();
                        if (!s) {
                            f.type_error("a string or an array of strings");
                            return;
                        }
                        tokens.push_back(s->get());
                    }
                } else {
                    f.type_error("a string");
                    return;
                }
                std::vector<std::string> addresses;
                bool ok = true;
                for (const auto token : tokens) {
                    if (token.empty()) {
                        f.error("empty entry in the address list");
                        ok = false;
                    } else if (token.find_first_of(" \t,") != std::string_view::npos) {
                        f.error(fmt::format("invalid address \"{}\"", token));
                        ok = false;
                    } else {
                        addresses.emplace_back(token);
                    }
                }
                if (ok && addresses.size() > 1 &&
                    std::find(addresses.begin(), addresses.end(), "*") != addresses.end()) {
                    f.error("\"*\" already means every address and cannot be combined with others");
                    ok = false;
                }
                if (ok) target.*member = std::move(addresses);
            }};
}

key_spec<load_balance_settings> redirect_list_key(
    std::string_view name, std::vector<redirect_rule> load_balance_settings::*member) {
    return {name, [member](load_balance_settings& target, const detail::field& f) {
                const auto* v = f.node.as_string();
                if (!v) {
                    f.type_error("a string");
                    return;
                }
                std::string error;
                if (auto rules = parse_redirect_list(v->get(), &error))
                    target.*member = std::move(*rules);
                else
                    f.error(error);
            }};
}

// A [[backend]] health_check_* key: stored into backend_settings::health_check.*member.
template <class T>
using holder = detail::value_holder<T>;
template <class T>
key_spec<backend_settings> health_check_override(key_spec<holder<T>> key,
                                                 std::optional<T> health_check_overrides::*member) {
    return nested_key(&backend_settings::health_check, optional_key(member, std::move(key)));
}

// The schema: every table and key pgpilot accepts. Adding a key is one line here (plus the
// field in config.hpp and a row in docs/configuration.md); adding a table is one
// table_section/array_section entry.
const std::vector<detail::section_spec<settings>>& schema() {
    static const std::vector<detail::section_spec<settings>> sections{
        detail::table_section(
            "server", &settings::server,
            key_table<server_settings>{
                address_list_key("listen_addresses", &server_settings::listen_addresses),
                integer_key("port", &server_settings::port, 1, 65535),
                integer_key("workers", &server_settings::workers, 0, 256),
                string_key("unix_socket_dir", &server_settings::unix_socket_dir),
                enum_key("log_level", &server_settings::log, log_level_names),
            }),
        detail::table_section(
            "pool", &settings::pool,
            key_table<pool_settings>{
                enum_key("pool_mode", &pool_settings::mode, pool_mode_names),
                integer_key("max_prepared_statements", &pool_settings::max_prepared_statements, 1,
                            100000),
                integer_key("max_pool", &pool_settings::max_pool, 0),
                integer_key("pool_size", &pool_settings::pool_size, 1, 100000),
                integer_key("min_pool_size", &pool_settings::min_pool_size, 0, 100000),
                integer_key("max_backend_connections", &pool_settings::max_backend_connections, 1,
                            1000000),
                number_key("query_wait_timeout", &pool_settings::query_wait_timeout, 0),
                number_key("idle_in_transaction_timeout",
                           &pool_settings::idle_in_transaction_timeout, 0),
                number_key("server_idle_timeout", &pool_settings::server_idle_timeout, 0),
                number_key("connection_life_time", &pool_settings::connection_life_time, 0),
                number_key("connect_timeout", &pool_settings::connect_timeout, 0),
                number_key("authentication_timeout", &pool_settings::authentication_timeout, 0),
                number_key("client_idle_limit", &pool_settings::client_idle_limit, 0),
                integer_key("max_client_connections", &pool_settings::max_client_connections, 1),
                integer_key("reserved_connections", &pool_settings::reserved_connections, 0),
                detail::table_array_key(
                    "override", &pool_settings::overrides,
                    key_table<pool_override>{
                        string_key("database", &pool_override::database),
                        string_key("user", &pool_override::user),
                        optional_key(
                            &pool_override::mode,
                            enum_key("pool_mode", &holder<pool_mode>::value, pool_mode_names)),
                        optional_key(&pool_override::pool_size,
                                     integer_key("pool_size", &holder<int>::value, 1, 100000)),
                        optional_key(&pool_override::min_pool_size,
                                     integer_key("min_pool_size", &holder<int>::value, 0, 100000)),
                        optional_key(&pool_override::max_pool,
                                     integer_key("max_pool", &holder<int>::value, 0)),
                    }),
            }),
        detail::array_section(
            "backend", &settings::backends,
            key_table<backend_settings>{
                required(string_key("host", &backend_settings::host, emptiness::rejected)),
                integer_key("port", &backend_settings::port, 1, 65535),
                number_key("weight", &backend_settings::weight, 0),
                enum_key("flag", &backend_settings::flag, backend_flag_names),
                string_key("data_directory", &backend_settings::data_directory),
                string_key("application_name", &backend_settings::application_name),
                // This node's [health_check] values.
                health_check_override(number_key("health_check_period", &holder<double>::value, 0),
                                      &health_check_overrides::period),
                health_check_override(number_key("health_check_timeout", &holder<double>::value, 0),
                                      &health_check_overrides::timeout),
                health_check_override(
                    integer_key("health_check_max_retries", &holder<int>::value, 0, 1000),
                    &health_check_overrides::max_retries),
                health_check_override(
                    number_key("health_check_retry_delay", &holder<double>::value, 0),
                    &health_check_overrides::retry_delay),
                health_check_override(
                    number_key("health_check_connect_timeout", &holder<double>::value, 0),
                    &health_check_overrides::connect_timeout),
                health_check_override(string_key("health_check_user", &holder<std::string>::value,
                                                 emptiness::rejected),
                                      &health_check_overrides::user),
                health_check_override(
                    string_key("health_check_password", &holder<std::string>::value),
                    &health_check_overrides::password),
                health_check_override(string_key("health_check_database",
                                                 &holder<std::string>::value, emptiness::rejected),
                                      &health_check_overrides::database),
            }),
        detail::array_section(
            "user", &settings::users,
            key_table<user_settings>{
                required(string_key("name", &user_settings::name, emptiness::rejected)),
                string_key("password", &user_settings::password),
            }),
        detail::table_section(
            "admin", &settings::admin,
            key_table<admin_settings>{
                address_list_key("listen_addresses", &admin_settings::listen_addresses),
                integer_key("port", &admin_settings::port, 0, 65535),
                string_key("token", &admin_settings::token),
            }),
        detail::table_section("auth", &settings::auth,
                              key_table<auth_settings>{
                                  enum_key("method", &auth_settings::method, auth_method_names),
                                  string_key("backend_password", &auth_settings::backend_password),
                                  string_list_key("admin_users", &auth_settings::admin_users),
                                  string_key("hba_file", &auth_settings::hba_file),
                                  string_key("passwd_file", &auth_settings::passwd_file),
                              }),
        detail::table_section(
            "load_balance", &settings::load_balance,
            key_table<load_balance_settings>{
                bool_key("enabled", &load_balance_settings::enabled),
                bool_key("statement_level", &load_balance_settings::statement_level),
                enum_key("disable_load_balance_on_write", &load_balance_settings::on_write,
                         lb_on_write_names),
                enum_key("consistency", &load_balance_settings::consistency, consistency_names),
                number_key("consistency_wait_ms", &load_balance_settings::consistency_wait_ms, 0),
                string_list_key("write_functions", &load_balance_settings::write_functions),
                string_list_key("read_only_functions", &load_balance_settings::read_only_functions),
                redirect_list_key("database_redirect_preference_list",
                                  &load_balance_settings::database_redirect_preference_list),
                redirect_list_key("app_name_redirect_preference_list",
                                  &load_balance_settings::app_name_redirect_preference_list),
                number_key("delay_threshold", &load_balance_settings::delay_threshold, 0),
                number_key("delay_threshold_by_time",
                           &load_balance_settings::delay_threshold_by_time, 0),
            }),
        // High availability (ha/): replication check, health check, failover.
        detail::table_section(
            "streaming_replication_check", &settings::replication_check,
            key_table<replication_check_settings>{
                number_key("period", &replication_check_settings::period, 0),
                string_key("user", &replication_check_settings::user, emptiness::rejected),
                string_key("password", &replication_check_settings::password),
                string_key("database", &replication_check_settings::database, emptiness::rejected),
            }),
        detail::table_section(
            "health_check", &settings::health_check,
            key_table<health_check_settings>{
                number_key("period", &health_check_settings::period, 0),
                number_key("timeout", &health_check_settings::timeout, 0),
                integer_key("max_retries", &health_check_settings::max_retries, 0, 1000),
                number_key("retry_delay", &health_check_settings::retry_delay, 0),
                number_key("connect_timeout", &health_check_settings::connect_timeout, 0),
                string_key("user", &health_check_settings::user, emptiness::rejected),
                string_key("password", &health_check_settings::password),
                string_key("database", &health_check_settings::database, emptiness::rejected),
            }),
        detail::table_section(
            "failover", &settings::failover,
            key_table<failover_settings>{
                string_key("command", &failover_settings::command),
                string_key("follow_primary_command", &failover_settings::follow_primary_command),
                string_key("failback_command", &failover_settings::failback_command),
                bool_key("builtin_promote", &failover_settings::builtin_promote),
                bool_key("builtin_follow", &failover_settings::builtin_follow),
                number_key("hold_timeout", &failover_settings::hold_timeout, 0),
                number_key("search_primary_node_timeout",
                           &failover_settings::search_primary_node_timeout, 0),
                bool_key("on_backend_error", &failover_settings::on_backend_error),
                bool_key("on_backend_shutdown", &failover_settings::on_backend_shutdown),
                bool_key("auto_failback", &failover_settings::auto_failback),
                number_key("auto_failback_interval", &failover_settings::auto_failback_interval, 0),
                bool_key("detach_false_primary", &failover_settings::detach_false_primary),
                string_key("status_file", &failover_settings::status_file),
            }),
    };
    return sections;
}

// Rules that span several keys or tables.
void check_cross_rules(const toml::table& doc, detail::diagnostics& diag) {
    const toml::node* backends = doc.get("backend");
    if (!backends) {
        diag.error({1, 1}, "backend", "at least one [[backend]] table is required");
    } else if (const auto* arr = backends->as_array(); arr && arr->empty()) {
        diag.error(arr->source().begin, "backend", "at least one [[backend]] table is required");
    }

    if (const auto* reserved = doc.at_path("pool.reserved_connections").as_integer()) {
        const auto max = doc.at_path("pool.max_client_connections").value_or<std::int64_t>(10000);
        if (reserved->get() >= max)
            diag.error(reserved->source().begin, "pool.reserved_connections",
                       fmt::format("must be less than pool.max_client_connections ({}), got {}",
                                   max, reserved->get()));
    }

    if (const auto* hba = doc.at_path("auth.hba_file").as_string();
        hba && !hba->get().empty() && doc.at_path("auth.method"))
        diag.error(hba->source().begin, "auth.hba_file",
                   "decides the method of every client: remove [auth] method");

    if (const auto* admin_port = doc.at_path("admin.port").as_integer()) {
        const auto port = doc.at_path("server.port").value_or<std::int64_t>(9999);
        if (admin_port->get() != 0 && admin_port->get() == port)
            diag.error(admin_port->source().begin, "admin.port",
                       fmt::format("must differ from server.port ({})", port));
    }

    if (const auto* users = doc.get_as<toml::array>("user")) {
        std::map<std::string, toml::source_position, std::less<>> seen;
        for (std::size_t i = 0; i < users->size(); ++i) {
            const auto* tbl = users->get(i)->as_table();
            const auto* name = tbl ? tbl->get_as<std::string>("name") : nullptr;
            if (!name || name->get().empty()) continue;
            const auto [it, inserted] = seen.emplace(name->get(), name->source().begin);
            if (!inserted) {
                diag.error(name->source().begin, fmt::format("user[{}].name", i),
                           fmt::format("duplicate user \"{}\" (first defined at line {})",
                                       name->get(), it->second.line));
            }
        }
    }
}

load_result failure(std::string message) {
    load_result result;
    result.errors.push_back(std::move(message));
    return result;
}

}  // namespace

const user_settings* settings::find_user(std::string_view name) const {
    for (const auto& user : users) {
        if (user.name == name) return &user;
    }
    return nullptr;
}

pool_settings settings::pool_for(std::string_view user, std::string_view database) const {
    pool_settings p = pool;
    for (const auto& o : pool.overrides) {
        if (!o.database.empty() && o.database != database) continue;
        if (!o.user.empty() && o.user != user) continue;
        if (o.mode) p.mode = *o.mode;
        if (o.pool_size) p.pool_size = *o.pool_size;
        if (o.min_pool_size) p.min_pool_size = *o.min_pool_size;
        if (o.max_pool) p.max_pool = *o.max_pool;
    }
    return p;
}

health_check_settings settings::health_check_for(std::size_t backend) const {
    health_check_settings h = health_check;
    const auto& o = backends.at(backend).health_check;
    if (o.period) h.period = *o.period;
    if (o.timeout) h.timeout = *o.timeout;
    if (o.max_retries) h.max_retries = *o.max_retries;
    if (o.retry_delay) h.retry_delay = *o.retry_delay;
    if (o.connect_timeout) h.connect_timeout = *o.connect_timeout;
    if (o.user) h.user = *o.user;
    if (o.password) h.password = *o.password;
    if (o.database) h.database = *o.database;
    return h;
}

std::string settings::path_from_config(const std::string& path) const {
    return path_beside(source, path);
}

std::optional<file_error> read_whole_file(const std::string& path, std::string& text) {
    struct closer {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };
    // Not a FIFO, a device or the like: a read from one may never end.
    std::error_code kind_error;
    const auto kind = std::filesystem::status(path, kind_error).type();
    using std::filesystem::file_type;
    if (kind != file_type::regular && kind != file_type::not_found && kind != file_type::directory)
        return file_error{"", "not a regular file"};  // a directory: the read says "Is a directory"
    errno = 0;
    std::unique_ptr<std::FILE, closer> file{std::fopen(path.c_str(), "rb")};
    if (!file) return file_error{"open", std::generic_category().message(errno)};
    char buffer[16384];
    while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get()))
        text.append(buffer, n);
    if (std::ferror(file.get())) return file_error{"read", std::generic_category().message(errno)};
    return std::nullopt;
}

std::string path_beside(const std::string& file, const std::string& path) {
    if (path.empty() || path.front() == '/') return path;
    const auto dir = std::filesystem::path(file).parent_path();
    return dir.empty() ? path : (dir / path).string();
}

passwd_parse parse_passwd(std::string_view text, const std::string& path,
                          const std::vector<user_settings>& configured) {
    passwd_parse out;
    detail::for_each_line(text, [&](int line_no, std::string_view line) {
        if (trim(line).empty() || line.front() == '#') return;
        auto error = [&](std::string_view message) {
            out.errors.push_back(detail::escape_control_characters(
                fmt::format("{}:{}: {}", path, line_no, message)));
        };
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0)
            return error("expected \"user:password\"");
        user_settings u{std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))};
        if (u.password.starts_with("AES"))
            return error(
                fmt::format("user \"{}\": AES-encrypted passwords (pgpool-II's "
                            "pgpoolkey) are not supported; store it as TEXT, md5 or "
                            "SCRAM-SHA-256",
                            u.name));
        if (u.password.starts_with("TEXT")) u.password.erase(0, 4);
        auto named = [&](const user_settings& o) { return o.name == u.name; };
        if (std::any_of(configured.begin(), configured.end(), named))
            return error(
                fmt::format("user \"{}\" is also a [[user]] of the configuration", u.name));
        if (std::any_of(out.users.begin(), out.users.end(), named))
            return error(fmt::format("duplicate user \"{}\"", u.name));
        out.users.push_back(std::move(u));
    });
    return out;
}

load_result load_string(std::string_view toml_text, std::string_view source_name) {
    detail::diagnostics diag{std::string(source_name)};
    toml::table doc;
#if TOML_EXCEPTIONS
    try {
        doc = toml::parse(toml_text, std::string(source_name));
    } catch (const toml::parse_error& e) {
        diag.error(e.source().begin, "", fmt::format("syntax error: {}", e.description()));
        return {std::nullopt, diag.take()};
    }
#else
    auto parsed = toml::parse(toml_text, std::string(source_name));
    if (!parsed) {
        const auto& e = parsed.error();
        diag.error(e.source().begin, "", fmt::format("syntax error: {}", e.description()));
        return {std::nullopt, diag.take()};
    }
    doc = std::move(parsed).table();
#endif

    settings result;
    result.source = std::string(source_name);
    detail::apply_root(result, doc, schema(), diag);
    check_cross_rules(doc, diag);
    // Preference lists may only name configured backends.
    for (const auto* key :
         {"database_redirect_preference_list", "app_name_redirect_preference_list"}) {
        const auto& rules = std::string_view(key).starts_with("database")
                                ? result.load_balance.database_redirect_preference_list
                                : result.load_balance.app_name_redirect_preference_list;
        for (const auto& rule : rules) {
            if (rule.target == redirect_rule::target_kind::node_id &&
                std::size_t(rule.node_id) >= result.backends.size()) {
                const auto* node = doc.at_path(fmt::format("load_balance.{}", key)).node();
                diag.error(node ? node->source().begin : toml::source_position{1, 1},
                           fmt::format("load_balance.{}", key),
                           fmt::format("node {} is not a configured backend (there are {})",
                                       rule.node_id, result.backends.size()));
            }
        }
    }
    // [auth] passwd_file and hba_file, read now; their own errors name them and their lines.
    std::vector<std::string> file_errors;
    auto read_auth_file = [&](const std::string& name, std::string_view key, auto parse) {
        if (name.empty()) return;
        const auto path = result.path_from_config(name);
        std::string text;
        if (auto error = read_whole_file(path, text)) {
            diag.error(doc.at_path(key).node()->source().begin, key,
                       fmt::format("{}: {}", path, error->text()));
            return;
        }
        auto errors = parse(text, path);
        file_errors.insert(file_errors.end(), errors.begin(), errors.end());
    };
    read_auth_file(result.auth.passwd_file, "auth.passwd_file",
                   [&](const std::string& text, const std::string& path) {
                       auto parsed = parse_passwd(text, path, result.users);
                       for (auto& u : parsed.users)
                           result.users.push_back(std::move(u));
                       return parsed.errors;
                   });
    read_auth_file(result.auth.hba_file, "auth.hba_file",
                   [&](const std::string& text, const std::string& path) {
                       auto parsed = parse_hba(text, path);
                       result.auth.hba = std::move(parsed.rules);
                       return parsed.errors;
                   });
    if (!diag.empty() || !file_errors.empty()) {
        auto errors = diag.take();
        errors.insert(errors.end(), file_errors.begin(), file_errors.end());
        return {std::nullopt, std::move(errors)};
    }
    return {std::move(result), {}};
}

load_result load_file(const std::string& path) {
    std::string text;
    if (auto error = read_whole_file(path, text))
        return failure(fmt::format("{}: {}", path, error->text()));
    return load_string(text, path);
}

std::vector<std::string> known_keys() {
    std::vector<std::string> keys;
    for (const auto& section : schema()) {
        for (const auto key : section.keys) {
            keys.push_back(fmt::format("{}.{}", section.name, key));
        }
    }
    return keys;
}

const char* to_string(auth_method method) {
    return name_of(method, auth_method_names);
}
const char* to_string(backend_flag flag) {
    return name_of(flag, backend_flag_names);
}
const char* to_string(log_level level) {
    return name_of(level, log_level_names);
}

const char* to_string(lb_on_write mode) {
    return name_of(mode, lb_on_write_names);
}

const char* to_string(consistency_mode mode) {
    return name_of(mode, consistency_names);
}

// pgpool-II's syntax: "regex:node(ratio),regex:node,...", node = id | primary | standby.
std::optional<std::vector<redirect_rule>> parse_redirect_list(std::string_view text,
                                                              std::string* error) {
    std::vector<redirect_rule> rules;
    auto fail = [&](std::string message) -> std::optional<std::vector<redirect_rule>> {
        if (error) *error = std::move(message);
        return std::nullopt;
    };
    if (trim(text).empty()) return rules;
    for (;;) {
        const auto comma = text.find(',');
        const std::string_view item = trim(text.substr(0, comma));
        const auto colon = item.rfind(':');
        if (item.empty() || colon == std::string_view::npos || colon == 0)
            return fail(fmt::format("entry \"{}\" is not \"regex:node(ratio)\"", item));
        redirect_rule rule;
        rule.pattern = std::string(trim(item.substr(0, colon)));
        std::string_view node = trim(item.substr(colon + 1));
        if (const auto open = node.find('('); open != std::string_view::npos) {
            if (node.back() != ')')
                return fail(fmt::format("entry \"{}\": ratio must be written (0.0 to 1.0)", item));
            const std::string ratio(node.substr(open + 1, node.size() - open - 2));
            char* end = nullptr;
            errno = 0;
            rule.ratio = std::strtod(ratio.c_str(), &end);
            if (ratio.empty() || *end != '\0' || errno != 0 || !(rule.ratio >= 0) || rule.ratio > 1)
                return fail(fmt::format("entry \"{}\": ratio must be between 0 and 1", item));
            node = trim(node.substr(0, open));
        }
        if (detail::iequals(node, "primary")) {
            rule.target = redirect_rule::target_kind::primary;
        } else if (detail::iequals(node, "standby")) {
            rule.target = redirect_rule::target_kind::standby;
        } else {
            int id = 0;
            const auto [p, ec] = std::from_chars(node.data(), node.data() + node.size(), id);
            if (node.empty() || ec != std::errc() || p != node.data() + node.size() || id < 0)
                return fail(fmt::format(
                    "entry \"{}\": node must be a backend id, \"primary\" or \"standby\"", item));
            rule.target = redirect_rule::target_kind::node_id;
            rule.node_id = id;
        }
        try {
            std::regex check(rule.pattern);
        } catch (const std::regex_error& e) {
            return fail(
                fmt::format("entry \"{}\": invalid regular expression: {}", item, e.what()));
        }
        rules.push_back(std::move(rule));
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return rules;
}

}  // namespace pgpilot::config
