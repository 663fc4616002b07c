#include "proxy/server.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "ha/log.hpp"
#include "proxy/admin_http.hpp"
#include "proxy/context.hpp"
#include "proxy/once_a_minute.hpp"
#include "proxy/session.hpp"

namespace pgpilot::proxy {

namespace {

using acceptor = net::basic_socket_acceptor<net::generic::stream_protocol>;
using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
/// Sessions parked or ended on a worker that make its park loop call malloc_trim() at once (at
/// most once a second) rather than after a calm second.
constexpr std::size_t trim_after_releases = 256;

/// A worker and the listeners it accepts on.
struct worker_thread {
    std::unique_ptr<worker> w;
    std::vector<std::unique_ptr<acceptor>> tcp;
    std::unique_ptr<acceptor> unix_socket;  ///< only on worker 0; hands connections round-robin
    std::unique_ptr<net::steady_timer> sweep_timer;  ///< only on worker 0
    std::unique_ptr<net::steady_timer> park_timer;
    std::unique_ptr<admin_http> admin;  ///< only on worker 0, with [admin] port set
    std::thread thread;
    std::promise<void> done;  ///< set when the worker's event loop has run out
};

/// Every address of `addresses` ([server] or [admin] listen_addresses) with `port`.
std::vector<net::ip::tcp::endpoint> listen_endpoints(const std::vector<std::string>& addresses,
                                                     std::uint16_t port) {
    std::vector<net::ip::tcp::endpoint> eps;
    auto add = [&](const net::ip::tcp::endpoint& ep) {
        if (std::find(eps.begin(), eps.end(), ep) == eps.end()) eps.push_back(ep);
    };
    net::io_context ctx;
    net::ip::tcp::resolver resolver(ctx);
    for (const auto& host : addresses) {
        if (host.empty()) continue;
        if (host == "*") {
            add({net::ip::address_v4::any(), port});
            add({net::ip::address_v6::any(), port});
            continue;
        }
        for (const auto& r :
             resolver.resolve(host, std::to_string(port), net::ip::tcp::resolver::passive))
            add(r.endpoint());
    }
    return eps;
}

/// Opens `a` and binds it to `ep`; `share_port`: with SO_REUSEPORT (each worker has its own
/// acceptor on the same port, the kernel spreads connections).
void bind_tcp(acceptor& a, const net::ip::tcp::endpoint& ep, bool share_port, error_code& ec) {
    const net::generic::stream_protocol::endpoint gep(ep);
    a.open(gep.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec && share_port) a.set_option(reuse_port(true), ec);
    if (!ec && ep.address().is_v6()) a.set_option(net::ip::v6_only(true), ec);
    if (!ec) a.bind(gep, ec);
}

std::unique_ptr<acceptor> open_tcp(net::io_context& ctx, const net::ip::tcp::endpoint& ep,
                                   bool share_port = true) {
    auto a = std::make_unique<acceptor>(ctx);
    error_code ec;
    bind_tcp(*a, ep, share_port, ec);
    if (ec)
        throw std::runtime_error(fmt::format("could not bind {} port {}: {}",
                                             ep.address().to_string(), ep.port(), ec.message()));
    a->listen(net::socket_base::max_listen_connections);
    return a;
}

std::string unix_socket_path(const config::server_settings& s) {
    return s.unix_socket_dir + "/.s.PGSQL." + std::to_string(s.port);
}

/// Whether a server listens on the Unix socket at `path` (a file left by a server that was
/// killed accepts nobody). Non-blocking: a full backlog (EAGAIN) means someone listens too.
bool unix_socket_live(const std::string& path) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) return false;  // the bind will say so
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const bool live = rc == 0 || errno == EAGAIN;
    ::close(fd);
    return live;
}

/// Why pgpilot cannot have its addresses, or empty. The workers share the TCP port through
/// SO_REUSEPORT, which would as well let in a second pgpilot run by the same user: the
/// kernel would split the clients between two proxies with their own pools and their own
/// failover decisions. So a socket without SO_REUSEPORT tries each address first, and a live
/// Unix socket is not replaced. Checked before anything else starts (the node registry
/// writes the status file).
std::string addresses_taken(const config::settings& settings) {
    const auto& s = settings.server;
    net::io_context ctx;
    std::vector<net::ip::tcp::endpoint> endpoints;
    try {
        endpoints = listen_endpoints(s.listen_addresses, s.port);
        if (settings.admin.port != 0) {
            auto admin = listen_endpoints(settings.admin.listen_addresses, settings.admin.port);
            endpoints.insert(endpoints.end(), admin.begin(), admin.end());
        }
    } catch (const std::exception&) {
        return {};  // opening the listeners says what is wrong
    }
    for (const auto& ep : endpoints) {
        acceptor probe(ctx);
        error_code ec;
        bind_tcp(probe, ep, false, ec);
        if (ec == net::error::address_in_use)
            return fmt::format(
                "could not bind {} port {}: {}; is another pgpilot or server already running on "
                "port {}?",
                ep.address().to_string(), ep.port(), ec.message(), ep.port());
    }
    if (!s.unix_socket_dir.empty() && unix_socket_live(unix_socket_path(s)))
        return fmt::format("another pgpilot or server is listening on {}", unix_socket_path(s));
    return {};
}

net::awaitable<void> accept_loop(worker& w, acceptor& a, bool tcp,
                                 std::vector<worker_thread>* spread) {
    std::size_t next = 0;
    once_a_minute warning;
    for (;;) {
        auto [ec, sock] = co_await a.async_accept(use_tuple);
        if (ec) {
            if (ec == net::error::operation_aborted || w.shared.stopping.load()) co_return;
            // Out of descriptors, this repeats until clients leave: say it once a minute.
            if (warning.due())
                log::warning("accept failed: {} (repeats are not logged for a minute)",
                             ec.message());
            if (ec == net::error::no_descriptors || ec == net::error::no_buffer_space) {
                // Out of file descriptors: back off rather than spin.
                net::steady_timer t(w.ctx, std::chrono::milliseconds(100));
                co_await t.async_wait(use_tuple);
            }
            continue;
        }
        if (tcp) sock.set_option(net::ip::tcp::no_delay(true), ec);
        if (!spread || spread->size() == 1) {
            start_session(w, std::move(sock));
            continue;
        }
        // Unix-socket connections arrive on worker 0 only (no SO_REUSEPORT there): hand them
        // out round-robin so every worker carries its share.
        worker& target = *(*spread)[next++ % spread->size()].w;
        if (&target == &w) {
            start_session(w, std::move(sock));
            continue;
        }
        auto protocol = sock.local_endpoint().protocol();
        int fd = sock.release();
        net::post(target.ctx, [&target, protocol, fd] {
            start_session(target, stream(target.ctx, protocol, fd));
        });
    }
}

/// Opens connections for pools below their min_pool_size.
net::awaitable<void> warm_pools(shared_state& shared) {
    auto wanted = shared.pool.below_minimum();
    for (auto& [want, permit] : wanted) {
        auto snapshot = shared.registry.snapshot();
        const auto& n = snapshot->nodes.at(std::size_t(want.node));
        if (n.status != router::node_status::up) continue;  // the permit goes back unused
        const ha::node_address address{n.host, n.port};
        auto r = co_await ha::connect_backend(address, want.params, want.password,
                                              shared.timeouts.backend_connect);
        if (!r.conn) {
            log::debug(
                "cannot open a min_pool_size connection to node {} for user \"{}\" "
                "database \"{}\": {}",
                want.node, want.user, want.database, r.failure.message);
            continue;
        }
        r.conn->node = want.node;
        backend_pool::adopt(*r.conn, std::move(permit));
        shared.pool.put(want.key, std::move(r.conn), want.min_pool_size);
    }
}

/// Once a second on worker 0 (the pool is process-wide): closes idle backend connections past
/// their time, keeps pools warm.
net::awaitable<void> sweep_loop(worker& w, net::steady_timer& timer) {
    for (;;) {
        timer.expires_after(std::chrono::seconds(1));
        auto [ec] = co_await timer.async_wait(use_tuple);
        if (ec || w.shared.stopping.load()) co_return;
        if (auto n = w.shared.pool.sweep()) log::debug("closed {} idle backend connections", n);
        co_await warm_pools(w.shared);
    }
}

/// Every park_after on every worker: ends logins past authentication_timeout and clients
/// past their idle limits, parks idle sessions (session::tick); after sessions parked or ended,
/// gives free heap pages back (at most once a second).
net::awaitable<void> park_loop(worker& w, net::steady_timer& timer) {
    auto last_trim = std::chrono::steady_clock::now();
    for (;;) {
        timer.expires_after(park_after);
        auto [ec] = co_await timer.async_wait(use_tuple);
        if (ec || w.shared.stopping.load()) co_return;
        const auto now = std::chrono::steady_clock::now();
        for (auto& [id, s] : w.sessions)  // tick() only cancels: no session leaves here
            s->tick(now);
        // glibc keeps freed memory (coroutine frames of parked or ended sessions) in its heaps;
        // give the free pages back, so that RSS follows the live sessions: at most once a
        // second while many come and go, and once when they stopped for a second.
        const bool many = w.released_since_trim >= trim_after_releases;
        const bool calm =
            w.released_since_trim > 0 && now - w.last_release >= std::chrono::seconds(1);
        if ((many || calm) && now - last_trim >= std::chrono::seconds(1)) {
            w.released_since_trim = 0;
            last_trim = now;
            ::malloc_trim(0);
        }
    }
}

void log_exception(std::exception_ptr e) {
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        log::error("background task failed: {}", ex.what());
    }
}

void stop_worker(worker_thread& t) {
    error_code ec;
    for (auto& a : t.tcp)
        a->close(ec);
    if (t.unix_socket) t.unix_socket->close(ec);
    if (t.sweep_timer) t.sweep_timer->cancel();
    if (t.park_timer) t.park_timer->cancel();
    if (t.admin) t.admin->stop();
    // Copy: a session may end (and leave the map) while we signal the others.
    std::vector<std::shared_ptr<session>> live;
    for (auto& [id, s] : t.w->sessions)
        live.push_back(s);
    for (auto& s : live)
        s->stop();
}

/// Every client and backend connection is a descriptor: use all the kernel allows us
/// (systemd's default soft limit of 1024 would cap pgpilot near 500 clients).
void raise_descriptor_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
    rlim_t before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) == 0)
        log::info("raised the open-file limit from {} to {}", before, lim.rlim_cur);
}

/// SIGHUP: reads the configuration file again; if it is valid, new logins use its [auth] table,
/// [[user]] entries, passwd_file and hba_file (read again too). Everything else needs a
/// restart; an invalid file changes nothing.
void reload_login_settings(shared_state& shared) {
    const auto& file = shared.settings.source;
    auto loaded = config::load_file(file);
    if (!loaded) {
        for (const auto& e : loaded.errors)
            log::error("reload: {}", e);
        log::error("reload: \"{}\" is not valid; nothing changed", file);
        return;
    }
    const auto& auth = loaded.value->auth;
    log::info(
        "reload: \"{}\" read: new logins use {} and {} users; other changes need a restart", file,
        auth.hba_file.empty() ? fmt::format("[auth] method {}", config::to_string(auth.method))
                              : fmt::format("the {} rules of {}", auth.hba.size(), auth.hba_file),
        loaded.value->users.size());
    shared.set_login_settings(std::make_shared<const config::settings>(std::move(*loaded.value)));
}

/// How long a worker may take to end its sessions at shutdown before it is stopped.
constexpr std::chrono::seconds shutdown_grace{5};

/// Ends the registry's background work and lets the HA loop run out (it may be finishing a
/// check); a loop still busy after a grace period (a failover command, say) is stopped.
template <class Guard>
void stop_ha(ha::node_registry& registry, Guard& guard, net::io_context& ctx,
             std::future<void>& finished) {
    registry.stop();
    guard.reset();
    if (finished.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
        log::warning("HA tasks still running at shutdown; abandoning them");
        ctx.stop();
    }
}

}  // namespace

int run_server(const config::settings& settings, const run_options& options) {
    std::signal(SIGPIPE, SIG_IGN);
    // SIGINT/SIGTERM are caught from here on: one that arrives while pgpilot starts (finding
    // the nodes, opening the listeners, starting the workers) waits in the signal_set and
    // shuts pgpilot down as soon as it is running, instead of killing it with the default
    // action (exit by signal, unix socket file left behind). The integration tests saw that
    // window under ThreadSanitizer, where starting the workers took over 100 ms.
    net::io_context main_ctx{1};
    net::signal_set signals(main_ctx, SIGINT, SIGTERM);
    signals.add(SIGHUP);
    raise_descriptor_limit();
    if (auto taken = addresses_taken(settings); !taken.empty()) {
        log::error("cannot listen: {}", taken);
        return 1;
    }

    // Nodes as configured; the registry finds out their status and role.
    net::io_context ha_ctx{1};
    ha::node_registry registry(ha_ctx, settings, {options.discard_status_file});
    shared_state shared(settings, registry);
    auto seconds = [](double s) { return std::chrono::milliseconds(std::int64_t(s * 1000)); };
    shared.timeouts.backend_connect = seconds(settings.pool.connect_timeout);
    shared.timeouts.authentication = seconds(settings.pool.authentication_timeout);
    shared.timeouts.client_idle = seconds(settings.pool.client_idle_limit);
    shared.timeouts.idle_in_transaction = seconds(settings.pool.idle_in_transaction_timeout);

    // Find the primary before accepting clients.
    auto first = net::co_spawn(ha_ctx, registry.detect(), net::use_future);
    auto ha_guard = net::make_work_guard(ha_ctx);
    std::promise<void> ha_done;
    auto ha_finished = ha_done.get_future();
    std::thread ha_thread([&] {
        ha_ctx.run();
        ha_done.set_value();
    });
    first.wait();
    registry.start();
    if (!router::route_to_primary(*registry.snapshot()).node)
        log::warning("no primary found among {} backends; will keep looking",
                     settings.backends.size());

    unsigned count = settings.server.workers;
    if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
    std::vector<worker_thread> workers(count);
    try {
        auto endpoints = listen_endpoints(settings.server.listen_addresses, settings.server.port);
        for (unsigned i = 0; i < count; ++i)
            workers[i].w = std::make_unique<worker>(shared, i);
        // The Unix socket first: once the TCP port accepts, a client may look for the socket.
        if (!settings.server.unix_socket_dir.empty()) {
            auto path = unix_socket_path(settings.server);
            ::unlink(path.c_str());  // left over by a previous run that was killed
            auto a = std::make_unique<acceptor>(workers[0].w->ctx);
            net::generic::stream_protocol::endpoint ep(net::local::stream_protocol::endpoint{path});
            a->open(ep.protocol());
            a->bind(ep);
            ::chmod(path.c_str(), 0777);  // PostgreSQL's default unix_socket_permissions
            a->listen(net::socket_base::max_listen_connections);
            workers[0].unix_socket = std::move(a);
        }
        for (auto& t : workers)
            for (const auto& ep : endpoints)
                t.tcp.push_back(open_tcp(t.w->ctx, ep));
        for (const auto& ep : endpoints)
            log::info("listening on {}:{}", ep.address().to_string(), ep.port());
        if (workers[0].unix_socket) log::info("listening on {}", unix_socket_path(settings.server));
        if (settings.admin.port != 0) {
            std::vector<std::unique_ptr<listener>> admin_listeners;
            for (const auto& ep :
                 listen_endpoints(settings.admin.listen_addresses, settings.admin.port)) {
                admin_listeners.push_back(open_tcp(workers[0].w->ctx, ep, false));
                log::info("admin HTTP endpoint on {}:{}", ep.address().to_string(), ep.port());
            }
            workers[0].admin =
                std::make_unique<admin_http>(*workers[0].w, std::move(admin_listeners));
        }
    } catch (const std::exception& e) {
        log::error("cannot listen: {}", e.what());
        shared.stopping = true;
        stop_ha(registry, ha_guard, ha_ctx, ha_finished);
        ha_thread.join();
        return 1;
    }

    for (auto& t : workers) {
        for (auto& a : t.tcp)
            net::co_spawn(t.w->ctx, accept_loop(*t.w, *a, true, nullptr), log_exception);
        if (t.unix_socket)
            net::co_spawn(t.w->ctx, accept_loop(*t.w, *t.unix_socket, false, &workers),
                          log_exception);
    }
    if (workers[0].admin) workers[0].admin->start();
    workers[0].sweep_timer = std::make_unique<net::steady_timer>(workers[0].w->ctx);
    net::co_spawn(workers[0].w->ctx, sweep_loop(*workers[0].w, *workers[0].sweep_timer),
                  log_exception);
    for (auto& t : workers) {
        t.park_timer = std::make_unique<net::steady_timer>(t.w->ctx);
        net::co_spawn(t.w->ctx, park_loop(*t.w, *t.park_timer), log_exception);
    }
    for (auto& t : workers)
        t.thread = std::thread([&t] {
            t.w->ctx.run();
            t.done.set_value();
        });
    log::info("pgpilot ready with {} workers", count);

    // Wait for SIGINT/SIGTERM on the main thread (at once if one came during the start);
    // SIGHUP reloads what new logins use.
    int received = 0;
    std::function<void(const error_code&, int)> on_signal = [&](const error_code& ec, int sig) {
        if (!ec && sig == SIGHUP) {
            reload_login_settings(shared);
            signals.async_wait(on_signal);
            return;
        }
        received = sig;
    };
    signals.async_wait(on_signal);
    main_ctx.run();

    log::info("received signal {}, shutting down", received);
    shared.stopping = true;
    shared.pool.clear();
    for (auto& t : workers)
        net::post(t.w->ctx, [&t] { stop_worker(t); });
    // Sessions end at once (cancelled) or within their bounded goodbyes; a worker still busy
    // after the grace period is stopped, so that SIGTERM always ends pgpilot.
    const auto give_up = std::chrono::steady_clock::now() + shutdown_grace;
    for (auto& t : workers) {
        if (t.done.get_future().wait_until(give_up) != std::future_status::ready) {
            log::warning("worker {} still has work {} s after the shutdown began; stopping it",
                         t.w->id, shutdown_grace.count());
            t.w->ctx.stop();
        }
        t.thread.join();
    }
    stop_ha(registry, ha_guard, ha_ctx, ha_finished);
    ha_thread.join();
    if (!settings.server.unix_socket_dir.empty())
        ::unlink(unix_socket_path(settings.server).c_str());
    log::info("shutdown complete");
    return 0;
}

}  // namespace pgpilot::proxy
