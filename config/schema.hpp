#pragma once

// Internal to pgpilot_config: declarative TOML schema machinery. A section is a list of
// key_spec entries built with the *_key factories below; config.cpp lists the sections.
// Includes toml++, so keep it out of public headers.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace pgpilot::config::detail {

// Control characters as escapes, so that text from a config file stays on one line and cannot
// drive a terminal: \n \r \t, other C0 controls and DEL as \xHH, C1 controls (UTF-8 C2 80..C2 9F)
// as \u00HH. Backslashes and everything else (other UTF-8, invalid bytes) are kept as they are.
std::string escape_control_characters(std::string_view text);

// Collects located errors and renders them as "FILE:LINE:COL: KEY: message", one line each:
// control characters anywhere in it are escaped (escape_control_characters).
class diagnostics {
  public:
    explicit diagnostics(std::string source) : source_(std::move(source)) {}

    // key may be empty, then the line reads "FILE:LINE:COL: message".
    void error(const toml::source_position& where, std::string_view key, std::string_view message);
    bool empty() const { return entries_.empty(); }
    std::size_t size() const { return entries_.size(); }
    // All errors, ordered by position (ties keep the order they were reported in).
    std::vector<std::string> take();

  private:
    struct entry {
        toml::source_position where;
        std::string text;
    };
    std::string source_;
    std::vector<entry> entries_;
};

// "a string", "an integer", ... for messages.
const char* describe(toml::node_type type);

// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b);

// A value being stored: the node, its path for messages ("backend[1].port") and the sink.
struct field {
    const toml::node& node;
    const std::string& path;
    diagnostics& diag;

    void error(std::string_view message) const { diag.error(node.source().begin, path, message); }
    // Reports "expected <what>, got <type>" and returns false.
    bool type_error(std::string_view what) const {
        error(fmt::format("expected {}, got {}", what, describe(node.type())));
        return false;
    }
};

// One allowed key of a table, and how to store its value into an S.
template <class S>
struct key_spec {
    std::string_view name;
    std::function<void(S&, const field&)> store;
    bool required = false;
};

template <class S>
using key_table = std::vector<key_spec<S>>;

// A name spelled in the file and the enumerator it means (matched case-insensitively).
template <class E>
struct enum_name {
    std::string_view name;
    E value;
};

// Upper bound meaning "no bound other than the member type's".
inline constexpr std::int64_t no_max = std::numeric_limits<std::int64_t>::max();

// An integer key stored into an integral member, checked against [min, max].
template <class S, class T>
key_spec<S> integer_key(std::string_view name, T S::*member, std::int64_t min,
                        std::int64_t max = no_max) {
    static_assert(std::is_integral_v<T> && sizeof(T) < sizeof(std::int64_t));
    return {name, [member, min, max](S& target, const field& f) {
                const auto* v = f.node.as_integer();
                if (!v) {
                    f.type_error("an integer");
                    return;
                }
                const std::int64_t value = v->get();
                const std::int64_t type_max = std::numeric_limits<T>::max();
                if (max != no_max && (value < min || value > max)) {
                    f.error(fmt::format("must be between {} and {}, got {}", min, max, value));
                } else if (value < min) {
                    f.error(fmt::format("must be at least {}, got {}", min, value));
                } else if (value > type_max) {
                    f.error(fmt::format("must be at most {}, got {}", type_max, value));
                } else {
                    target.*member = static_cast<T>(value);
                }
            }};
}

// A number key (integer or float) stored into a double, finite and at least min.
template <class S>
key_spec<S> number_key(std::string_view name, double S::*member, double min) {
    return {name, [member, min](S& target, const field& f) {
                double value = 0;
                if (const auto* i = f.node.as_integer()) {
                    value = static_cast<double>(i->get());
                } else if (const auto* d = f.node.as_floating_point()) {
                    value = d->get();
                } else {
                    f.type_error("a number");
                    return;
                }
                if (!std::isfinite(value)) {
                    f.error(fmt::format("must be a finite number, got {}", value));
                } else if (value < min) {
                    f.error(fmt::format("must be at least {}, got {}", min, value));
                } else {
                    target.*member = value;
                }
            }};
}

// An array of strings (each non-empty), stored in order.
template <class S>
key_spec<S> string_list_key(std::string_view name, std::vector<std::string> S::*member) {
    return {name, [member](S& target, const field& f) {
                const auto* arr = f.node.as_array();
                if (!arr) {
                    f.type_error("an array of strings");
                    return;
                }
                std::vector<std::string> values;
                for (const auto& element : *arr) {
                    const auto* v = element.as_string();
                    if (!v || v->get().empty()) {
                        f.error("expected an array of non-empty strings");
                        return;
                    }
                    values.push_back(v->get());
                }
                target.*member = std::move(values);
            }};
}

// Whether a string key may be "".
enum class emptiness { allowed, rejected };

// A string key stored as is.
template <class S>
key_spec<S> string_key(std::string_view name, std::string S::*member,
                       emptiness empty = emptiness::allowed) {
    return {name, [member, empty](S& target, const field& f) {
                const auto* v = f.node.as_string();
                if (!v) {
                    f.type_error("a string");
                    return;
                }
                if (empty == emptiness::rejected && v->get().empty()) {
                    f.error("must not be empty");
                    return;
                }
                target.*member = v->get();
            }};
}

// A string key naming one of names (case-insensitive), stored as the enumerator.
template <class S, class E, std::size_t N>
key_spec<S> enum_key(std::string_view name, E S::*member, const enum_name<E> (&names)[N]) {
    std::span<const enum_name<E>> choices{names};
    return {
        name, [member, choices](S& target, const field& f) {
            const auto* v = f.node.as_string();
            if (!v) {
                f.type_error("a string");
                return;
            }
            std::string expected;
            for (const auto& choice : choices) {
                if (iequals(choice.name, v->get())) {
                    target.*member = choice.value;
                    return;
                }
                expected += expected.empty() ? "" : ", ";
                expected += choice.name;
            }
            f.error(fmt::format("unknown value \"{}\", expected one of: {}", v->get(), expected));
        }};
}

// A boolean key (true or false; no strings or numbers).
template <class S>
key_spec<S> bool_key(std::string_view name, bool S::*member) {
    return {name, [member](S& target, const field& f) {
                const auto* v = f.node.as_boolean();
                if (!v) {
                    f.type_error("a boolean (true or false)");
                    return;
                }
                target.*member = v->get();
            }};
}

// What optional_key's inner key stores into.
template <class T>
struct value_holder {
    T value{};
};

// A key whose absence is meaningful: stored into a std::optional<T> member when valid, checked
// by `inner` (any of the factories above, on value_holder<T>::value).
template <class S, class T>
key_spec<S> optional_key(std::optional<T> S::*member, key_spec<value_holder<T>> inner) {
    return {inner.name,
            [member, store = std::move(inner.store)](S& target, const field& f) {
                value_holder<T> h;
                const std::size_t errors = f.diag.size();
                store(h, f);
                if (f.diag.size() == errors) target.*member = std::move(h.value);
            },
            inner.required};
}

// A key of a struct nested in S (at S::*outer), as if it were S's own.
template <class S, class Inner>
key_spec<S> nested_key(Inner S::*outer, key_spec<Inner> inner) {
    return {inner.name,
            [outer, store = std::move(inner.store)](S& target, const field& f) {
                store(target.*outer, f);
            },
            inner.required};
}

// Marks a key as required: its absence is reported at the table.
template <class S>
key_spec<S> required(key_spec<S> spec) {
    spec.required = true;
    return spec;
}

// Stores every key of tbl into target, reporting unknown and missing keys.
template <class S>
void apply_table(S& target, const toml::table& tbl, const std::string& path,
                 const key_table<S>& keys, diagnostics& diag) {
    for (auto&& [key, node] : tbl) {
        const std::string key_path = path + "." + std::string(key.str());
        const key_spec<S>* spec = nullptr;
        for (const auto& candidate : keys) {
            if (candidate.name == key.str()) spec = &candidate;
        }
        if (!spec) {
            if (node.is_table()) {
                diag.error(node.source().begin, key_path, "unknown table");
            } else {
                diag.error(key.source().begin, key_path, "unknown key");
            }
            continue;
        }
        spec->store(target, field{node, key_path, diag});
    }
    for (const auto& spec : keys) {
        if (spec.required && !tbl.contains(spec.name)) {
            diag.error(tbl.source().begin, path + "." + std::string(spec.name),
                       "required key is missing");
        }
    }
}

// One top-level table of Root: [name] or [[name]].
template <class Root>
struct section_spec {
    std::string_view name;
    std::function<void(Root&, const toml::node&, diagnostics&)> store;
    std::vector<std::string_view> keys;  // for known_keys()
};

template <class S>
std::vector<std::string_view> key_names(const key_table<S>& keys) {
    std::vector<std::string_view> names;
    for (const auto& spec : keys)
        names.push_back(spec.name);
    return names;
}

// A [name] section stored into Root::*member.
template <class Root, class S>
section_spec<Root> table_section(std::string_view name, S Root::*member, key_table<S> keys) {
    auto names = key_names(keys);
    return {name,
            [name, member, keys = std::move(keys)](Root& root, const toml::node& node,
                                                   diagnostics& diag) {
                const std::string path(name);
                const auto* tbl = node.as_table();
                if (!tbl) {
                    diag.error(node.source().begin, path,
                               fmt::format("expected a table ([{}]), got {}", name,
                                           describe(node.type())));
                    return;
                }
                apply_table(root.*member, *tbl, path, keys, diag);
            },
            std::move(names)};
}

// An array of tables at `path` ([[name]] or [[table.name]]): each table appends one S.
template <class S>
void apply_array(std::vector<S>& target, const toml::node& node, const std::string& path,
                 const key_table<S>& keys, diagnostics& diag) {
    const auto* arr = node.as_array();
    if (!arr) {
        diag.error(node.source().begin, path,
                   fmt::format("expected an array of tables ([[{}]]), got {}", path,
                               describe(node.type())));
        return;
    }
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& element = *arr->get(i);
        const std::string element_path = fmt::format("{}[{}]", path, i);
        const auto* tbl = element.as_table();
        if (!tbl) {
            diag.error(element.source().begin, element_path,
                       fmt::format("expected a table, got {}", describe(element.type())));
            continue;
        }
        S value{};
        apply_table(value, *tbl, element_path, keys, diag);
        target.push_back(std::move(value));
    }
}

// A [[name]] section: each table appends one S to Root::*member.
template <class Root, class S>
section_spec<Root> array_section(std::string_view name, std::vector<S> Root::*member,
                                 key_table<S> keys) {
    auto names = key_names(keys);
    return {name,
            [name, member, keys = std::move(keys)](Root& root, const toml::node& node,
                                                   diagnostics& diag) {
                apply_array(root.*member, node, std::string(name), keys, diag);
            },
            std::move(names)};
}

// A [[table.name]] array of tables inside a table S, stored into S::*member.
template <class S, class T>
key_spec<S> table_array_key(std::string_view name, std::vector<T> S::*member, key_table<T> keys) {
    return {name, [member, keys = std::move(keys)](S& target, const field& f) {
                apply_array(target.*member, f.node, f.path, keys, f.diag);
            }};
}

// Stores every top-level table of doc into root, reporting unknown ones.
template <class Root>
void apply_root(Root& root, const toml::table& doc, const std::vector<section_spec<Root>>& sections,
                diagnostics& diag) {
    for (auto&& [key, node] : doc) {
        const section_spec<Root>* spec = nullptr;
        for (const auto& candidate : sections) {
            if (candidate.name == key.str()) spec = &candidate;
        }
        if (spec) {
            spec->store(root, node, diag);
        } else if (node.is_table() || node.is_array_of_tables()) {
            diag.error(node.source().begin, key.str(), "unknown table");
        } else {
            diag.error(key.source().begin, key.str(), "unknown key");
        }
    }
}

}  // namespace pgpilot::config::detail
