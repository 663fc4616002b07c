#include "ha/failover_policy.hpp"

#include <tuple>

namespace pgpilot::ha {

std::optional<int> choose_promotion(const std::vector<promotion_candidate>& candidates) {
    const promotion_candidate* best = nullptr;
    for (const auto& c : candidates) {
        if (!best || c.position > best->position ||
            (c.position == best->position && c.id < best->id))
            best = &c;
    }
    if (!best) return std::nullopt;
    return best->id;
}

int false_primary(const primary_claim& a, const primary_claim& b) {
    // Ranks: larger is more credible as the primary.
    auto rank = [](const primary_claim& c) {
        return std::make_tuple(c.always_primary, c.timeline, c.walsenders, c.current, -c.id);
    };
    return rank(a) < rank(b) ? a.id : b.id;
}

}  // namespace pgpilot::ha
