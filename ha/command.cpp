// GCC 12 reports a false -Wmismatched-new-delete at the end of some coroutines here: Asio's
// awaitable frames are allocated by their own operator new (through its recycling allocator,
// which GCC inlines) and freed by the matching operator delete.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "ha/command.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <csignal>
#include <cstring>
#include <optional>

extern char** environ;

namespace pgpilot::ha {

namespace {

using namespace net::experimental::awaitable_operators;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
/// How long output is still read after the shell exited (a grandchild may hold the pipes).
constexpr std::chrono::milliseconds output_grace{200};
/// How often the exit is polled when the kernel has no pidfd_open.
constexpr std::chrono::milliseconds exit_poll{20};

void append(std::string& out, const placeholder_node& n, char field) {
    switch (field) {
        case 'i':
            out += std::to_string(n.id);
            break;
        case 'h':
            out += n.host;
            break;
        case 'p':
            if (n.port) out += std::to_string(n.port);
            break;
        case 'D':
            out += n.data_directory;
            break;
    }
}

/// Reads a pipe to its end, keeping the first max_command_output bytes.
net::awaitable<void> drain(net::posix::stream_descriptor& pipe, std::string& into) {
    char buf[4096];
    for (;;) {
        auto [ec, n] = co_await pipe.async_read_some(net::buffer(buf), use_tuple);
        if (n > 0 && into.size() < max_command_output)
            into.append(buf, std::min(n, max_command_output - into.size()));
        if (ec) co_return;
    }
}

net::awaitable<void> drain_both(net::posix::stream_descriptor& out, std::string& out_text,
                                net::posix::stream_descriptor& err, std::string& err_text) {
    co_await (drain(out, out_text) && drain(err, err_text));
}

/// Waits for `pid` to exit, reaps it and stores its wait status (-1 when it cannot be known:
/// reaped by someone else). The status goes to `status` as soon as the child is reaped, so a
/// caller that cancels this wait never loses it.
net::awaitable<void> wait_exit(pid_t pid, net::posix::stream_descriptor* pidfd,
                               std::optional<int>& status) {
    if (pidfd) {
        // A pidfd becomes readable when the process exits.
        co_await pidfd->async_wait(net::posix::stream_descriptor::wait_read, use_tuple);
    }
    net::steady_timer poll(co_await net::this_coro::executor);
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            status = st;
            co_return;
        }
        if (r < 0 && errno != EINTR) {
            status = -1;
            co_return;
        }
        poll.expires_after(exit_poll);
        auto [ec] = co_await poll.async_wait(use_tuple);
        if (ec) co_return;
    }
}

struct fd_closer {
    int fd = -1;
    ~fd_closer() {
        if (fd >= 0) ::close(fd);
    }
    int release() { return std::exchange(fd, -1); }
};

}  // namespace

std::string expand_placeholders(std::string_view command, const placeholder_values& v) {
    std::string out;
    out.reserve(command.size() + 64);
    for (std::size_t i = 0; i < command.size(); ++i) {
        if (command[i] != '%') {
            out += command[i];
            continue;
        }
        if (++i == command.size()) break;
        switch (command[i]) {
            case 'd':
                append(out, v.node, 'i');
                break;
            case 'h':
                append(out, v.node, 'h');
                break;
            case 'p':
                append(out, v.node, 'p');
                break;
            case 'D':
                append(out, v.node, 'D');
                break;
            case 'm':
                append(out, v.new_main, 'i');
                break;
            case 'H':
                append(out, v.new_main, 'h');
                break;
            case 'r':
                append(out, v.new_main, 'p');
                break;
            case 'R':
                append(out, v.new_main, 'D');
                break;
            case 'M':
                out += std::to_string(v.old_main);
                break;
            case 'P':
                append(out, v.old_primary, 'i');
                break;
            case 'N':
                append(out, v.old_primary, 'h');
                break;
            case 'S':
                append(out, v.old_primary, 'p');
                break;
            case '%':
                out += '%';
                break;
            default:
                break;  // unknown: dropped, as pgpool-II does
        }
    }
    return out;
}

std::string command_result::describe() const {
    if (!started) return "could not start: " + error;
    if (signal) return "killed by signal " + std::to_string(signal);
    if (exit_code < 0) return "exit status unknown: " + error;
    return "exit status " + std::to_string(exit_code);
}

net::awaitable<command_result> run_command(const std::string& command) {
    auto ex = co_await net::this_coro::executor;
    command_result r;
    const auto start = std::chrono::steady_clock::now();
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
        r.error = std::string("pipe: ") + std::strerror(errno);
        co_return r;
    }
    fd_closer out_read{out_pipe[0]}, out_write{out_pipe[1]};
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        r.error = std::string("pipe: ") + std::strerror(errno);
        co_return r;
    }
    fd_closer err_read{err_pipe[0]}, err_write{err_pipe[1]};

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_write.fd, 1);
    posix_spawn_file_actions_adddup2(&actions, err_write.fd, 2);
    // Not only pgpilot's O_CLOEXEC descriptors: listening sockets and client connections must
    // never leak into a command (or a server it starts).
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    // pgpilot ignores SIGPIPE; ignored signals would stay ignored in the command.
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    char sh[] = "/bin/sh";
    char dash_c[] = "-c";
    std::string script = command;  // posix_spawn wants char*
    char* argv[] = {sh, dash_c, script.data(), nullptr};
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, sh, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        r.error = std::string("posix_spawn: ") + std::strerror(rc);
        co_return r;
    }
    r.started = true;
    // The child has its copies: ours must go, or the pipes never reach end of file.
    ::close(out_write.release());
    ::close(err_write.release());

    net::posix::stream_descriptor out(ex, out_read.release());
    net::posix::stream_descriptor err(ex, err_read.release());
    std::unique_ptr<net::posix::stream_descriptor> pidfd;
    // Through syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C".
    if (int fd = int(::syscall(SYS_pidfd_open, pid, 0)); fd >= 0)
        pidfd = std::make_unique<net::posix::stream_descriptor>(ex, fd);

    std::optional<int> status;
    co_await (drain_both(out, r.out, err, r.err) || wait_exit(pid, pidfd.get(), status));
    if (!status) co_await wait_exit(pid, pidfd.get(), status);
    // Output still in the pipes, unless a background grandchild keeps them open.
    net::steady_timer grace(ex, output_grace);
    co_await (drain_both(out, r.out, err, r.err) || grace.async_wait(use_tuple));
    if (!status || *status == -1) {
        r.error = "the process was reaped elsewhere";
    } else if (WIFEXITED(*status)) {
        r.exit_code = WEXITSTATUS(*status);
    } else if (WIFSIGNALED(*status)) {
        r.signal = WTERMSIG(*status);
    }
    r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    co_return r;
}

}  // namespace pgpilot::ha
