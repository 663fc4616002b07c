#pragma once

// pgpool.conf to pgpilot.toml (`pgpilot --import-pgpool FILE`, docs/configuration.md
// "Importing a pgpool.conf"): every setting of a pgpool-II streaming-replication setup is
// carried over where pgpilot has it, and every other one is named with the reason it is not.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgpilot::config {

struct pgpool_import {
    std::string toml;  ///< the configuration; empty when there are errors
    /// "FILE:LINE: name: what became of it", for every setting that is not carried over as it
    /// is (dropped, changed in meaning or unit, overridden by a later line), in line order.
    std::vector<std::string> notes;
    /// "FILE:LINE: name: message": a line that is not a setting, a value of the wrong kind,
    /// backends that do not number 0, 1, 2, ... Nothing is written then.
    std::vector<std::string> errors;
    explicit operator bool() const { return errors.empty(); }
};

/// Reads another file named by the configuration (pool_passwd, resolved against the
/// configuration file's directory): its text, or nullopt when it cannot be read.
using file_reader = std::function<std::optional<std::string>(const std::string& path)>;

/// Converts the text of a pgpool.conf (PostgreSQL's configuration file syntax: `name = value`,
/// single-quoted strings, `#` comments; names case-insensitive; the last setting of a name
/// wins). `source` names the file in messages and locates pool_passwd. The result passes
/// load_string().
pgpool_import import_pgpool_conf(std::string_view text, const std::string& source,
                                 const file_reader& read_file);

}  // namespace pgpilot::config
