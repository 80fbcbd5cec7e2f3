// pg-boss's tables, the parts of them this codebase reads or writes with its own SQL (pg-boss 12):
// the purchase queue's hot path (db/purchase-jobs.ts), the operators' checks (db/invariants.ts) and
// the tests. pg-boss owns these tables and may change them in any release; naming them here means
// an upgrade that does breaks one module, not twenty statements, and test/db/purchase-jobs.test.ts
// fails. Everything else goes through pg-boss's API.
import { sql } from 'kysely'

// pg-boss's schema (its default), named so the service (purchase/queue.ts) and the queue
// dashboard (app/queue-dashboard.ts) use the same one.
export const PGBOSS_SCHEMA = 'pgboss'

/** The job table: one row per job, every queue (pg-boss 12 partitions it by queue, j<hash>). */
export const JOB_TABLE = 'job'

/** The job table as a Kysely identifier, for `sql` templates: ``sql`SELECT ... FROM ${JOBS}` ``. */
export const JOBS = sql.id(PGBOSS_SCHEMA, JOB_TABLE)

/** The job table's partitions are named j<hash> (pg-boss 12): a plan that scans one scans the jobs. */
export const isJobTable = (schema: string | undefined, relation: string | undefined): boolean =>
  schema === PGBOSS_SCHEMA && /^(job|j[0-9a-f]{20,})$/.test(relation ?? '')

/** A job's states, as pg-boss writes them in its `state` column. */
export const JOB_STATE = {
  created: 'created',
  retry: 'retry',
  active: 'active',
  completed: 'completed',
  cancelled: 'cancelled',
  failed: 'failed'
} as const
export type JobState = typeof JOB_STATE[keyof typeof JOB_STATE]

/** States in which pg-boss will still run a job (it is queued, waiting to retry, or claimed). */
export const LIVE_JOB_STATES: readonly JobState[] = [JOB_STATE.created, JOB_STATE.retry, JOB_STATE.active]

/** The job table's columns we read: `id` is ours (a purchase's job id is its booking's id). */
export interface JobRow {
  id: string
  /** The queue's name. */
  name: string
  state: JobState
  data: Record<string, unknown>
  retry_count: number
  group_id: string | null
  completed_on: Date | null
  /** What the last attempt returned or threw. */
  output: unknown
}
