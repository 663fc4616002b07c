// Opening an authenticated connection to a backend node, and the few queries pgpilot itself runs
// on one (primary detection, connection reset).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ha/frame_io.hpp"

namespace pgpilot::ha {

using startup_params = std::vector<std::pair<std::string, std::string>>;

/// Where a node listens: a host name or address, or a Unix socket directory (starts with '/').
struct node_address {
    std::string host;
    std::uint16_t port = 5432;
};

/// A backend connection that completed startup and is ready for queries.
struct backend_connection {
    explicit backend_connection(const net::any_io_executor& ex) : socket(ex) {}
    stream socket;
    /// The socket's protocol, once the proxy moved it between event loops (re-wrapping the
    /// descriptor needs it; asking the kernel each time costs a system call).
    std::optional<stream::protocol_type> protocol;
    int node = -1;
    node_address address;
    std::uint32_t pid = 0;  ///< the backend's process id and cancel key (BackendKeyData)
    std::uint32_t key = 0;
    char tx_status = 'I';
    /// ParameterStatus values as the backend last reported them, in first-seen order; replayed
    /// to each client that is given this connection.
    startup_params parameters;
    std::chrono::steady_clock::time_point created;
    std::chrono::steady_clock::time_point last_used;

    // Kept with the connection for the proxy, because in transaction pooling a connection
    // passes from client to client without a reset:
    /// Protocol-level prepared statements it holds: name -> the Parse message that made it,
    /// and when a client last used it (for the least-recently-used limit).
    struct prepared {
        std::string parse_frame;
        std::uint64_t last_use = 0;
    };
    std::unordered_map<std::string, prepared> statements;
    /// Which SET statements it has run, as the proxy fingerprints them (0: none).
    std::uint64_t settings_fingerprint = 0;
    /// The proxy's connection budget this connection counts against: given back when the
    /// connection is destroyed.
    std::shared_ptr<void> budget;

    void set_parameter(std::string_view name, std::string_view value);
};

/// Why a connection could not be opened.
struct connect_failure {
    std::string sqlstate;
    std::string message;
    /// The backend's own ErrorResponse frame when it refused us (bad database, too many
    /// connections...): forwarded to the client unchanged, as PostgreSQL would have sent it.
    std::string error_frame;
    /// True when the node could not be reached or dropped us: it may be down.
    bool unreachable = false;
    /// True when pgpilot itself could not even try (out of file descriptors or memory): says
    /// nothing about the node, which must not be failed for it.
    bool local = false;
    /// True when no answer came within the timeout (the node, or pgpilot itself, too slow).
    bool timed_out = false;
};

struct connect_result {
    std::unique_ptr<backend_connection> conn;
    connect_failure failure;
};

/// Connects, sends the startup packet with `params` (user, database, options, GUCs...),
/// answers the authentication requests with `password`, and reads up to ReadyForQuery.
net::awaitable<connect_result> connect_backend(node_address address, startup_params params,
                                               std::optional<std::string> password,
                                               std::chrono::milliseconds timeout);

/// Sends a CancelRequest for (pid, key) to a node, on a new connection, as libpq does.
net::awaitable<error_code> send_cancel(node_address address, std::uint32_t pid, std::uint32_t key);

/// The outcome of a simple query pgpilot runs for itself.
struct query_outcome {
    error_code io;                     ///< transport failure (the connection is unusable)
    std::optional<std::string> error;  ///< the backend's error message, if any
    std::optional<std::string> value;  ///< first column of the first row, if any
    char tx_status = 0;                ///< from ReadyForQuery
};

/// Runs `sql` as a simple Query and reads to ReadyForQuery. ParameterStatus messages update
/// `conn.parameters`; notices are dropped.
net::awaitable<query_outcome> simple_query(backend_connection& conn, std::string_view sql);

/// One row in text format; nullopt is SQL NULL.
using text_row = std::vector<std::optional<std::string>>;

/// The outcome of a query whose whole result pgpilot reads (replication checks).
struct rows_outcome {
    error_code io;                     ///< transport failure (the connection is unusable)
    std::optional<std::string> error;  ///< the backend's error message, if any
    std::vector<text_row> rows;        ///< every DataRow of every result, in order
    char tx_status = 0;                ///< from ReadyForQuery
};

/// Like simple_query, but keeps every column of every row.
net::awaitable<rows_outcome> query_rows(backend_connection& conn, std::string_view sql);

/// A DataRow ('D') body as text columns; nullopt when malformed.
std::optional<text_row> parse_data_row(protocol::byte_view body);

}  // namespace pgpilot::ha
