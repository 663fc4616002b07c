// pgpool-II placeholders, and commands run as child processes on an io_context.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include "ha/command.hpp"

using namespace pgpilot;
using namespace pgpilot::ha;

namespace {

placeholder_values sample_values() {
    placeholder_values v;
    v.node = {0, "db0", 5432, "/data/0"};
    v.new_main = {2, "db2", 5434, "/data/2"};
    v.old_main = 0;
    v.old_primary = {0, "db0", 5432, "/data/0"};
    return v;
}

command_result run(const std::string& command) {
    net::io_context ctx;
    auto f = net::co_spawn(ctx, run_command(command), net::use_future);
    ctx.run();
    return f.get();
}

}  // namespace

TEST_CASE("every pgpool-II failover placeholder is replaced", "[ha][command]") {
    const auto v = sample_values();
    CHECK(expand_placeholders("failover.sh %d %h %p %D %m %H %M %P %r %R %N %S %%", v) ==
          "failover.sh 0 db0 5432 /data/0 2 db2 0 0 5434 /data/2 db0 5432 %");
    CHECK(expand_placeholders("no placeholders", v) == "no placeholders");
    CHECK(expand_placeholders("%d%d%%%d", v) == "00%0");
    // Unknown placeholders and a final lone % are dropped, as pgpool-II does.
    CHECK(expand_placeholders("a %x b %", v) == "a  b ");
    CHECK(expand_placeholders("", v).empty());
}

TEST_CASE("missing nodes give -1 and empty values", "[ha][command]") {
    placeholder_values v;
    v.node = {1, "db1", 5433, ""};
    CHECK(expand_placeholders("[%m] [%H] [%r] [%R] [%D] [%P] [%N] [%S] [%M]", v) ==
          "[-1] [] [] [] [] [-1] [] [] [-1]");
}

TEST_CASE("a command's exit status, stdout and stderr are collected", "[ha][command]") {
    auto r = run("echo out; echo err >&2; exit 3");
    CHECK(r.started);
    CHECK(r.exit_code == 3);
    CHECK(r.signal == 0);
    CHECK_FALSE(r.ok());
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK(r.describe() == "exit status 3");

    r = run("true");
    CHECK(r.ok());
    CHECK(r.describe() == "exit status 0");
    CHECK(r.out.empty());
}

TEST_CASE("a command killed by a signal is reported as such", "[ha][command]") {
    auto r = run("kill -9 $$");
    CHECK(r.started);
    CHECK(r.signal == 9);
    CHECK_FALSE(r.ok());
    CHECK(r.describe() == "killed by signal 9");
}

TEST_CASE("commands get default signals, no stdin and none of pgpilot's descriptors",
          "[ha][command]") {
    // pgpilot ignores SIGPIPE; a command must not inherit that.
    auto previous = std::signal(SIGPIPE, SIG_IGN);
    int leaked = ::open("/dev/null", O_RDONLY);  // not O_CLOEXEC
    REQUIRE(leaked > 2);
    auto r = run("grep SigIgn /proc/self/status; cat; ls /proc/self/fd | tr '\\n' ' '");
    ::close(leaked);
    std::signal(SIGPIPE, previous);
    REQUIRE(r.ok());
    INFO(r.out);
    REQUIRE(r.out.rfind("SigIgn:\t", 0) == 0);
    const auto ignored = std::stoull(r.out.substr(8, 16), nullptr, 16);
    CHECK((ignored & (1ull << (SIGPIPE - 1))) == 0);
    CHECK((ignored & (1ull << (SIGTERM - 1))) == 0);
    // ls sees 0, 1, 2 and its own directory descriptor (3), nothing else.
    CHECK(r.out.substr(r.out.find('\n') + 1) == "0 1 2 3 ");
}

TEST_CASE("output is capped but fully read, so a chatty command never blocks", "[ha][command]") {
    auto r = run("head -c 1000000 /dev/zero | tr '\\0' x; echo done >&2");
    REQUIRE(r.ok());
    CHECK(r.out.size() == max_command_output);
    CHECK(r.err == "done\n");
}

TEST_CASE("a background child holding the pipes does not hold the command up", "[ha][command]") {
    const auto start = std::chrono::steady_clock::now();
    auto r = run("(sleep 5) & echo started");
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(r.ok());
    CHECK(r.out == "started\n");
    CHECK(took < std::chrono::seconds(2));
}

TEST_CASE("a command runs without blocking its event loop", "[ha][command]") {
    net::io_context ctx;
    int ticks = 0;
    net::steady_timer timer(ctx);
    std::function<void()> tick = [&] {
        timer.expires_after(std::chrono::milliseconds(10));
        timer.async_wait([&](error_code ec) {
            if (!ec && ++ticks < 1000) tick();
        });
    };
    tick();
    const std::string command = "sleep 0.3";
    auto f = net::co_spawn(ctx, run_command(command), net::use_future);
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        ctx.run_one();
    CHECK(f.get().ok());
    CHECK(ticks >= 10);
}

TEST_CASE("a command that cannot be found is a failed command", "[ha][command]") {
    auto r = run("/nonexistent/command");
    CHECK(r.started);  // the shell started and said so
    CHECK(r.exit_code == 127);
    CHECK(r.err.find("not found") != std::string::npos);
}
