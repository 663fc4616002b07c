// docs/configuration.md documents every key the loader accepts.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "config/config.hpp"

namespace {

std::string read_reference() {
    // This file is test/unit/config/docs_test.cpp; the reference is docs/configuration.md.
    const auto root = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "..";
    std::ifstream in(root / "docs" / "configuration.md");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The text of the "## `[table]`" or "## `[[table]]`" section, up to the next "## ".
std::string section_of(const std::string& doc, const std::string& table) {
    for (const auto& heading : {"\n## `[" + table + "]`\n", "\n## `[[" + table + "]]`\n"}) {
        const auto begin = doc.find(heading);
        if (begin == std::string::npos) continue;
        const auto end = doc.find("\n## ", begin + heading.size());
        return doc.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    }
    return {};
}

}  // namespace

TEST_CASE("docs/configuration.md has a row for every known key", "[config]") {
    const std::string doc = read_reference();
    REQUIRE_FALSE(doc.empty());
    const auto keys = pgpilot::config::known_keys();
    REQUIRE(std::find(keys.begin(), keys.end(), "server.port") != keys.end());
    REQUIRE(std::find(keys.begin(), keys.end(), "backend.host") != keys.end());
    for (const auto& key : keys) {
        INFO(key);
        const auto dot = key.find('.');
        REQUIRE(dot != std::string::npos);
        const std::string section = section_of(doc, key.substr(0, dot));
        CHECK_FALSE(section.empty());
        CHECK(section.find("| `" + key.substr(dot + 1) + "` |") != std::string::npos);
    }
}

TEST_CASE("docs/configuration.md documents no key the loader rejects", "[config]") {
    const std::string doc = read_reference();
    const auto keys = pgpilot::config::known_keys();
    std::istringstream lines(doc);
    std::string line;
    std::string table;  // the current "## `[table]`" section, or "" outside one
    int rows = 0;
    while (std::getline(lines, line)) {
        if (line.rfind("## ", 0) == 0) {
            table.clear();
            const auto open = line.find("`[");
            if (open == std::string::npos) continue;
            const auto begin = line.find_first_not_of('[', open + 1);
            const auto end = line.find(']', begin);
            table = line.substr(begin, end - begin);
        } else if (!table.empty() && line.rfind("| `", 0) == 0) {
            const auto end = line.find('`', 3);
            const std::string key = table + "." + line.substr(3, end - 3);
            INFO(key);
            CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
            ++rows;
        }
    }
    CHECK(rows == static_cast<int>(keys.size()));
}
