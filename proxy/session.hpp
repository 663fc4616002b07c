// One client connection, from its first byte to its close: negotiation, authentication,
// backend lease, relay, and one place that handles every way it can end.
#pragma once

#include <boost/asio.hpp>

#include <memory>
#include <optional>
#include <string>

#include "ha/connector.hpp"
#include "ha/frame_io.hpp"
#include "proxy/context.hpp"

namespace pgpilot::proxy {

/// Every way a session ends; `finish()` decides from it what the client is told and whether
/// the backend connection goes back to the pool.
enum class session_end {
    client_terminated,           ///< Terminate message: the normal end
    client_disconnected,         ///< EOF or reset from the client without Terminate
    client_protocol_violation,   ///< malformed or unexpected message from the client
    startup_rejected,            ///< bad startup packet, version or parameters (client told)
    authentication_failed,       ///< wrong password, unknown user (client told)
    authentication_timeout,      ///< no complete startup + authentication in time
    too_many_clients,            ///< refused: reserved_connections (client told 53300)
    client_idle_timeout,         ///< idle outside a transaction longer than client_idle_limit
    cancel_request,              ///< the connection only carried a CancelRequest
    no_backend,                  ///< no primary, or connecting to it failed (client told)
    backend_disconnected,        ///< the backend closed or failed mid-session
    backend_protocol_violation,  ///< malformed message from the backend
    admin_shutdown,              ///< pgpilot is shutting down
    internal_error,              ///< a bug: logged with the exception
};

const char* to_string(session_end);

/// A client session. Owned by a shared_ptr held by its worker and its coroutine.
class session : public std::enable_shared_from_this<session> {
  public:
    session(worker& w, stream client, std::uint64_t id);
    /// The whole life of the session; never throws.
    net::awaitable<void> run();
    /// Shutdown hook: cancels whatever the session awaits, from the worker's thread.
    net::cancellation_signal& cancellation() { return cancel_signal_; }
    std::uint64_t id() const { return id_; }

  private:
    net::awaitable<session_end> negotiate_and_authenticate();
    net::awaitable<session_end> within_authentication_timeout(net::awaitable<session_end> step);
    net::awaitable<session_end> negotiate();
    net::awaitable<session_end> authenticate();
    net::awaitable<session_end> handle_cancel_request(std::uint32_t pid, std::uint32_t key);
    net::awaitable<session_end> attach_backend();
    net::awaitable<session_end> relay();
    net::awaitable<session_end> client_to_backend();
    net::awaitable<session_end> backend_to_client();
    net::awaitable<void> finish(session_end end);
    net::awaitable<bool> reset_backend();

    /// Sends a whole message (our own errors, authentication requests...) to the client.
    net::awaitable<error_code> send_client(std::string_view bytes);
    net::awaitable<void> send_fatal(std::string_view sqlstate, std::string message);
    bool backend_clean() const;

    worker& worker_;
    shared_state& shared_;
    stream client_;
    std::uint64_t id_;
    net::cancellation_signal cancel_signal_;
    frame_reader client_reader_;

    // From the startup packet.
    ha::startup_params params_;
    std::string user_;
    std::string database_;
    std::optional<std::string> backend_password_;

    // The client's identity for cancellation.
    std::uint32_t proxy_pid_ = 0;
    std::uint32_t proxy_key_ = 0;

    std::unique_ptr<ha::backend_connection> backend_;
    std::string pool_key_;

    // Relay state, written by the two directions of the relay (same thread).
    std::size_t pending_ = 0;          ///< Query/Sync/FunctionCall sent, ReadyForQuery not yet seen
    bool unsynced_ = false;            ///< extended-query messages sent since the last Sync
    bool client_frame_open_ = false;   ///< a client message was forwarded only in part
    bool client_at_boundary_ = true;   ///< what the client received ends on a message boundary
    bool backend_sent_fatal_ = false;  ///< the backend told the client FATAL itself
    std::string end_detail_;           ///< human text for the log / client error
    bool holds_slot_ = false;          ///< holds one of max_client_connections
};

/// Starts a session on a worker (the socket's executor must be the worker's).
void start_session(worker& w, stream client);

}  // namespace pgpilot::proxy
