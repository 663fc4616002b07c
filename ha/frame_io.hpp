// Reading whole protocol frames from a socket, for the phases where pgpilot reads messages one
// by one (startup, authentication, connection reset, health queries). The relay streams instead.
#pragma once

#include <boost/asio.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "protocol/frame.hpp"

namespace pgpilot {

namespace net = boost::asio;
using error_code = boost::system::error_code;
/// Both TCP and Unix-domain connections, to clients and to backends.
using stream = net::generic::stream_protocol::socket;

/// A small growable read buffer that hands out whole frames.
class frame_reader {
  public:
    /// Reads until a whole tagged frame is buffered. A malformed length gives errc::bad_message.
    /// The returned frame's body points into this reader and stays valid until the next call.
    net::awaitable<error_code> read_frame(stream& s, protocol::whole_frame& out,
                                          std::uint32_t max_length = protocol::max_message_length);
    /// Reads at least one more byte into the buffer.
    net::awaitable<error_code> fill(stream& s);
    /// Bytes received but not handed out yet.
    protocol::byte_view pending() const {
        return protocol::as_bytes(std::string_view(buf_.get() + start_, end_ - start_));
    }
    void consume(std::size_t n) { start_ += n; }
    bool empty() const { return start_ == end_; }
    /// Hands out the bytes not handed out yet and frees the buffer (the relay reads on its own).
    std::string take_pending();
    /// Frees the buffer if nothing is pending.
    void release_if_empty() {
        if (empty()) {
            buf_.reset();
            capacity_ = start_ = end_ = 0;
        }
    }

  private:
    // Not a std::string: growing one zero-fills the new bytes, and each read asks for 8 KiB
    // (a login reads two or three times: 16,800 instructions of memset per connection).
    std::unique_ptr<char[]> buf_;
    std::size_t capacity_ = 0;
    std::size_t start_ = 0;  ///< first byte not handed out
    std::size_t end_ = 0;    ///< one past the last byte received
};

/// Reads what has arrived on `s` without waiting: (would_block, 0) when nothing has, (eof, 0)
/// when the peer closed. For a reader that borrows its buffer only while bytes keep coming.
std::pair<error_code, std::size_t> read_available(stream& s, void* data, std::size_t size);

/// Tells the event loop that the last read emptied `s` (it returned less than it asked for)
/// and that the peer has no reason to close now: the next asynchronous read on `s` waits for
/// epoll to report data instead of first trying a recv that would fail with EAGAIN. In a
/// request-response protocol that recv almost always fails, and on a virtual machine a failed
/// system call costs more than a microsecond. A short read does not show whether the peer's
/// close came with the bytes: epoll reports that close once, with them, and it would then be
/// seen only when `s` is next written to. Callers use this only where the protocol says
/// nothing more is coming (a server that has answered everything it was asked, a client that
/// waits for an answer), and right after the read completes, before the coroutine waits for
/// anything: an event the loop takes in meanwhile would be cleared with it and lost.
void expect_empty(stream& s);

/// True when nothing has arrived on `s` since a read emptied it and expect_empty() was called:
/// the event loop that owns `s` has seen no readiness event since. Only that loop's thread can
/// know; elsewhere, or when unknown, false. (A read of 0 bytes, end-of-file, also leaves the
/// flag clear: callers ask only about connections whose reader has not seen one.)
bool known_empty(stream& s);

/// Sends what `s` takes now without waiting: (would_block, 0) when it takes nothing. The
/// caller makes sure no asynchronous write on `s` is under way (the bytes would interleave).
std::pair<error_code, std::size_t> write_available(stream& s, const void* data, std::size_t size);

/// Writes all of `data`, at once when the socket has room (see write_available()); errors
/// come back as values.
net::awaitable<error_code> write_all(stream& s, std::string_view data);

}  // namespace pgpilot
