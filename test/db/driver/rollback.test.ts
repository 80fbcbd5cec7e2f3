// db/driver/postgres-js.ts's dialect passes a failed ROLLBACK's own error on, where Kysely's
// PostgreSQL driver threw a TypeError of its own (docs/decisions/0010-postgres-js-or-pg.md).
import t from 'tap'
import { sql } from 'kysely'
import { closeDb, createDb } from '../../../db/client.ts'
import { createTestDatabase } from '../../fixtures/database.ts'

const CONNECTION_ERROR = /^(CONNECTION_CLOSED|CONNECTION_DESTROYED|ECONNRESET|57P01)$/

t.test('a transaction whose ROLLBACK fails (its backend gone) fails with the connection error, and the pool serves the next query', async (t) => {
  const database = await createTestDatabase(t)
  const db = createDb({ url: database.url, poolMax: 1, connectTimeoutSeconds: 2, statementTimeoutMs: 5000, applicationName: 'boxoffice-driver-rollback' })
  t.teardown(async () => { await closeDb(db) })
  for (let round = 0; round < 3; round++) {
    const failure = await db.transaction().execute(async (trx) => {
      const { rows: [me] } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)
      await sql`SELECT pg_terminate_backend(${me?.pid}, 5000)`.execute(database.db)
      throw new Error('the caller gives up: Kysely rolls back on a connection that is gone')
    }).then(() => undefined, (err: unknown) => err)
    t.notOk(failure instanceof TypeError, `round ${round + 1}: not a TypeError of the driver's (${String(failure)})`)
    t.match((failure as { code?: string } | undefined)?.code, CONNECTION_ERROR, 'the ROLLBACK\'s connection error, which the service answers with a 503')
    const { rows } = await sql<{ n: number }>`SELECT 42 AS n`.execute(db)
    t.same(rows, [{ n: 42 }], 'the pool serves the next query')
  }
})
