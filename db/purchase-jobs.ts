import { sql, type RawBuilder } from 'kysely'
import { PURCHASE_QUEUE, type QueuedJob } from '../purchase/jobs.ts'
import type { Db } from './client.ts'
import type { Trx } from './database.ts'
import { JOB_STATE, JOBS, PGBOSS_SCHEMA } from './pgboss-tables.ts'

// The purchase queue's hot statements, written as SQL against pg-boss's job table instead of
// through its API, so that each joins the statement or transaction around it
// (docs/decisions/0011-pg-boss-hot-path-in-sql.md): intake stores a purchase's job in the statement
// that stores its booking, a cancellation request its job in the statement that marks the booking,
// and the batched worker claims jobs by deleting them in the transaction that decides them.
// Everything else (the serial worker, retries, the dead letter, maintenance) goes through pg-boss.
// test/db/purchase-jobs.test.ts compares the rows written here with those pg-boss's own insert()
// writes, so an upgrade that changes the table fails the suite.

const QUEUE = sql.lit(PURCHASE_QUEUE)
const JOB_NOW = sql`${sql.id(PGBOSS_SCHEMA, 'job_now')}()`

/**
 * A CTE, `queued_jobs`, inserting one job into the purchase queue per row of `jobs` (columns id,
 * group_id: the event, data: the payload), as `boss.insert()` would with the queue's options. A
 * plain INSERT: a job id taken already, or a purchase queue that does not exist (its options fill
 * NOT NULL columns), fails the whole statement, so no booking or cancellation request is ever
 * stored without its job.
 */
export function insertQueueJobs (jobs: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`queued_jobs AS (
      INSERT INTO ${JOBS} (id, name, data, start_after, created_on, group_id, expire_seconds, deletion_seconds, keep_until,
        retry_limit, retry_delay, retry_backoff, retry_delay_max, policy, dead_letter, heartbeat_seconds)
      SELECT j.id, ${QUEUE}, j.data, ${JOB_NOW}, ${JOB_NOW}, j.group_id, q.expire_seconds, q.deletion_seconds,
        ${JOB_NOW} + q.retention_seconds * interval '1s',
        q.retry_limit, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.policy, q.dead_letter, q.heartbeat_seconds
      FROM (${jobs}) AS j
      LEFT JOIN ${sql.id(PGBOSS_SCHEMA, 'queue')} q ON q.name = ${QUEUE}
    )`
}

/**
 * The payload (PurchaseJobData) of a purchase job, from the columns of its booking row in `row`:
 * the deadline written as JavaScript's toISOString() writes it, which is what its readers expect.
 */
export function purchaseJobData (row: string): RawBuilder<unknown> {
  const c = (column: string): RawBuilder<unknown> => sql.ref(`${row}.${column}`)
  return sql`jsonb_strip_nulls(jsonb_build_object('event_id', ${c('event_id')}, 'user_id', ${c('user_id')}, 'quantity', ${c('quantity')},
    'arrival', ${c('arrival')}, 'expires_at', to_char(${c('expires_at')} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))`
}

// The purchase queue's own table (pg-boss 12 gives a partitioned queue one, named j<hash>), looked
// up once per pool.
const jobTables = new WeakMap<Db, Promise<string>>()
async function purchaseJobTable (trx: Trx, db: Db): Promise<string> {
  let table = jobTables.get(db)
  if (table === undefined) {
    table = sql<{ table_name: string }>`SELECT table_name FROM ${sql.id(PGBOSS_SCHEMA, 'queue')} WHERE name = ${QUEUE}`.execute(trx)
      .then(({ rows: [row] }) => row?.table_name ?? Promise.reject(new Error(`pg-boss has no queue ${PURCHASE_QUEUE}`)))
    table.catch(() => { jobTables.delete(db) })
    jobTables.set(db, table)
  }
  return await table
}

/**
 * Claims up to `limit` of the purchase queue's oldest ready jobs by deleting them, in the caller's
 * transaction: pg-boss's fetch (same order, same conditions, SKIP LOCKED) and deleteJob() in one
 * statement. Until the transaction commits, the rows are locked and no other worker sees them; if it
 * rolls back (or its process dies), they are queued again as they were. A decided purchase leaves
 * no job behind: its booking row is the record. Jobs of the events in `ignoreGroups` stay queued.
 * `db` is the transaction's pool (the queue's table is looked up once per pool).
 */
export async function claimPurchaseJobs (
  trx: Trx,
  { db, limit, ignoreGroups }: { db: Db, limit: number, ignoreGroups: readonly string[] }
): Promise<QueuedJob[]> {
  // The claimed rows are deleted by their row addresses (ctid), in the queue's own table: with no
  // other condition, the only plan is to fetch exactly those rows. Written as "name = ... AND id =
  // ANY(the claimed ids)", a plan made while the table was small scanned every job of the queue by
  // (name, created_on) (PostgreSQL 15, test/db/statement-plans.test.ts; docs/decisions/0001). The
  // rows are locked from the claim to the commit, so their addresses cannot change in between.
  const table = sql.id(PGBOSS_SCHEMA, await purchaseJobTable(trx, db))
  const { rows } = await sql<QueuedJob>`
    DELETE FROM ${table} j
    WHERE j.ctid = ANY(ARRAY(
      SELECT n.ctid FROM ${table} n
      WHERE n.name = ${QUEUE} AND n.state < ${sql.lit(JOB_STATE.active)} AND NOT n.blocked AND n.start_after <= ${JOB_NOW}
        AND (n.group_id IS NULL OR n.group_id <> ALL(${ignoreGroups}::text[]))
      ORDER BY n.priority DESC, n.created_on
      LIMIT ${limit}
      FOR UPDATE OF n SKIP LOCKED))
    RETURNING j.id, j.data`.execute(trx)
  return rows
}
