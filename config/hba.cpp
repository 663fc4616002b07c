#include "config/hba.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "config/config.hpp"
#include "config/lines.hpp"
#include "config/schema.hpp"

namespace pgpilot::config {

namespace {

/// One comma-separated element of a field; quoted ones are names, never keywords.
struct token {
    std::string text;
    bool quoted = false;
};
/// A whitespace-separated field: its comma-separated tokens.
struct field {
    std::vector<token> tokens;
    const std::string& text() const { return tokens.front().text; }
};

/// The fields of one line: "double quotes" keep spaces, commas and `#`, `#` starts a comment
/// elsewhere. Sets *error for an unterminated quote.
std::vector<field> split_fields(std::string_view line, std::string* error) {
    std::vector<field> out;
    std::size_t i = 0;
    auto space = [&] { return std::isspace(static_cast<unsigned char>(line[i])); };
    while (i < line.size()) {
        if (space()) {
            ++i;
            continue;
        }
        if (line[i] == '#') break;
        field f;
        f.tokens.emplace_back();
        while (i < line.size() && !space() && line[i] != '#') {
            if (line[i] == '"') {
                const auto end = line.find('"', i + 1);
                if (end == std::string_view::npos) {
                    *error = "unterminated quoted string";
                    return {};
                }
                f.tokens.back().text += line.substr(i + 1, end - i - 1);
                f.tokens.back().quoted = true;
                i = end + 1;
            } else if (line[i] == ',') {
                f.tokens.emplace_back();
                ++i;
            } else {
                f.tokens.back().text += line[i++];
            }
        }
        out.push_back(std::move(f));
    }
    return out;
}

/// The names of a database or user field into `names`; an unquoted keyword of `keywords`
/// sets its flag instead.
void names_of(const field& f, std::vector<std::string>& names,
              std::initializer_list<std::pair<std::string_view, bool*>> keywords) {
    for (const auto& t : f.tokens) {
        const auto k = std::find_if(keywords.begin(), keywords.end(), [&](const auto& kw) {
            return !t.quoted && kw.first == t.text;
        });
        if (k != keywords.end())
            *k->second = true;
        else
            names.push_back(t.text);
    }
}

bool parse_ip(const std::string& text, hba_rule& r) {
    r.address = {};
    if (::inet_pton(AF_INET, text.c_str(), r.address.data()) == 1) {
        r.ipv6 = false;
        return true;
    }
    if (::inet_pton(AF_INET6, text.c_str(), r.address.data()) == 1) {
        r.ipv6 = true;
        return true;
    }
    return false;
}

/// The prefix length of a netmask (255.255.255.0 -> 24), or -1 if it is not one.
int mask_bits(const std::string& text, bool ipv6) {
    hba_rule m;
    if (!parse_ip(text, m) || m.ipv6 != ipv6) return -1;
    int bits = 0;
    bool ended = false;
    for (std::size_t i = 0; i < (ipv6 ? 16u : 4u); ++i) {
        for (int b = 7; b >= 0; --b) {
            const bool set = (m.address[i] >> b) & 1;
            if (set && ended) return -1;
            if (set)
                ++bits;
            else
                ended = true;
        }
    }
    return bits;
}

std::optional<hba_rule> parse_rule(const std::vector<field>& f, std::string* error) {
    hba_rule r;
    const auto& type = f[0].text();
    if (type == "local")
        r.type = hba_rule::connection::local;
    else if (type == "host")
        r.type = hba_rule::connection::host;
    else if (type == "hostssl")
        r.type = hba_rule::connection::hostssl;
    else if (type == "hostnossl")
        r.type = hba_rule::connection::hostnossl;
    else {
        *error =
            fmt::format("invalid connection type \"{}\" (local, host, hostssl, hostnossl)", type);
        return std::nullopt;
    }
    const bool local = r.type == hba_rule::connection::local;
    const std::size_t method_at = local ? 3 : 4;
    if (f.size() < method_at + 1) {
        *error = local ? "expected: local DATABASE USER METHOD"
                       : fmt::format("expected: {} DATABASE USER ADDRESS METHOD", type);
        return std::nullopt;
    }
    for (const auto& d : f[1].tokens) {
        if (!d.quoted &&
            (d.text == "replication" || d.text == "samerole" || d.text == "samegroup")) {
            *error = fmt::format("database \"{}\" is not supported by pgpilot", d.text);
            return std::nullopt;
        }
        if (!d.quoted && d.text.starts_with("@")) {
            *error = "database lists from files (@file) are not supported by pgpilot";
            return std::nullopt;
        }
    }
    for (const auto& u : f[2].tokens) {
        if (!u.quoted && (u.text.starts_with("+") || u.text.starts_with("@"))) {
            *error =
                fmt::format("user \"{}\": groups and files are not supported by pgpilot", u.text);
            return std::nullopt;
        }
    }
    names_of(f[1], r.databases, {{"all", &r.all_databases}, {"sameuser", &r.same_user}});
    names_of(f[2], r.users, {{"all", &r.all_users}});
    std::size_t at = 3;
    if (!local) {
        const auto& address = f[3].text();
        if (address == "all") {
            r.any_address = true;
        } else if (address == "samehost" || address == "samenet") {
            *error = fmt::format("address \"{}\" is not supported by pgpilot", address);
            return std::nullopt;
        } else {
            r.any_address = false;
            const auto slash = address.find('/');
            if (!parse_ip(address.substr(0, slash), r)) {
                *error = fmt::format(
                    "invalid IP address \"{}\" (pgpilot does not resolve host "
                    "names)",
                    address.substr(0, slash));
                return std::nullopt;
            }
            const int max_bits = r.ipv6 ? 128 : 32;
            if (slash != std::string::npos) {
                const auto bits = std::string_view(address).substr(slash + 1);
                auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), r.prefix);
                if (ec != std::errc{} || end != bits.data() + bits.size() || r.prefix < 0 ||
                    r.prefix > max_bits) {
                    *error = fmt::format("invalid CIDR mask in address \"{}\"", address);
                    return std::nullopt;
                }
            } else if (f.size() > 5 && (r.prefix = mask_bits(f[4].text(), r.ipv6)) >= 0) {
                at = 4;  // ADDRESS MASK
            } else if (f.size() > 5) {
                *error = fmt::format("invalid IP mask \"{}\"", f[4].text());
                return std::nullopt;
            } else {
                r.prefix = max_bits;
            }
        }
        ++at;
    }
    r.method_name = f[at].text();
    static const std::pair<std::string_view, std::optional<auth_method>> methods[] = {
        {"trust", auth_method::trust},
        {"reject", std::nullopt},
        {"password", auth_method::password},
        {"md5", auth_method::md5},
        {"scram-sha-256", auth_method::scram_sha_256},
    };
    const auto m = std::find_if(std::begin(methods), std::end(methods),
                                [&](const auto& e) { return e.first == r.method_name; });
    if (m == std::end(methods)) {
        *error = fmt::format(
            "authentication method \"{}\" is not supported by pgpilot (trust, "
            "reject, password, md5, scram-sha-256)",
            r.method_name);
        return std::nullopt;
    }
    r.method = m->second;
    if (f.size() > at + 1) {
        *error = fmt::format("authentication options (\"{}\") are not supported by pgpilot",
                             f[at + 1].text());
        return std::nullopt;
    }
    return r;
}

bool has(const std::vector<std::string>& names, std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

hba_parse parse_hba(std::string_view text, const std::string& source) {
    hba_parse out;
    detail::for_each_line(text, [&](int line_no, std::string_view line) {
        std::string error;
        const auto fields = split_fields(line, &error);
        if (error.empty() && fields.empty()) return;
        std::optional<hba_rule> rule;
        if (error.empty()) rule = parse_rule(fields, &error);
        if (!rule) {
            out.errors.push_back(detail::escape_control_characters(
                fmt::format("{}:{}: {}", source, line_no, error)));
            return;
        }
        rule->line = line_no;
        out.rules.push_back(std::move(*rule));
    });
    return out;
}

const hba_rule* match_hba(const std::vector<hba_rule>& rules, const client_origin& from,
                          std::string_view database, std::string_view user) {
    for (const auto& r : rules) {
        using c = hba_rule::connection;
        if ((r.type == c::local) != from.local) continue;
        if (r.type == c::hostssl) continue;  // pgpilot has no TLS: no client connects with SSL
        if (!r.all_databases && !(r.same_user && database == user) && !has(r.databases, database))
            continue;
        if (!r.all_users && !has(r.users, user)) continue;
        if (!r.any_address) {
            if (r.ipv6 != from.ipv6) continue;
            bool same = true;
            for (int bit = 0; bit < r.prefix && same; ++bit) {
                const auto byte = std::size_t(bit / 8);
                const auto mask = std::uint8_t(0x80 >> (bit % 8));
                same = (r.address[byte] & mask) == (from.address[byte] & mask);
            }
            if (!same) continue;
        }
        return &r;
    }
    return nullptr;
}

}  // namespace pgpilot::config
