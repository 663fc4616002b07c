#pragma once

// Client authentication rules in pg_hba.conf / pgpool-II pool_hba.conf form ([auth] hba_file,
// docs/configuration.md "Host-based authentication"): which method a client is asked for, by
// connection type, database, user and address; the first matching line decides.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgpilot::config {

enum class auth_method;

struct hba_rule {
    enum class connection { local, host, hostssl, hostnossl };
    int line = 0;
    connection type = connection::host;
    bool all_databases = false;          ///< the keyword all
    bool same_user = false;              ///< the keyword sameuser: the database named as the user
    std::vector<std::string> databases;  ///< names (a quoted keyword is a name)
    bool all_users = false;
    std::vector<std::string> users;
    bool any_address = true;  ///< "all" (and every local line)
    bool ipv6 = false;
    std::array<std::uint8_t, 16> address{};
    int prefix = 0;                     ///< bits of `address` that must match
    std::optional<auth_method> method;  ///< nullopt: reject
    std::string method_name;            ///< as written, for messages
};

/// Parses the text of an hba file. Errors read "SOURCE:LINE: message"; rules with errors are
/// left out.
struct hba_parse {
    std::vector<hba_rule> rules;
    std::vector<std::string> errors;
};
hba_parse parse_hba(std::string_view text, const std::string& source);

/// Where a client connects from.
struct client_origin {
    bool local = false;  ///< over the Unix socket
    bool ipv6 = false;
    std::array<std::uint8_t, 16> address{};  ///< IPv4 in the first 4 bytes
};

/// The first rule that matches, or nullptr (the client is refused).
const hba_rule* match_hba(const std::vector<hba_rule>& rules, const client_origin& from,
                          std::string_view database, std::string_view user);

}  // namespace pgpilot::config
