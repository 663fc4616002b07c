// A log line for a failure that can repeat many times a second (accept errors, refused
// connections): written at most once a minute.
#pragma once

#include <chrono>
#include <optional>

namespace pgpilot::proxy {

class once_a_minute {
  public:
    /// True the first time, then once at least a minute has passed since it last was.
    bool due(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        if (last_ && now - *last_ < std::chrono::minutes(1)) return false;
        last_ = now;
        return true;
    }

  private:
    std::optional<std::chrono::steady_clock::time_point> last_;
};

}  // namespace pgpilot::proxy
