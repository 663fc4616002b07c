#include "config/schema.hpp"

#include <algorithm>

namespace pgpilot::config::detail {

void diagnostics::error(const toml::source_position& where, std::string_view key,
                        std::string_view message) {
    std::string text = fmt::format("{}:{}:{}: ", source_, where.line, where.column);
    if (!key.empty()) {
        text += key;
        text += ": ";
    }
    text += message;
    entries_.push_back({where, std::move(text)});
}

std::vector<std::string> diagnostics::take() {
    std::stable_sort(entries_.begin(), entries_.end(), [](const entry& a, const entry& b) {
        if (a.where.line != b.where.line) return a.where.line < b.where.line;
        return a.where.column < b.where.column;
    });
    std::vector<std::string> lines;
    lines.reserve(entries_.size());
    for (auto& e : entries_)
        lines.push_back(std::move(e.text));
    entries_.clear();
    return lines;
}

const char* describe(toml::node_type type) {
    switch (type) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

bool iequals(std::string_view a, std::string_view b) {
    auto lower = [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    };
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [&](char x, char y) { return lower(x) == lower(y); });
}

}  // namespace pgpilot::config::detail
