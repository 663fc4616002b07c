#include "proxy/pool.hpp"

#include <sys/socket.h>

#include <algorithm>

#include <fmt/format.h>

#include "protocol/messages.hpp"

namespace pgpilot::proxy {

namespace {
bool expired(const ha::backend_connection& c, std::chrono::steady_clock::duration life_time,
             std::chrono::steady_clock::time_point now) {
    return life_time.count() > 0 && now - c.created >= life_time;
}

void say_goodbye(ha::backend_connection& c) {
    // Best effort, non-blocking: a Terminate lets the backend exit without logging an
    // "unexpected EOF on client connection".
    std::string bye;
    protocol::append_terminate(bye);
    error_code ec;
    c.socket.non_blocking(true, ec);
    c.socket.send(net::buffer(bye), 0, ec);
    c.socket.close(ec);
}
}  // namespace

std::string pool_key(int node, const ha::startup_params& params) {
    // Sorted, and each name and value length-prefixed, so that no two different parameter
    // sets share a key whatever characters their values hold.
    auto sorted = params;
    std::sort(sorted.begin(), sorted.end());
    std::string key = std::to_string(node);
    for (const auto& [k, v] : sorted) {
        key += fmt::format("|{}:{}{}:{}", k.size(), k, v.size(), v);
    }
    return key;
}

bool looks_closed(ha::backend_connection& conn) {
    char byte;
    ssize_t n = ::recv(conn.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;                            // orderly close
    if (n > 0) return true;                             // unsolicited data: not in a known state
    return !(errno == EAGAIN || errno == EWOULDBLOCK);  // reset or other error
}

std::unique_ptr<ha::backend_connection> idle_pool::take(
    const std::string& key, std::chrono::steady_clock::duration life_time) {
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    auto now = std::chrono::steady_clock::now();
    while (!list.empty()) {
        auto conn = std::move(list.back());
        list.pop_back();
        if (expired(*conn, life_time, now)) {
            say_goodbye(*conn);
            continue;
        }
        if (looks_closed(*conn)) {
            error_code ec;
            conn->socket.close(ec);
            continue;
        }
        if (list.empty()) idle_.erase(it);
        return conn;
    }
    idle_.erase(it);
    return nullptr;
}

bool idle_pool::put(const std::string& key, std::unique_ptr<ha::backend_connection> conn,
                    std::size_t max_pool) {
    auto& list = idle_[key];
    if (list.size() >= max_pool) {
        say_goodbye(*conn);
        if (list.empty()) idle_.erase(key);
        return false;
    }
    conn->last_used = std::chrono::steady_clock::now();
    list.push_back(std::move(conn));
    return true;
}

std::size_t idle_pool::sweep(std::chrono::steady_clock::duration life_time) {
    std::size_t closed = 0;
    auto now = std::chrono::steady_clock::now();
    for (auto it = idle_.begin(); it != idle_.end();) {
        auto& list = it->second;
        auto dead = std::remove_if(list.begin(), list.end(), [&](auto& c) {
            if (expired(*c, life_time, now)) {
                say_goodbye(*c);
                return true;
            }
            if (looks_closed(*c)) {
                error_code ec;
                c->socket.close(ec);
                return true;
            }
            return false;
        });
        closed += std::size_t(list.end() - dead);
        list.erase(dead, list.end());
        it = list.empty() ? idle_.erase(it) : std::next(it);
    }
    return closed;
}

void idle_pool::clear() {
    for (auto& [key, list] : idle_)
        for (auto& c : list)
            say_goodbye(*c);
    idle_.clear();
}

std::size_t idle_pool::size() const {
    std::size_t n = 0;
    for (const auto& [key, list] : idle_)
        n += list.size();
    return n;
}

}  // namespace pgpilot::proxy
