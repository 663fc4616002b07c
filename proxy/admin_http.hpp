// The HTTP admin endpoint ([admin], docs/admin.md): the nodes and pools as JSON, Prometheus
// /metrics, a health probe and node control, served on worker 0's event loop.
#pragma once

#include <memory>
#include <vector>

#include "proxy/context.hpp"

namespace pgpilot::proxy {

using listener = net::basic_socket_acceptor<net::generic::stream_protocol>;

class admin_http {
  public:
    /// Serves HTTP on `listeners` (bound and listening, on w's io_context) once started.
    admin_http(worker& w, std::vector<std::unique_ptr<listener>> listeners);
    ~admin_http();
    admin_http(const admin_http&) = delete;
    admin_http& operator=(const admin_http&) = delete;

    /// Starts accepting (call before w's io_context runs, or on its thread).
    void start();
    /// Closes the listeners and every connection; a node command in progress still ends.
    /// On w's thread.
    void stop();

    /// The open connections (admin_http.cpp), shared with their coroutines.
    struct state;

  private:
    worker& worker_;
    std::vector<std::unique_ptr<listener>> listeners_;
    std::shared_ptr<state> state_;  ///< shared with the connections' coroutines
};

}  // namespace pgpilot::proxy
