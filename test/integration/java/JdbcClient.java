// pgjdbc (the PostgreSQL JDBC driver) against pgpilot. Run by test_drivers.py:
//
//   java -cp /usr/share/java/postgresql.jar:DIR JdbcClient URL THREADS ITERATIONS TABLE
//
// Each thread opens its own connection and runs PreparedStatements more often than pgjdbc's
// prepareThreshold (default 5: from the 5th execution on, pgjdbc uses a named server-side
// statement "S_n"), in autocommit, inside explicit transactions (setAutoCommit(false), commit,
// rollback), as a batch, and with expected errors (division by zero 22012, a syntax error
// 42601, a query timeout that pgjdbc cancels 57014) after which the connection must go on
// working. Every result is checked. It prints one line "ERROR ..." per unexpected problem and
// ends with one line that the Python test parses:
//
//   SUMMARY threads=8 iterations=30 statements=N expected_errors=22012:72,42601:56,57014:8
//           errors=0 server_prepared=40 pids=PID:0/3,PID:1,...   (all on one line)
//
// expected_errors: how often each expected SQLSTATE came; server_prepared: PreparedStatements
// that pgjdbc ran as named server-side statements; pids: each backend pid that answered
// pg_backend_pid(), with the threads that saw it. The exit code is 0 unless the arguments are
// wrong.

import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.ConcurrentSkipListSet;
import java.util.concurrent.atomic.AtomicInteger;
import org.postgresql.PGStatement;

public final class JdbcClient {
    static final AtomicInteger statements = new AtomicInteger();
    // SQLSTATE -> how many times the expected error came
    static final Map<String, AtomicInteger> expectedErrors = new ConcurrentSkipListMap<>();
    static final AtomicInteger errors = new AtomicInteger();
    static final AtomicInteger serverPrepared = new AtomicInteger();
    // backend pid -> the threads that saw it (from pg_backend_pid() in step 1)
    static final Map<Integer, Set<Integer>> pids = new ConcurrentSkipListMap<>();

    /** A failed check: reported as an ERROR line like an unexpected SQLException. */
    static final class CheckFailed extends Exception {
        CheckFailed(String message) { super(message); }
    }

    static void check(boolean condition, String message) throws CheckFailed {
        if (!condition) throw new CheckFailed(message);
    }

    static void checkEqual(Object actual, Object expected, String what) throws CheckFailed {
        if (!expected.equals(actual))
            throw new CheckFailed(what + ": expected " + expected + ", got " + actual);
    }

    static void expected(SQLException e, String sqlstate) throws SQLException {
        if (!sqlstate.equals(e.getSQLState())) throw e;
        expectedErrors.computeIfAbsent(sqlstate, k -> new AtomicInteger()).incrementAndGet();
    }

    static void error(int thread, String step, Throwable t) {
        errors.incrementAndGet();
        StringBuilder line = new StringBuilder("ERROR thread=" + thread + " step=" + step + ": ");
        if (t instanceof SQLException e) {
            line.append("SQLSTATE=").append(e.getSQLState()).append(' ');
            if (e instanceof BatchUpdateException b && b.getNextException() != null)
                line.append("(next: ").append(b.getNextException().getMessage()).append(") ");
        }
        line.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
        System.out.println(line.toString().replace('\n', ' '));
    }

    /** Counts the PreparedStatement as server-prepared if pgjdbc says it now uses a named one. */
    static void countServerPrepared(PreparedStatement ps) throws SQLException {
        if (ps.unwrap(PGStatement.class).isUseServerPrepare()) serverPrepared.incrementAndGet();
    }

    static void run(int id, String url, int iterations, String table) {
        String step = "connect";
        try (Connection c = DriverManager.getConnection(url)) {
            // 0. Odd threads first run a statement of their own past the threshold: pgjdbc
            // numbers server-side statements per connection (S_1, S_2, ...), so the same name
            // then stands for different texts in different clients sharing backend connections.
            if (id % 2 == 1) {
                step = "warm-up";
                try (PreparedStatement warm = c.prepareStatement("SELECT ?::text || '-warm' AS w")) {
                    for (int k = 0; k < 7; k++) {
                        warm.setString(1, "t" + id);
                        try (ResultSet rs = warm.executeQuery()) {
                            check(rs.next(), "a row");
                            checkEqual(rs.getString(1), "t" + id + "-warm", "warm-up");
                        }
                    }
                }
            }
            // 1. Autocommit: one PreparedStatement executed `iterations` times with other values.
            step = "autocommit select";
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT ?::int + ?::int AS sum, ?::text AS label, pg_backend_pid() AS pid")) {
                for (int k = 0; k < iterations; k++) {
                    ps.setInt(1, id);
                    ps.setInt(2, k);
                    ps.setString(3, "t" + id + "-" + k);
                    try (ResultSet rs = ps.executeQuery()) {
                        statements.incrementAndGet();
                        check(rs.next(), "a row");
                        checkEqual(rs.getInt(1), id + k, "sum at " + k);
                        checkEqual(rs.getString(2), "t" + id + "-" + k, "label at " + k);
                        pids.computeIfAbsent(rs.getInt(3), p -> new ConcurrentSkipListSet<>()).add(id);
                        check(!rs.next(), "one row only");
                    }
                }
                countServerPrepared(ps);
            }

            // 2. Autocommit INSERTs, then a count of them.
            step = "autocommit insert";
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO " + table + " (client, i, note) VALUES (?, ?, ?)")) {
                for (int k = 0; k < iterations; k++) {
                    ins.setInt(1, id);
                    ins.setInt(2, k);
                    ins.setString(3, "auto");
                    checkEqual(ins.executeUpdate(), 1, "rows inserted at " + k);
                    statements.incrementAndGet();
                }
                countServerPrepared(ins);
            }
            PreparedStatement count = c.prepareStatement(
                    "SELECT count(*), coalesce(sum(i), 0) FROM " + table + " WHERE client = ? AND note = ?");
            checkEqual(countRows(count, id, "auto"), (long) iterations, "autocommit rows");

            // 3. Explicit transactions: INSERT, SELECT of its own rows, COMMIT (every 5th: ROLLBACK).
            step = "transactions";
            c.setAutoCommit(false);
            long committed = 0;
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO " + table + " (client, i, note) VALUES (?, ?, ?)")) {
                for (int k = 0; k < iterations; k++) {
                    ins.setInt(1, id);
                    ins.setInt(2, k);
                    ins.setString(3, "tx");
                    checkEqual(ins.executeUpdate(), 1, "rows inserted in transaction " + k);
                    statements.incrementAndGet();
                    checkEqual(countRows(count, id, "tx"), committed + 1,
                               "own rows inside transaction " + k);
                    if (k % 5 == 4) {
                        c.rollback();
                    } else {
                        c.commit();
                        committed++;
                    }
                }
                countServerPrepared(ins);

                // 4. A batch (several Bind/Execute before one Sync) in a transaction.
                step = "batch";
                for (int k = 0; k < 3; k++) {
                    ins.setInt(1, id);
                    ins.setInt(2, 1000 + k);
                    ins.setString(3, "batch");
                    ins.addBatch();
                }
                int[] updated = ins.executeBatch();
                statements.incrementAndGet();
                checkEqual(updated.length, 3, "batch results");
                for (int n : updated)
                    check(n == 1 || n == java.sql.Statement.SUCCESS_NO_INFO, "batch row count " + n);
                c.commit();
            }
            c.setAutoCommit(true);
            checkEqual(countRows(count, id, "tx"), committed, "committed transaction rows");
            checkEqual(countRows(count, id, "batch"), 3L, "batch rows");
            countServerPrepared(count);
            count.close();

            // 5. Errors: division by zero on a statement that is (or becomes) server-prepared,
            // in autocommit and inside a transaction; the connection goes on working.
            step = "errors";
            try (PreparedStatement div = c.prepareStatement("SELECT 100 / ?::int")) {
                for (int k = 0; k < iterations; k++) {
                    int divisor = k % 4;
                    div.setInt(1, divisor);
                    try (ResultSet rs = div.executeQuery()) {
                        statements.incrementAndGet();
                        check(divisor != 0, "100 / 0 returned a result at " + k);
                        check(rs.next(), "a row");
                        checkEqual(rs.getInt(1), 100 / divisor, "100 / " + divisor);
                    } catch (SQLException e) {
                        if (divisor != 0) throw e;
                        expected(e, "22012");
                    }
                }
                countServerPrepared(div);

                c.setAutoCommit(false);
                try (PreparedStatement ins = c.prepareStatement(
                        "INSERT INTO " + table + " (client, i, note) VALUES (?, ?, ?)")) {
                    ins.setInt(1, id);
                    ins.setInt(2, -1);
                    ins.setString(3, "doomed");
                    ins.executeUpdate();
                }
                div.setInt(1, 0);
                try (ResultSet rs = div.executeQuery()) {
                    throw new CheckFailed("100 / 0 in a transaction returned a result");
                } catch (SQLException e) {
                    expected(e, "22012");
                }
                c.rollback();
                c.setAutoCommit(true);
                div.setInt(1, 5);
                try (ResultSet rs = div.executeQuery()) {
                    check(rs.next(), "a row after the rollback");
                    checkEqual(rs.getInt(1), 20, "100 / 5 after the rollback");
                }
            }
            try (PreparedStatement doomed = c.prepareStatement(
                    "SELECT count(*) FROM " + table + " WHERE client = ? AND note = 'doomed'")) {
                doomed.setInt(1, id);
                try (ResultSet rs = doomed.executeQuery()) {
                    check(rs.next(), "a row");
                    checkEqual(rs.getLong(1), 0L, "rows of the rolled back transaction");
                }
            }

            // 6. A syntax error, executed as often as the others: never prepared, always 42601.
            step = "syntax error";
            try (PreparedStatement bad = c.prepareStatement("SELEC ?::int")) {
                for (int k = 0; k < 7; k++) {
                    bad.setInt(1, k);
                    try (ResultSet rs = bad.executeQuery()) {
                        throw new CheckFailed("SELEC returned a result");
                    } catch (SQLException e) {
                        expected(e, "42601");
                    }
                }
            }

            // 7. A query timeout: pgjdbc sends a CancelRequest after 1 s; 57014 for this
            // connection's query and no other; then the connection works.
            step = "query timeout";
            try (PreparedStatement sleep = c.prepareStatement("SELECT pg_sleep(10)")) {
                sleep.setQueryTimeout(1);
                long t0 = System.nanoTime();
                try (ResultSet rs = sleep.executeQuery()) {
                    throw new CheckFailed("pg_sleep(10) with a 1 s timeout returned a result");
                } catch (SQLException e) {
                    expected(e, "57014");
                }
                long ms = (System.nanoTime() - t0) / 1_000_000;
                check(ms < 5000, "the cancel took " + ms + " ms");
            }
            try (PreparedStatement after = c.prepareStatement("SELECT ?::int * 7")) {
                for (int k = 0; k < 6; k++) {
                    after.setInt(1, k);
                    try (ResultSet rs = after.executeQuery()) {
                        check(rs.next(), "a row after the cancel");
                        checkEqual(rs.getInt(1), 7 * k, "a query after the cancel");
                    }
                }
            }
        } catch (Exception e) {
            error(id, step, e);
        }
    }

    static long countRows(PreparedStatement count, int id, String note) throws SQLException, CheckFailed {
        count.setInt(1, id);
        count.setString(2, note);
        try (ResultSet rs = count.executeQuery()) {
            statements.incrementAndGet();
            check(rs.next(), "a count row");
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: JdbcClient URL THREADS ITERATIONS TABLE");
            System.exit(2);
        }
        String url = args[0];
        int threads = Integer.parseInt(args[1]);
        int iterations = Integer.parseInt(args[2]);
        String table = args[3];
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int id = t;
            Thread worker = new Thread(() -> run(id, url, iterations, table), "client-" + t);
            workers.add(worker);
            worker.start();
        }
        for (Thread worker : workers) worker.join();
        List<String> expectedList = new ArrayList<>();
        expectedErrors.forEach((state, n) -> expectedList.add(state + ":" + n));
        List<String> pidList = new ArrayList<>();
        pids.forEach((pid, ids) -> pidList.add(
                pid + ":" + String.join("/", ids.stream().map(String::valueOf).toList())));
        System.out.println("SUMMARY threads=" + threads + " iterations=" + iterations
                           + " statements=" + statements.get()
                           + " expected_errors=" + String.join(",", expectedList)
                           + " errors=" + errors.get() + " server_prepared=" + serverPrepared.get()
                           + " pids=" + String.join(",", pidList));
    }
}
