#include "router/node_command.hpp"

#include <charconv>

#include "router/sql_lexer.hpp"

namespace pgpilot::router {

std::optional<node_command> parse_node_command(std::string_view text) {
    // Cheap test first: every Query passes here.
    raw_token first;
    std::size_t pos = 0;
    do {
        first = next_token(text, pos);
        pos = first.end;
    } while (first.kind == token_kind::comment);
    if (first.kind != token_kind::word || first.end - first.begin != 6) return std::nullopt;
    for (std::size_t i = 0; i < 6; ++i)
        if ((text[first.begin + i] & ~0x20) != "PGPOOL"[i]) return std::nullopt;
    node_command c;
    lexed_query q(text);
    const auto& statements = q.statements();
    const char* usage =
        "syntax error: expected PGPOOL ATTACH NODE n, PGPOOL DETACH NODE n [GRACEFULLY] or "
        "PGPOOL PROMOTE NODE n [SWITCHOVER]";
    if (statements.size() != 1) {
        c.error = "PGPOOL statements must be sent alone";
        return c;
    }
    const auto& t = statements[0].tokens;
    if (t.size() < 4 || !t[2].is("NODE") || t[3].kind != token_kind::number) {
        c.error = usage;
        return c;
    }
    if (t[1].is("ATTACH"))
        c.what = node_command::action::attach;
    else if (t[1].is("DETACH"))
        c.what = node_command::action::detach;
    else if (t[1].is("PROMOTE"))
        c.what = node_command::action::promote;
    else {
        c.error = usage;
        return c;
    }
    const auto digits = t[3].text;
    int id = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
    if (ec != std::errc{} || end != digits.data() + digits.size() || id < 0) {
        c.error = "node id must be a non-negative integer, got " + std::string(digits);
        return c;
    }
    c.node = id;
    if (t.size() == 5 && c.what == node_command::action::detach && t[4].is("GRACEFULLY"))
        c.gracefully = true;
    else if (t.size() == 5 && c.what == node_command::action::promote && t[4].is("SWITCHOVER"))
        c.switchover = true;
    else if (t.size() != 4)
        c.error = usage;
    return c;
}

std::string to_string(const node_command& c) {
    std::string s = "PGPOOL ";
    switch (c.what) {
        case node_command::action::attach:
            s += "ATTACH";
            break;
        case node_command::action::detach:
            s += "DETACH";
            break;
        case node_command::action::promote:
            s += "PROMOTE";
            break;
    }
    s += " NODE " + std::to_string(c.node);
    if (c.gracefully) s += " GRACEFULLY";
    if (c.switchover) s += " SWITCHOVER";
    return s;
}

}  // namespace pgpilot::router
