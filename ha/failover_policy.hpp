// Failover decisions as pure functions, so they can be tested without servers: which standby
// to promote, and which of two primaries is the false one.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace pgpilot::ha {

/// A standby that could be promoted, and how far its WAL goes.
struct promotion_candidate {
    int id = -1;
    /// The position it will reach once promoted: WAL received and flushed
    /// (pg_last_wal_receive_lsn()), at least its replay position (promotion replays it all).
    std::uint64_t position = 0;
};

/// The standby to promote: the highest position, ties to the lowest id; nullopt when none.
std::optional<int> choose_promotion(const std::vector<promotion_candidate>& candidates);

/// A node that answered that it is not in recovery.
struct primary_claim {
    int id = -1;
    bool always_primary = false;  ///< [[backend]] flag = ALWAYS_PRIMARY
    std::uint32_t timeline = 0;   ///< of its current WAL; 0 = unknown
    std::int64_t walsenders = 0;  ///< standbys (and backups) streaming from it
    bool current = false;         ///< the primary pgpilot has been using
};

/// Of two nodes that both claim to be the primary, the id of the false one (to be fenced):
/// not ALWAYS_PRIMARY first; then the older timeline (a promotion starts a new one, so an old
/// primary that came back is behind); then the one fewer standbys stream from; then the one
/// that is not the current primary; then the higher id.
int false_primary(const primary_claim& a, const primary_claim& b);

}  // namespace pgpilot::ha
