#include "ha/frame_io.hpp"

#include <sys/socket.h>

#include <boost/version.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

namespace pgpilot {

// Boost.Asio's epoll reactor keeps, per descriptor, whether the next operation of a kind may
// be tried at once (try_speculative_). It sets it after every readiness event and clears it
// only after a read of 0 bytes, so every async_read_some starts with a recv even when the last
// one just drained the socket. expect_empty() clears it for reads, as the reactor itself does
// after end-of-file, where the caller knows the peer has nothing more to send (see
// frame_io.hpp): the next event for the descriptor sets it again, and data that arrives after
// the read always brings one (edge-triggered registration, under the descriptor's lock), so
// no wakeup is lost. The members are private; an explicit
// template instantiation may name them ([temp.spec.general]/6), which is how this reaches
// them. Built for the reactor of Boost 1.81 (checked below): another version falls back to
// doing nothing.
namespace {
#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
using reactor = net::detail::epoll_reactor;
using descriptor_state = reactor::descriptor_state;

template <class Tag, typename Tag::type Member>
struct member_access {
    friend typename Tag::type member_of(Tag) { return Member; }
};
struct speculative_tag {
    using type = bool (descriptor_state::*)[reactor::max_ops];
    friend type member_of(speculative_tag);
};
struct mutex_tag {
    using type = net::detail::conditionally_enabled_mutex descriptor_state::*;
    friend type member_of(mutex_tag);
};
template struct member_access<speculative_tag, &descriptor_state::try_speculative_>;
template struct member_access<mutex_tag, &descriptor_state::mutex_>;

/// The socket's implementation (a protected member of basic_socket, named through a class
/// derived from it).
struct socket_access : stream {
    static auto& implementation(stream& s) {
        return (s.*(&socket_access::impl_)).get_implementation();
    }
};

void clear_read_speculation(stream& s) {
    descriptor_state* state = socket_access::implementation(s).reactor_data_;
    if (state == nullptr) return;
    net::detail::conditionally_enabled_mutex::scoped_lock lock(state->*member_of(mutex_tag{}));
    (state->*member_of(speculative_tag{}))[reactor::read_op] = false;
}

bool read_speculation_off(stream& s) {
    descriptor_state* state = socket_access::implementation(s).reactor_data_;
    if (state == nullptr) return false;
    net::detail::conditionally_enabled_mutex::scoped_lock lock(state->*member_of(mutex_tag{}));
    return !(state->*member_of(speculative_tag{}))[reactor::read_op];
}
#else
void clear_read_speculation(stream&) {}
bool read_speculation_off(stream&) {
    return false;
}
#endif
}  // namespace

void expect_empty(stream& s) {
    clear_read_speculation(s);
}

bool known_empty(stream& s) {
    const auto* io = s.get_executor().target<net::io_context::executor_type>();
    return io != nullptr && io->running_in_this_thread() && read_speculation_off(s);
}

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
}

net::awaitable<error_code> frame_reader::fill(stream& s) {
    constexpr std::size_t least_read = 8192;
    if (start_ == end_) {
        start_ = end_ = 0;
    } else if (start_ > 4096) {
        std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
    }
    if (capacity_ - end_ < least_read) {
        const std::size_t grown = std::max(end_ + least_read, 2 * capacity_);
        auto bigger = std::make_unique_for_overwrite<char[]>(grown);
        if (end_ > 0) std::memcpy(bigger.get(), buf_.get(), end_);
        buf_ = std::move(bigger);
        capacity_ = grown;
    }
    auto [ec, n] =
        co_await s.async_read_some(net::buffer(buf_.get() + end_, capacity_ - end_), use_tuple);
    end_ += n;
    co_return ec;
}

std::string frame_reader::take_pending() {
    std::string out(buf_.get() + start_, end_ - start_);
    buf_.reset();
    capacity_ = start_ = end_ = 0;
    return out;
}

net::awaitable<error_code> frame_reader::read_frame(stream& s, protocol::whole_frame& out,
                                                    std::uint32_t max_length) {
    for (;;) {
        switch (protocol::next_whole_frame(pending(), out, max_length)) {
            case protocol::frame_status::header:
                consume(out.total);
                co_return error_code{};
            case protocol::frame_status::malformed:
                co_return make_error_code(boost::system::errc::bad_message);
            case protocol::frame_status::need_more:
                break;
        }
        if (auto ec = co_await fill(s)) co_return ec;
    }
}

namespace {
/// Runs a non-blocking recv or send until it is not interrupted: (bytes, no error), or
/// (would_block, 0) when it would have to wait, or the errno it failed with.
template <class Call>
std::pair<error_code, std::size_t> without_waiting(Call call) {
    for (;;) {
        const ssize_t n = call();
        if (n >= 0) return {error_code{}, std::size_t(n)};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {net::error::would_block, 0};
        return {error_code(errno, boost::system::system_category()), 0};
    }
}
}  // namespace

std::pair<error_code, std::size_t> read_available(stream& s, void* data, std::size_t size) {
    auto r = without_waiting([&] { return ::recv(s.native_handle(), data, size, MSG_DONTWAIT); });
    if (!r.first && r.second == 0) r.first = net::error::eof;
    return r;
}

std::pair<error_code, std::size_t> write_available(stream& s, const void* data, std::size_t size) {
    return without_waiting(
        [&] { return ::send(s.native_handle(), data, size, MSG_DONTWAIT | MSG_NOSIGNAL); });
}

net::awaitable<error_code> write_all(stream& s, std::string_view data) {
    // What the socket takes now goes at once, without a trip through the event loop (most
    // writes: the socket buffer has room); the rest waits for room.
    auto [ec, n] = write_available(s, data.data(), data.size());
    if (ec == net::error::would_block) ec = {};
    if (ec || n == data.size()) co_return ec;
    std::tie(ec, n) = co_await net::async_write(s, net::buffer(data.substr(n)), use_tuple);
    co_return ec;
}

}  // namespace pgpilot
