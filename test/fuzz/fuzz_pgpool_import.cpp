// Fuzzes config::import_pgpool_conf (pgpilot --import-pgpool) on arbitrary text, with the
// pool_passwd and pool_hba.conf it may read taken from the same input (after a NUL byte: the
// part before is pgpool.conf, the part after is both other files), so the pool_passwd and
// pg_hba.conf parsers behind it are fuzzed too.
//
// It must never crash or let an exception out. The result is a configuration or errors, never
// both nor neither; notes and errors are single lines without control characters (they quote
// the files); a configuration, once its hba_file line is dropped (that file is not on disk),
// loads (the import promises output that passes --check).

#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "config/pgpool_import.hpp"
#include "test/fuzz/fuzz_common.hpp"

using namespace pgpilot::config;

namespace {

void check_line(const std::string& text) {
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        FUZZ_CHECK(c >= 0x20 && c != 0x7f);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto nul = input.find('\0');
    const auto conf = input.substr(0, nul);
    const std::string other(nul == std::string_view::npos ? std::string_view{}
                                                          : input.substr(nul + 1));
    const file_reader read = [&](const std::string& path) -> std::optional<std::string> {
        if (path == "/etc/pgpool-II/pool_passwd" || path == "/etc/pgpool-II/pool_hba.conf")
            return other;
        return std::nullopt;
    };
    const auto r = import_pgpool_conf(conf, "/etc/pgpool-II/pgpool.conf", read);

    FUZZ_CHECK(r.toml.empty() != r.errors.empty());
    for (const auto& e : r.errors)
        check_line(e);
    for (const auto& n : r.notes)
        check_line(n);
    if (!r) return 0;
    std::string toml = r.toml;
    const std::string hba_line = "hba_file = '/etc/pgpool-II/pool_hba.conf'\n";
    if (const auto at = toml.find(hba_line); at != std::string::npos)
        toml.erase(at, hba_line.size());
    const auto loaded = load_string(toml, "imported.toml");
    FUZZ_CHECK(loaded);
    FUZZ_CHECK(!loaded.value->backends.empty());
    return 0;
}
