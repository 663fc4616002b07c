#include "proxy/cancel_map.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstring>
#include <stdexcept>

namespace pgpilot::proxy {

namespace {

/// Cancel keys must not be guessable (another client could cancel our queries): they come
/// from OpenSSL's generator, drawn 256 bytes at a time per thread, because each call costs a
/// getpid() system call (OpenSSL's check for a fork) besides the generator itself, once per
/// login otherwise.
std::uint32_t random_key() {
    thread_local std::array<unsigned char, 256> pool{};
    thread_local std::size_t used = pool.size();
    if (used + sizeof(std::uint32_t) > pool.size()) {
        if (RAND_bytes(pool.data(), int(pool.size())) != 1)
            throw std::runtime_error("RAND_bytes failed");
        used = 0;
    }
    std::uint32_t key = 0;
    std::memcpy(&key, pool.data() + used, sizeof key);
    std::memset(pool.data() + used, 0, sizeof key);  // each draw is handed out once
    used += sizeof key;
    return key;
}

}  // namespace

std::pair<std::uint32_t, std::uint32_t> cancel_map::allocate() {
    const std::uint32_t key = random_key();
    for (;;) {
        // Process ids wrap after 2^31; skip 0 and any id still in use.
        std::uint32_t pid = next_pid_.fetch_add(1, std::memory_order_relaxed) & 0x7fffffffu;
        if (pid == 0) continue;
        auto& s = shard_for(pid);
        std::lock_guard lock(s.mutex);
        if (s.entries.try_emplace(pid, entry{key, std::nullopt}).second) return {pid, key};
    }
}

void cancel_map::set(std::uint32_t pid, std::uint32_t key, const cancel_target& target) {
    auto& s = shard_for(pid);
    std::lock_guard lock(s.mutex);
    auto& e = s.entries[pid];
    e.key = key;
    if (e.target)
        *e.target = target;  // the address's host string keeps its buffer
    else
        e.target = target;
}

void cancel_map::release(std::uint32_t pid) {
    auto& s = shard_for(pid);
    std::lock_guard lock(s.mutex);
    s.entries.erase(pid);
}

std::optional<cancel_target> cancel_map::find(std::uint32_t pid, std::uint32_t key) const {
    const auto& s = shard_for(pid);
    std::lock_guard lock(s.mutex);
    auto it = s.entries.find(pid);
    if (it == s.entries.end() || it->second.key != key) return std::nullopt;
    return it->second.target;
}

}  // namespace pgpilot::proxy
