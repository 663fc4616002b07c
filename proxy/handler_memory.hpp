// Memory for the operations parked sessions leave pending, kept apart from the general heap.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <vector>

namespace pgpilot::proxy {

/// Fixed-size blocks, recycled, from 64 KiB chunks a worker keeps (one thread, no locking).
/// A parked session's wait for its client lives as long as the client idles; allocated from
/// the general heap it lands among the coroutine frames the session just freed and keeps their
/// pages from going back to the system (malloc_trim cannot release a page one live block sits
/// in). Here such blocks sit packed together instead.
class block_pool {
  public:
    static constexpr std::size_t block_size = 256;

    block_pool() = default;
    block_pool(const block_pool&) = delete;
    block_pool& operator=(const block_pool&) = delete;

    void* allocate(std::size_t n) {
        if (n > block_size) return ::operator new(n);  // not what the pool is for
        ++in_use_;
        if (free_ != nullptr) {
            block* b = free_;
            free_ = b->next;
            return b;
        }
        if (used_ == per_chunk) {
            chunks_.push_back(std::make_unique_for_overwrite<block[]>(per_chunk));
            used_ = 0;
        }
        return &chunks_.back()[used_++];
    }
    void deallocate(void* p, std::size_t n) noexcept {
        if (n > block_size) {
            ::operator delete(p);
            return;
        }
        --in_use_;
        auto* b = static_cast<block*>(p);
        b->next = free_;
        free_ = b;
    }

    /// A standard allocator drawing from a block_pool (for net::bind_allocator).
    template <class T>
    struct allocator {
        using value_type = T;
        block_pool* pool;
        explicit allocator(block_pool& p) noexcept : pool(&p) {}
        template <class U>
        allocator(const allocator<U>& other) noexcept : pool(other.pool) {}
        T* allocate(std::size_t n) { return static_cast<T*>(pool->allocate(n * sizeof(T))); }
        void deallocate(T* p, std::size_t n) noexcept { pool->deallocate(p, n * sizeof(T)); }
        friend bool operator==(const allocator& a, const allocator& b) noexcept {
            return a.pool == b.pool;
        }
    };
    allocator<std::byte> get_allocator() noexcept { return allocator<std::byte>(*this); }
    /// Blocks handed out and not given back.
    std::size_t in_use() const { return in_use_; }

  private:
    union block {
        block* next;
        alignas(std::max_align_t) std::byte bytes[block_size];
    };
    static constexpr std::size_t per_chunk = 256;  // 64 KiB chunks
    std::vector<std::unique_ptr<block[]>> chunks_;
    std::size_t used_ = per_chunk;
    block* free_ = nullptr;
    std::size_t in_use_ = 0;
};

}  // namespace pgpilot::proxy
