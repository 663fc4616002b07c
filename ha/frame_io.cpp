#include "ha/frame_io.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <tuple>

namespace pgpilot {

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
}

net::awaitable<error_code> frame_reader::fill(stream& s) {
    if (start_ > 0 && start_ == buf_.size()) {
        buf_.clear();
        start_ = 0;
    } else if (start_ > 4096) {
        buf_.erase(0, start_);
        start_ = 0;
    }
    std::size_t old = buf_.size();
    std::size_t want = std::max<std::size_t>(8192, buf_.capacity() - old);
    buf_.resize(old + want);
    auto [ec, n] = co_await s.async_read_some(net::buffer(buf_.data() + old, want), use_tuple);
    buf_.resize(old + n);
    co_return ec;
}

std::string frame_reader::take_pending() {
    std::string out = buf_.substr(start_);
    std::string().swap(buf_);
    start_ = 0;
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
