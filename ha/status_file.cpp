#include "ha/status_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pgpilot::ha {

std::string format_status_file(const std::vector<router::node_state>& nodes) {
    std::string text;
    for (const auto& n : nodes)
        text += n.status == router::node_status::down ? "down\n" : "up\n";
    return text;
}

std::optional<std::vector<bool>> parse_status_file(std::string_view text, std::size_t node_count,
                                                   std::string& error) {
    std::vector<bool> down;
    while (!text.empty()) {
        auto eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
            line.remove_suffix(1);
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
            line.remove_prefix(1);
        if (line.empty()) continue;
        if (line == "down") {
            down.push_back(true);
        } else if (line == "up" || line == "unused") {
            down.push_back(false);
        } else {
            error = "line " + std::to_string(down.size() + 1) + " is \"" + std::string(line) +
                    "\", not up, down or unused";
            return std::nullopt;
        }
    }
    if (down.size() != node_count) {
        error = "it describes " + std::to_string(down.size()) + " nodes, the configuration has " +
                std::to_string(node_count);
        return std::nullopt;
    }
    return down;
}

std::optional<std::string> read_status_file(const std::string& path, std::string& error) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        if (errno != ENOENT) error = std::strerror(errno);
        return std::nullopt;
    }
    std::string text;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, f))
        text.append(buf, n);
    if (std::ferror(f)) error = std::strerror(errno);
    std::fclose(f);
    if (!error.empty()) return std::nullopt;
    return text;
}

bool write_status_file(const std::string& path, std::string_view text, std::string& error) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = tmp + ": " + std::strerror(errno);
        return false;
    }
    bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size());
    if (!ok) error = tmp + ": " + std::strerror(errno);
    // The status must survive a crash of the machine, not only of pgpilot.
    if (ok && ::fsync(fd) != 0) {
        error = tmp + ": " + std::strerror(errno);
        ok = false;
    }
    ::close(fd);
    if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
        error = path + ": " + std::strerror(errno);
        ok = false;
    }
    if (!ok) ::unlink(tmp.c_str());
    return ok;
}

}  // namespace pgpilot::ha
