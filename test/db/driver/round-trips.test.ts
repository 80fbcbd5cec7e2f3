// What db/driver/postgres-js.ts promises for round trips, counted on the wire by a relay between
// the pool and PostgreSQL (docs/decisions/0010-postgres-js-or-pg.md).
import t from 'tap'
import { sql } from 'kysely'
import { closeDb, createDb, type Db } from '../../../db/client.ts'
import { createTestDatabase, type TestContext } from '../../fixtures/database.ts'
import { startExchangeCounter, type ExchangeCounter } from './wire-exchanges.ts'

/** A pool of one connection, through a relay that counts its round trips, on a test database of its own. */
async function relayedPool (t: TestContext): Promise<{ db: Db, wire: ExchangeCounter }> {
  const database = await createTestDatabase(t)
  const wire = await startExchangeCounter(database.url)
  const db = createDb({ url: wire.url, poolMax: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 5000, applicationName: 'boxoffice-driver-round-trips' })
  t.teardown(async () => {
    await closeDb(db)
    await wire.close()
  })
  await sql`SELECT 1`.execute(db) // the connection and its start-up exchanges, not counted
  return { db, wire }
}

t.test('a transaction\'s BEGIN is sent with its first statement: no round trip of its own', async (t) => {
  const { db, wire } = await relayedPool(t)
  const statement = (id: number) => sql<{ n: number }>`SELECT ${id}::int + 1 AS n`
  await db.transaction().execute(async (trx) => await statement(1).execute(trx)) // prepares the statement
  for (let round = 0; round < 3; round++) {
    wire.reset()
    const { rows } = await db.transaction().execute(async (trx) => await statement(round).execute(trx))
    t.same(rows, [{ n: round + 1 }], 'the statement answers inside the transaction')
    t.equal(wire.exchanges(), 2, `round ${round + 1}: two round trips, BEGIN with the statement, then COMMIT`)
  }
})

t.test('every statement is prepared once per connection and then runs in one round trip', async (t) => {
  const { db, wire } = await relayedPool(t)
  const text = 'SELECT $1::int * 2 AS n'
  const twice = async (n: number): Promise<unknown> => (await sql<{ n: number }>`SELECT ${n}::int * 2 AS n`.execute(db)).rows[0]?.n
  t.equal(await twice(1), 2)
  for (let round = 0; round < 3; round++) {
    wire.reset()
    t.equal(await twice(round + 10), (round + 10) * 2, 'the statement answers')
    t.equal(wire.exchanges(), 1, `run ${round + 2} of a statement with a parameter: one round trip`)
  }
  const { rows: [prepared] } = await sql<{ count: string }>`SELECT count(*) AS count FROM pg_prepared_statements WHERE statement = ${text}`.execute(db)
  t.equal(Number(prepared?.count), 1, 'PostgreSQL holds it as one prepared statement of the session')
})
