#include "config/schema.hpp"

#include <algorithm>

namespace pgpilot::config::detail {

std::string escape_control_characters(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
        } else if (c == 0xc2 && i + 1 < text.size() &&
                   static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
            // U+0080..U+009F in UTF-8: C1 controls (U+0085 NEL is a line break, U+009B is CSI).
            out += fmt::format("\\u{:04x}", static_cast<unsigned char>(text[++i]));
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

void diagnostics::error(const toml::source_position& where, std::string_view key,
                        std::string_view message) {
    std::string text = fmt::format("{}:{}:{}: ", source_, where.line, where.column);
    if (!key.empty()) {
        text += key;
        text += ": ";
    }
    text += message;
    // Keys and values quoted from the file (and the file name) are escaped here, in one place:
    // a hostile file must not be able to print a second line or drive the terminal.
    entries_.push_back({where, escape_control_characters(text)});
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
