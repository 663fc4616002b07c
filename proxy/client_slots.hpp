// The limit on concurrent clients (pgpool's num_init_children role): a counter shared by all
// workers, with a FIFO of clients waiting for a slot, or a refusal when reserved
// connections are configured.
#pragma once

#include <boost/asio.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>

namespace pgpilot::proxy {

namespace net = boost::asio;

/// Client slots: at most `max` sessions past startup at once, across every worker.
class client_slots {
  public:
    client_slots(std::size_t max, std::size_t reserved) : max_(max), reserved_(reserved) {}

    enum class outcome { granted, refused, cancelled };

    /// Takes a slot. With reserved connections configured, a client that finds fewer than
    /// `reserved` slots free is refused at once (pgpool's reserved_connections); otherwise it
    /// waits, first come first served, until a slot frees or its wait is cancelled.
    net::awaitable<outcome> acquire();
    /// Gives a slot back: to the longest waiter if there is one.
    void release();

    std::size_t in_use() const;
    std::size_t waiting() const;

  private:
    struct waiter {
        explicit waiter(const net::any_io_executor& ex) : timer(ex) {}
        net::steady_timer timer;
        bool granted = false;  // guarded by mutex_
    };

    const std::size_t max_;
    const std::size_t reserved_;
    mutable std::mutex mutex_;
    std::size_t in_use_ = 0;
    std::deque<std::shared_ptr<waiter>> waiters_;
};

}  // namespace pgpilot::proxy
