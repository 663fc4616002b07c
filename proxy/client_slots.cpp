#include "proxy/client_slots.hpp"

#include <algorithm>

namespace pgpilot::proxy {

net::awaitable<client_slots::outcome> client_slots::acquire() {
    std::shared_ptr<waiter> w;
    {
        std::lock_guard lock(mutex_);
        if (reserved_ > 0) {
            if (in_use_ + reserved_ >= max_) co_return outcome::refused;
            ++in_use_;
            co_return outcome::granted;
        }
        if (in_use_ < max_ && waiters_.empty()) {
            ++in_use_;
            co_return outcome::granted;
        }
        w = std::make_shared<waiter>(co_await net::this_coro::executor);
        w->timer.expires_at(net::steady_timer::time_point::max());
        waiters_.push_back(w);
    }
    // Woken by release() (which hands the slot over) or by the session's cancellation.
    co_await w->timer.async_wait(net::as_tuple(net::use_awaitable));
    std::lock_guard lock(mutex_);
    if (w->granted) co_return outcome::granted;
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), w), waiters_.end());
    co_return outcome::cancelled;
}

void client_slots::release() {
    std::shared_ptr<waiter> next;
    {
        std::lock_guard lock(mutex_);
        if (waiters_.empty()) {
            --in_use_;
            return;
        }
        // The slot passes straight to the longest waiter: in_use_ does not change.
        next = std::move(waiters_.front());
        waiters_.pop_front();
        next->granted = true;
    }
    // Timers are not thread-safe: cancel on the waiter's own worker.
    net::post(next->timer.get_executor(), [next] { next->timer.cancel(); });
}

std::size_t client_slots::in_use() const {
    std::lock_guard lock(mutex_);
    return in_use_;
}

std::size_t client_slots::waiting() const {
    std::lock_guard lock(mutex_);
    return waiters_.size();
}

}  // namespace pgpilot::proxy
