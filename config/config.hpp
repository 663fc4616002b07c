#pragma once

// pgpilot settings: the typed form of pgpilot.toml and its loader.
//
// Loading validates everything (syntax, unknown tables and keys, types, ranges, enum
// spellings, cross-key rules) and reports every problem found, one line each, as
// "FILE:LINE:COL: KEY: message". The key reference is docs/configuration.md.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/hba.hpp"

namespace pgpilot::config {

// How clients authenticate to pgpilot ([auth] method).
enum class auth_method { trust, password, md5, scram_sha_256 };

// Per-backend failover policy, as pgpool-II's backend_flag.
enum class backend_flag { allow_to_failover, disallow_to_failover, always_primary };

// Minimum severity of log messages that are written ([server] log_level).
enum class log_level { debug, info, warning, error };

// [server]: where and how pgpilot accepts client connections.
struct server_settings {
    // TOML: a string "a, b" (or an array of strings). "*" = all IPv4+IPv6 addresses,
    // "" = no TCP listener (the vector is then empty), "localhost" allowed.
    std::vector<std::string> listen_addresses{"127.0.0.1"};
    std::uint16_t port = 9999;
    unsigned workers = 0;             // event-loop threads; 0 = number of cores
    std::string unix_socket_dir;      // "" = no Unix-domain socket
    log_level log = log_level::info;  // key: log_level
};

// [admin]: the HTTP admin endpoint (JSON, Prometheus /metrics, node control).
struct admin_settings {
    std::vector<std::string> listen_addresses{"127.0.0.1"};  // as [server] listen_addresses
    std::uint16_t port = 0;                                  // 0 = no HTTP admin endpoint
    std::string token;  // bearer token for node control (POST); "" = node control refused
};

// [pool]: backend connection pooling.
// [pool] pool_mode: how long a client keeps its backend connections.
enum class pool_mode { session, transaction };

// One [[pool.override]] entry: pool keys that apply to one database and/or user.
struct pool_override {
    std::string database;  // "" = any database
    std::string user;      // "" = any user
    std::optional<pool_mode> mode;
    std::optional<int> pool_size;
    std::optional<int> min_pool_size;
    std::optional<int> max_pool;
};

struct pool_settings {
    pool_mode mode = pool_mode::session;
    int max_prepared_statements = 200;       // per backend connection, transaction mode
    int max_pool = 4;                        // idle connections kept per pool key (session mode)
    int pool_size = 20;                      // server connections per (user, database, node)
    int min_pool_size = 0;                   // kept open per (user, database, node) once seen
    int max_backend_connections = 100;       // per node, all users and workers together
    double query_wait_timeout = 120;         // seconds a client waits for a connection; 0 = forever
    double idle_in_transaction_timeout = 0;  // seconds; 0 = no limit
    double server_idle_timeout = 600;    // seconds an idle server connection is kept; 0 = no limit
    double connection_life_time = 0;     // seconds an idle pooled connection lives; 0 = forever
    double connect_timeout = 10;         // seconds allowed to connect to a backend
    double authentication_timeout = 60;  // seconds for startup + authentication; 0 = no limit
    double client_idle_limit = 0;  // seconds a client may stay idle between queries; 0 = no limit
    int max_client_connections = 10000;    // concurrent clients; more wait in a queue
    int reserved_connections = 0;          // > 0: refuse (53300) instead of queueing
    std::vector<pool_override> overrides;  // [[pool.override]], applied in file order
};

// [load_balance] disable_load_balance_on_write: what a write does to later reads' routing
// (pgpool-II's setting of the same name).
enum class lb_on_write { off, transaction, trans_transaction, always };

// [load_balance] consistency: which writes a read routed to a standby must already see.
enum class consistency_mode { global, session, eventual };

// One entry of database_redirect_preference_list / app_name_redirect_preference_list:
// "regex:node(ratio)". A database (or application_name) the pattern matches whole sends the
// session's reads to `node` with probability `ratio`.
struct redirect_rule {
    enum class target_kind { node_id, primary, standby };
    std::string pattern;  // an ECMAScript regular expression, matched against the whole name
    target_kind target = target_kind::primary;
    int node_id = -1;  // for target_kind::node_id
    double ratio = 1;  // 0..1
};

// Parses a preference list; on error returns nullopt and sets *error.
std::optional<std::vector<redirect_rule>> parse_redirect_list(std::string_view text,
                                                              std::string* error);

// [load_balance]: read/write splitting and weighted load balancing (docs/routing.md).
struct load_balance_settings {
    bool enabled = true;
    bool statement_level = false;  // choose the read node per statement, not per session
    lb_on_write on_write = lb_on_write::transaction;  // key: disable_load_balance_on_write
    consistency_mode consistency = consistency_mode::global;
    double consistency_wait_ms = 100;  // wait this long for a standby to catch up, then primary
    std::vector<std::string> write_functions;
    std::vector<std::string> read_only_functions;
    // pgpool-II syntax: "regex:node(ratio),..." with node an id, "primary" or "standby".
    std::vector<redirect_rule> database_redirect_preference_list;
    std::vector<redirect_rule> app_name_redirect_preference_list;
    double delay_threshold = 0;          // bytes of replay lag that exclude a standby; 0 = off
    double delay_threshold_by_time = 0;  // milliseconds of replay lag that exclude it; 0 = off
};

// [[backend]] keys health_check_*: this node's values for [health_check] keys (unset = the
// [health_check] value).
struct health_check_overrides {
    std::optional<double> period;
    std::optional<double> timeout;
    std::optional<int> max_retries;
    std::optional<double> retry_delay;
    std::optional<double> connect_timeout;
    std::optional<std::string> user;
    std::optional<std::string> password;
    std::optional<std::string> database;
};

// One [[backend]] entry: a PostgreSQL server behind pgpilot.
struct backend_settings {
    std::string host;  // host name, IP address, or Unix socket directory (starts with '/')
    std::uint16_t port = 5432;
    double weight = 1;  // load-balancing weight, relative to the other backends
    backend_flag flag = backend_flag::allow_to_failover;
    std::string data_directory;
    std::string application_name;
    health_check_overrides health_check;  // keys health_check_<[health_check] key>
};

// One [[user]] entry. password is stored plain, as "md5..." or as a SCRAM-SHA-256$
// verifier, exactly as in pg_authid.
struct user_settings {
    std::string name;
    std::string password;
};

// [auth]: client authentication and the credentials pgpilot presents to backends.
struct auth_settings {
    auth_method method = auth_method::trust;
    std::string backend_password;  // used toward backends when they ask for one
    // Users who may run PGPOOL ATTACH/DETACH/PROMOTE NODE besides backend superusers.
    std::vector<std::string> admin_users;
    // pg_hba.conf-style rules (relative to the config file); "" = `method` for every client.
    std::string hba_file;
    std::vector<hba_rule> hba;  // hba_file's rules, read when the configuration is loaded
    // pool_passwd-style "user:secret" file (relative to the config file): more users, appended
    // to settings::users when the configuration is loaded.
    std::string passwd_file;
};

// [streaming_replication_check]: how ha/ reads each node's WAL position and the primary's
// pg_stat_replication (pgpool-II's sr_check_*).
struct replication_check_settings {
    double period = 0.05;  // seconds between checks; 0 = only on demand
    std::string user = "postgres";
    std::string password;  // "" = [auth] backend_password
    std::string database = "postgres";
};

// [health_check]: how ha/ decides that a node is up (pgpool-II's health_check_*).
struct health_check_settings {
    double period = 0.5;         // seconds between checks of a node; 0 = only on demand
    double timeout = 5;          // seconds for one attempt (connect + query); 0 = no limit
    int max_retries = 0;         // further attempts before a node is failed
    double retry_delay = 1;      // seconds between attempts
    double connect_timeout = 2;  // seconds to connect and log in; 0 = no limit
    std::string user = "postgres";
    std::string password;  // "" = [auth] backend_password
    std::string database = "postgres";
};

// [failover]: what ha/ does when a node fails (pgpool-II's failover_*, follow_primary_*, ...).
struct failover_settings {
    std::string command;                 // failover_command; "" = builtin_promote
    std::string follow_primary_command;  // "" = builtin_follow
    std::string failback_command;
    bool builtin_promote = true;  // promote with pg_promote() when command is ""
    bool builtin_follow = true;  // repoint standbys with ALTER SYSTEM when the follow command is ""
    double hold_timeout = 30;    // seconds primary-bound statements wait during a failover
    double search_primary_node_timeout = 300;  // seconds; 0 = no limit
    bool on_backend_error = true;              // failover_on_backend_error
    bool on_backend_shutdown = false;          // failover_on_backend_shutdown
    bool auto_failback = false;
    double auto_failback_interval = 60;  // seconds
    bool detach_false_primary = true;
    std::string status_file = "pgpilot_status";  // relative to the config file; "" = none
};

// The whole validated configuration.
struct settings {
    server_settings server;
    admin_settings admin;
    pool_settings pool;
    std::vector<backend_settings> backends;  // never empty once loaded
    std::vector<user_settings> users;        // [[user]], then [auth] passwd_file; names unique
    auth_settings auth;
    load_balance_settings load_balance;
    replication_check_settings replication_check;  // [streaming_replication_check]
    health_check_settings health_check;
    failover_settings failover;
    std::string source;  // file path (or the source name given to load_string)

    // The [[user]] entry with exactly this name (case-sensitive), or nullptr.
    const user_settings* find_user(std::string_view name) const;
    // [pool] with every matching [[pool.override]] applied, in file order.
    pool_settings pool_for(std::string_view user, std::string_view database) const;
    // [health_check] with backends[backend]'s health_check_* keys applied.
    health_check_settings health_check_for(std::size_t backend) const;
    // A path from the file, relative ones taken from the config file's directory.
    std::string path_from_config(const std::string& path) const;
};

// Outcome of loading: either settings, or every problem found (never both).
struct load_result {
    std::optional<settings> value;
    std::vector<std::string> errors;  // "FILE:LINE:COL: KEY: message", in file order
    explicit operator bool() const { return value.has_value(); }
};

// Reads and validates a TOML file. An unreadable file gives one error naming the path and
// the errno text.
load_result load_file(const std::string& path);

// Validates TOML text; source_name is used in messages and stored in settings::source.
load_result load_string(std::string_view toml_text, std::string_view source_name);

// Why a file could not be read: the step that failed ("open", "read"; "" when the path is
// not a regular file, as a FIFO or a device, a read from which may never end) and the reason.
struct file_error {
    std::string step;
    std::string reason;
    // "cannot open: No such file or directory", "not a regular file".
    std::string text() const { return step.empty() ? reason : "cannot " + step + ": " + reason; }
};
// Appends the whole of the file at `path` to `text`; what went wrong, if anything.
std::optional<file_error> read_whole_file(const std::string& path, std::string& text);

// `path` as a file named in the file `file` means it: a relative path is taken from `file`'s
// directory ("" stays "").
std::string path_beside(const std::string& file, const std::string& path);

// A pgpool-II pool_passwd file: "user:secret" lines, the secret an md5 hash, a SCRAM-SHA-256$
// verifier, TEXT followed by the plain password (the prefix is dropped), or plain text. Errors
// ("PATH:LINE: message") for AES-encrypted secrets, lines without ':' and users repeated or
// among `configured`.
struct passwd_parse {
    std::vector<user_settings> users;
    std::vector<std::string> errors;
};
passwd_parse parse_passwd(std::string_view text, const std::string& path,
                          const std::vector<user_settings>& configured = {});

// Every accepted key as "table.key" (e.g. "server.port", "backend.host"), in schema order.
std::vector<std::string> known_keys();

// Canonical spellings, as accepted in the file: "scram-sha-256", "ALLOW_TO_FAILOVER",
// "warning", ...
const char* to_string(auth_method method);
const char* to_string(backend_flag flag);
const char* to_string(log_level level);
const char* to_string(lb_on_write mode);
const char* to_string(consistency_mode mode);

}  // namespace pgpilot::config
