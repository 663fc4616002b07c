// Read buffers a worker's sessions borrow while bytes flow, so that an idle session holds none.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace pgpilot::proxy {

/// A worker's spare relay buffers (one thread, no locking). A session borrows one when a
/// socket it relays has bytes, and gives it back once they went on and no answer is pending:
/// memory follows the sessions moving bytes, not the sessions open (issue 4: idle clients
/// must cost at most a few KiB each).
class relay_buffers {
  public:
    /// Bytes per buffer. Frames larger than this stream through in pieces.
    static constexpr std::size_t size = std::size_t{64} * 1024;

    /// A borrowed buffer; goes back to its pool when reset or destroyed.
    class lease {
      public:
        lease() = default;
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;
        lease(lease&& o) noexcept : pool_(o.pool_), buf_(std::move(o.buf_)) {}
        lease& operator=(lease&& o) noexcept {
            if (this != &o) {
                reset();
                pool_ = o.pool_;
                buf_ = std::move(o.buf_);
            }
            return *this;
        }
        ~lease() { reset(); }

        explicit operator bool() const { return buf_ != nullptr; }
        std::byte* data() const { return buf_.get(); }
        char* chars() const { return reinterpret_cast<char*>(buf_.get()); }
        void reset() noexcept {
            if (buf_) pool_->give_back(std::move(buf_));
        }

      private:
        friend class relay_buffers;
        lease(relay_buffers* pool, std::unique_ptr<std::byte[]> buf)
            : pool_(pool), buf_(std::move(buf)) {}
        relay_buffers* pool_ = nullptr;
        std::unique_ptr<std::byte[]> buf_;
    };

    /// `keep`: spare buffers kept for reuse; more are freed when given back.
    explicit relay_buffers(std::size_t keep = 64) : keep_(keep) { spare_.reserve(keep); }
    relay_buffers(const relay_buffers&) = delete;
    relay_buffers& operator=(const relay_buffers&) = delete;

    lease take() {
        if (spare_.empty()) return {this, std::make_unique_for_overwrite<std::byte[]>(size)};
        lease l{this, std::move(spare_.back())};
        spare_.pop_back();
        return l;
    }

  private:
    void give_back(std::unique_ptr<std::byte[]> buf) noexcept {
        // Never reallocates: reserved for keep_ in the constructor.
        if (spare_.size() < keep_) spare_.push_back(std::move(buf));
    }
    std::vector<std::unique_ptr<std::byte[]>> spare_;
    std::size_t keep_;
};

}  // namespace pgpilot::proxy
