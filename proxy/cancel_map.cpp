#include "proxy/cancel_map.hpp"

#include <openssl/rand.h>

namespace pgpilot::proxy {

std::pair<std::uint32_t, std::uint32_t> cancel_map::allocate() {
    std::uint32_t key = 0;
    // Cancel keys must not be guessable: another client could cancel our queries.
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&key), sizeof key) != 1)
        throw std::runtime_error("RAND_bytes failed");
    for (;;) {
        // Process ids wrap after 2^31; skip 0 and any id still in use.
        std::uint32_t pid = next_pid_.fetch_add(1, std::memory_order_relaxed) & 0x7fffffffu;
        if (pid == 0) continue;
        auto& s = shard_for(pid);
        std::lock_guard lock(s.mutex);
        if (s.entries.try_emplace(pid, entry{key, std::nullopt}).second) return {pid, key};
    }
}

void cancel_map::set(std::uint32_t pid, std::uint32_t key, std::optional<cancel_target> target) {
    auto& s = shard_for(pid);
    std::lock_guard lock(s.mutex);
    s.entries[pid] = entry{key, std::move(target)};
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
