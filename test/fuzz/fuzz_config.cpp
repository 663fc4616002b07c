// Fuzzes config::load_string (config/config.hpp) on arbitrary text.
//
// It must never crash and never let an exception out (libFuzzer reports one as a crash). The
// result must be either settings or errors, never both nor neither, and loaded settings must
// satisfy what the loader promises (docs/configuration.md). Every error is one line without
// control characters: what the file quotes is escaped (docs/fuzzing.md, O2).
//
// With -DPGPILOT_FUZZ_TOML_INSTRUMENTED=ON toml++ is compiled header-only into pgpilot_config
// (test/fuzz/CMakeLists.txt), so the TOML parser is instrumented and fuzzed too.

#include <cmath>
#include <set>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::config;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const load_result r = load_string(text, "fuzz.toml");

    FUZZ_CHECK(r.value.has_value() != !r.errors.empty());
    // [auth] hba_file and passwd_file: their errors name those files.
    const bool reads_files = text.find("_file") != std::string_view::npos;
    for (const auto& e : r.errors) {
        FUZZ_CHECK(e.substr(0, 10) == "fuzz.toml:" || reads_files);
        for (std::size_t i = 0; i < e.size(); ++i) {
            const auto c = static_cast<unsigned char>(e[i]);
            FUZZ_CHECK(c >= 0x20 && c != 0x7f);
            if (c == 0xc2 && i + 1 < e.size())
                FUZZ_CHECK(static_cast<unsigned char>(e[i + 1]) < 0x80 ||
                           static_cast<unsigned char>(e[i + 1]) > 0x9f);
        }
    }
    if (!r) return 0;

    const settings& s = *r.value;
    FUZZ_CHECK(s.source == "fuzz.toml");
    FUZZ_CHECK(!s.backends.empty());
    for (const auto& b : s.backends) {
        FUZZ_CHECK(!b.host.empty() && b.port >= 1);
        FUZZ_CHECK(std::isfinite(b.weight) && b.weight >= 0);
        FUZZ_CHECK(std::string_view(to_string(b.flag)) != "?");
    }
    std::set<std::string> names;
    for (const auto& u : s.users) {
        FUZZ_CHECK(!u.name.empty());
        FUZZ_CHECK(names.insert(u.name).second);
        FUZZ_CHECK(s.find_user(u.name) == &u);
    }
    FUZZ_CHECK(s.server.port >= 1 && s.server.workers <= 256);
    for (const auto& a : s.server.listen_addresses) {
        FUZZ_CHECK(!a.empty() && a.find_first_of(" \t,") == std::string::npos);
        FUZZ_CHECK(a != "*" || s.server.listen_addresses.size() == 1);
    }
    FUZZ_CHECK(s.pool.max_pool >= 0);
    FUZZ_CHECK(std::isfinite(s.pool.connection_life_time) && s.pool.connection_life_time >= 0);
    FUZZ_CHECK(std::isfinite(s.pool.connect_timeout) && s.pool.connect_timeout >= 0);
    FUZZ_CHECK(std::string_view(to_string(s.auth.method)) != "?");
    FUZZ_CHECK(std::string_view(to_string(s.server.log)) != "?");
    return 0;
}
