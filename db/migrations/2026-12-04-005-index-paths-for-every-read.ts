import { sql, type Kysely } from 'kysely'

// The service's pools plan with probes only (db/client.ts, PLANNING), so every table a
// statement of theirs reads needs an index its conditions or its order can use: without one the
// plan holds a disabled sequential scan, which PostgreSQL before 18 costs at 10^10
// (docs/decisions/0001-plans-that-hold-as-tables-grow.md). Two reads had none:
// - the workers' recent pace (a booking's estimated wait, and clearing silent workers' rows)
//   selects worker_rates by measured_at;
// - GET /events and the dashboard list events newest first.
// Both tables are small; the indexes cost nothing that matters on writes.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX worker_rates_measured_at_idx ON worker_rates (measured_at)`.execute(db)
  await sql`CREATE INDEX events_newest_first_idx ON events (created_at DESC, id)`.execute(db)
}

export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX events_newest_first_idx`.execute(db)
  await sql`DROP INDEX worker_rates_measured_at_idx`.execute(db)
}
