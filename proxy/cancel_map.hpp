// The keys pgpilot hands to clients in BackendKeyData, and which backend each one cancels.
// A CancelRequest arrives on a new connection, on any worker thread, so the map is shared:
// sharded by process id, one mutex per shard.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "ha/connector.hpp"

namespace pgpilot::proxy {

/// The backend a client's cancel key currently points at.
struct cancel_target {
    ha::node_address address;
    std::uint32_t pid = 0;
    std::uint32_t key = 0;
};

/// Client-visible (pid, key) pairs and the backends they cancel.
class cancel_map {
  public:
    /// A new client identity: a process id unique among live sessions and a random key.
    std::pair<std::uint32_t, std::uint32_t> allocate();
    /// Points a client's key at the backend it uses now; a target with pid 0 says that nothing
    /// of the client runs anywhere (transaction pooling, between transactions). Twice per
    /// transaction in transaction pooling: the target is assigned in place.
    void set(std::uint32_t pid, std::uint32_t key, const cancel_target& target);
    void release(std::uint32_t pid);
    /// The target for a CancelRequest, only when both pid and key match (a wrong key is
    /// ignored silently, as PostgreSQL does).
    std::optional<cancel_target> find(std::uint32_t pid, std::uint32_t key) const;

  private:
    struct entry {
        std::uint32_t key = 0;
        std::optional<cancel_target> target;
    };
    struct shard {
        mutable std::mutex mutex;
        std::unordered_map<std::uint32_t, entry> entries;
    };
    static constexpr std::size_t shard_count = 16;
    shard& shard_for(std::uint32_t pid) { return shards_[pid % shard_count]; }
    const shard& shard_for(std::uint32_t pid) const { return shards_[pid % shard_count]; }

    std::array<shard, shard_count> shards_;
    std::atomic<std::uint32_t> next_pid_{1};
};

}  // namespace pgpilot::proxy
