// node-postgres (pg) against pgpilot. Connection from PGHOST/PGPORT/PGUSER/PGDATABASE.
// Run by test_node.py; exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

async function expectError(client, sql, sqlstate) {
  await assert.rejects(client.query(sql), (err) => {
    assert.equal(err.code, sqlstate, `SQLSTATE of ${sql}: ${err.message}`);
    return true;
  });
}

const checks = {
  async namedPreparedStatementTwice(client) {
    // Parse once with a name, then Bind/Execute by name on the second run.
    const query = (n) => ({ name: 'itest-add-one', text: 'SELECT $1::int + 1 AS n, $2::text AS label', values: [n, `v${n}`] });
    const first = await client.query(query(41));
    assert.deepEqual(first.rows, [{ n: 42, label: 'v41' }]);
    const second = await client.query(query(99));
    assert.deepEqual(second.rows, [{ n: 100, label: 'v99' }]);
  },

  async batchOnOneClient(client) {
    const results = await Promise.all([
      client.query('SELECT 1 AS a'),
      client.query('SELECT $1::text AS b', ['two']),
      client.query('SELECT count(*)::int AS c FROM generate_series(1, 1000)'),
      client.query({ text: 'SELECT $1::int * 2 AS d', values: [21] }),
      client.query('SELECT pg_sleep(0.05), 5 AS e'),
    ]);
    assert.deepEqual(results.map((r) => Object.values(r.rows[0]).at(-1)), [1, 'two', 1000, 42, 5]);
  },

  async transactionRolledBack(client) {
    await client.query('CREATE TABLE IF NOT EXISTS itest_node (id int, note text)');
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO itest_node VALUES ($1, $2), ($3, $4)', [1, 'a', 2, 'b']);
      const inside = await client.query('SELECT count(*)::int AS n FROM itest_node');
      assert.equal(inside.rows[0].n, 2, 'rows visible inside the transaction');
      await client.query('ROLLBACK');
      const after = await client.query('SELECT count(*)::int AS n FROM itest_node');
      assert.equal(after.rows[0].n, 0, 'rows after ROLLBACK');
    } finally {
      await client.query('DROP TABLE IF EXISTS itest_node');
    }
  },

  async errorMidTransactionThenRollback(client) {
    await client.query('BEGIN');
    await client.query('SELECT 1');
    await expectError(client, 'SELECT 1/0', '22012');
    await expectError(client, 'SELECT 2', '25P02'); // current transaction is aborted
    await client.query('ROLLBACK');
    const res = await client.query('SELECT 3 AS n');
    assert.equal(res.rows[0].n, 3, 'query after ROLLBACK');
  },
};

async function main() {
  const client = new Client({ connectionTimeoutMillis: 10000 });
  await client.connect();
  let failed = 0;
  try {
    for (const [name, check] of Object.entries(checks)) {
      try {
        await check(client);
        console.log(`PASS ${name}`);
      } catch (err) {
        failed += 1;
        console.log(`FAIL ${name}: ${err.stack || err}`);
      }
    }
  } finally {
    await client.end();
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
