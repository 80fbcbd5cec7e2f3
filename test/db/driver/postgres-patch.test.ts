import t from 'tap'
import { sql } from 'kysely'
import { closeDb, createDb, type Db } from '../../../db/client.ts'
import { createTestDatabase } from '../../fixtures/database.ts'
import { waitFor } from '../../fixtures/http.ts'
import { startTcpProxy } from '../../fixtures/tcp-proxy.ts'

// One test per fault db/driver/patches/postgres+3.4.9.patch fixes in postgres.js 3.4.9; each fails
// with the patch reversed (docs/decisions/0010-postgres-js-or-pg.md).

// postgres.js 3.4.9 ran later queries of a reserved connection on it after its backend went away
// (a TypeError thrown from a timer: the process dies; or a query that never settles: the request
// hangs), and lost a pooled connection for each reservation a failed connection attempt refused
// (the pool wedged). The patch fixes them; this is upstream's reproduction
// (porsager/postgres#1208), through a Kysely transaction as the service runs them, ten times over.
t.test('a transaction whose backend is terminated fails with a connection error, the process lives, and the pool serves the next one', async (t) => {
  const database = await createTestDatabase(t)
  const db = createDb({ url: database.url, poolMax: 2, connectTimeoutSeconds: 2, statementTimeoutMs: 5000, applicationName: 'boxoffice-client-test' })
  t.teardown(async () => { await closeDb(db) })
  let uncaught: unknown
  const onUncaught = (err: unknown): void => { uncaught = err }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.off('uncaughtException', onUncaught) })

  for (let round = 0; round < 10; round++) {
    const failure = await db.transaction().execute(async (trx) => {
      const { rows: [me] } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)
      await sql`SELECT pg_terminate_backend(${me?.pid})`.execute(database.db)
      await sql`SELECT 1`.execute(trx).catch(() => {}) // the first query after: rejected
      await sql`SELECT 2`.execute(trx) // and the next one too, without touching the dead socket
    }).then(() => undefined, (err: unknown) => err)
    t.ok(failure instanceof Error, `round ${round + 1}: the transaction failed (${String((failure as Error | undefined)?.message)})`)
    t.match((failure as { code?: string }).code, /^(CONNECTION_CLOSED|CONNECTION_DESTROYED|ECONNRESET|57P01)$/, 'with a connection error (a 503, not a 500)')
    const { rows: [next] } = await sql<{ n: number }>`SELECT 41 + 1 AS n`.execute(db)
    t.equal(next?.n, 42, 'the pool serves the next query')
  }
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(uncaught, undefined, 'nothing was thrown outside a promise')
})

// The server answers a query whose backend is terminated with a FATAL error and closes the socket,
// with no ReadyForQuery after it. postgres.js kept that error and handed it to the first query of
// the connection's next session (porsager/postgres#1223): the first read after a worker or API
// connection was killed failed too, on a healthy database. Deterministic here: the FATAL always
// answers the sleeping query, and with one connection the next query reconnects that same one.
t.test('the error of a terminated backend goes to its own query, not to the first query of the next session', async (t) => {
  const database = await createTestDatabase(t)
  const db = createDb({ url: database.url, poolMax: 1, connectTimeoutSeconds: 2, statementTimeoutMs: 10_000, applicationName: 'boxoffice-client-test-fatal' })
  t.teardown(async () => { await closeDb(db) })

  for (let round = 0; round < 3; round++) {
    const { rows: [me] } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db)
    const sleeping = sql`SELECT pg_sleep(8)`.execute(db).then(() => undefined, (err: unknown) => err)
    await waitForActive(database.db, me?.pid ?? 0)
    await sql`SELECT pg_terminate_backend(${me?.pid})`.execute(database.db)
    const failure = await sleeping
    t.match((failure as { code?: string } | undefined)?.code, /^(57P01|CONNECTION_CLOSED|ECONNRESET)$/, `round ${round + 1}: the sleeping query failed with a connection error`)
    const next = await sql<{ n: number }>`SELECT 41 + 1 AS n`.execute(db).then(({ rows }) => rows[0]?.n, (err: unknown) => err)
    t.equal(next, 42, 'the next query, on a new session, answers')
  }
})

/** Resolves once backend `pid` is running a statement (not idle). */
async function waitForActive (admin: Db, pid: number): Promise<void> {
  await waitFor(async () => {
    const { rows: [row] } = await sql<{ state: string | null }>`SELECT state FROM pg_stat_activity WHERE pid = ${pid}`.execute(admin)
    return row?.state === 'active' ? true : undefined
  }, { timeoutMs: 5000, intervalMs: 10, what: `backend ${pid} to become active` })
}

// A statement that fails after sending some rows (here a division by zero at the fifth; in the
// service, a statement_timeout during a long read) left postgres.js counting those rows, so the
// next query on that connection came back with empty slots in front of its own rows.
t.test('a query that fails mid-result leaves nothing in the next query\'s rows', async (t) => {
  const database = await createTestDatabase(t)
  const db = createDb({ url: database.url, poolMax: 1, connectTimeoutSeconds: 2, statementTimeoutMs: 5000, applicationName: 'boxoffice-client-test-rows' })
  t.teardown(async () => { await closeDb(db) })
  const failure = await sql`SELECT CASE WHEN g < 5 THEN g ELSE 1 / (g - g) END AS n FROM generate_series(1, 10) AS g`.execute(db).then(() => undefined, (err: unknown) => err)
  t.equal((failure as { code?: string } | undefined)?.code, '22012', 'the query fails with its own error (division by zero)')
  const { rows } = await sql<{ n: number }>`SELECT 42 AS n`.execute(db)
  t.same(rows, [{ n: 42 }], 'the next query has exactly its one row')
})

// A reservation (every Kysely transaction is one) whose connection attempt failed stayed in
// postgres.js's waiting list and was later handed a connection nobody took: each failed attempt
// during an outage lost a connection for good, and after it the pool served nobody.
t.test('transactions refused during an outage cost the pool no connection: it serves again once the database is back', async (t) => {
  const database = await createTestDatabase(t)
  const proxy = await startTcpProxy(Number(new URL(database.url).port))
  const url = new URL(database.url)
  url.port = String(proxy.port)
  const db = createDb({ url: url.toString(), poolMax: 1, connectTimeoutSeconds: 1, acquireTimeoutMs: 3000, statementTimeoutMs: 5000, applicationName: 'boxoffice-driver-outage' })
  t.teardown(async () => {
    await closeDb(db)
    await proxy.close()
  })
  const one = async (n: number): Promise<unknown> => await db.transaction().execute(async (trx) => (await sql<{ n: number }>`SELECT ${n}::int AS n`.execute(trx)).rows[0]?.n)
  t.equal(await one(1), 1, 'before the outage')
  await proxy.cut()
  for (let attempt = 0; attempt < 3; attempt++) {
    const failure = await one(2).then(() => undefined, (err: unknown) => err)
    t.ok(failure instanceof Error, `attempt ${attempt + 1} during the outage fails (${String((failure as { code?: string } | undefined)?.code)})`)
  }
  await proxy.restore()
  for (let round = 0; round < 3; round++) t.equal(await one(3 + round).catch((err: unknown) => err), 3 + round, `transaction ${round + 1} after the outage answers`)
})
