import { sql, type Kysely } from 'kysely'

// The per-user cap reads each buyer's successful seats for an event, under the event's lock. It had
// two indexes to choose from: (event_id, status), and a partial (event_id, user_id) WHERE status =
// 'SUCCESS'. During a sale the table grows far faster than autovacuum re-analyses it, so the
// planner, still believing the event has a handful of successes, took (event_id, status) and
// filtered every one of the event's successful bookings for each buyer: in a 50,000-seat sale one
// 4,000-purchase batch read 1.8 million index entries for 6 s and timed out (bench/README.md, "Where
// the time goes").
// One index on (event_id, status, user_id) serves both the per-event counts (its first two
// columns) and the buyer lookup (all three), so no plan, however stale its statistics, can read
// more than the buyer's own rows; and a decision that makes a booking SUCCESS updates one index
// less than before.
//
// Upgrading a service that already holds many bookings: CREATE INDEX (in the migration's
// transaction) blocks writes to bookings while it builds, so run it between sales.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX bookings_event_status_user_idx ON bookings (event_id, status, user_id)`.execute(db)
  await sql`DROP INDEX bookings_event_id_status_idx`.execute(db)
  await sql`DROP INDEX bookings_success_by_user_idx`.execute(db)
}

export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX bookings_success_by_user_idx ON bookings (event_id, user_id) WHERE status = 'SUCCESS'`.execute(db)
  await sql`CREATE INDEX bookings_event_id_status_idx ON bookings (event_id, status)`.execute(db)
  await sql`DROP INDEX bookings_event_status_user_idx`.execute(db)
}
