import { sql, type Kysely } from 'kysely'

// Two-phase purchases (docs/decisions/0012-holds.md): on an event with hold_seconds, a purchase
// that gets its seats is HELD until hold_expires_at; the seller's confirm makes it SUCCESS (with
// confirmed_at), the expiry makes it EXPIRED and puts its seats back on sale. The table refuses the
// states that would make either ambiguous.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE events ADD COLUMN hold_seconds integer CHECK (hold_seconds BETWEEN 1 AND 86400)`.execute(db)

  await sql`ALTER TABLE bookings
    ADD COLUMN hold_expires_at timestamptz,
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN payment_reference text CHECK (length(payment_reference) BETWEEN 1 AND 255)`.execute(db)
  await sql`ALTER TABLE bookings DROP CONSTRAINT bookings_status_check`.execute(db)
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_status_check
    CHECK (status IN ('PENDING', 'HELD', 'SUCCESS', 'FAILED', 'CANCELLED', 'EXPIRED'))`.execute(db)
  // A hold always knows when it ends, and so does a hold that ended.
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_held_has_expiry
    CHECK (status NOT IN ('HELD', 'EXPIRED') OR hold_expires_at IS NOT NULL)`.execute(db)
  // A held purchase becomes SUCCESS only by a confirmation, made before its hold ran out; a
  // confirmed booking may be cancelled afterwards, nothing else.
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_held_success_is_confirmed
    CHECK (status <> 'SUCCESS' OR hold_expires_at IS NULL OR confirmed_at IS NOT NULL)`.execute(db)
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_confirmed_within_hold
    CHECK (confirmed_at IS NULL OR (status IN ('SUCCESS', 'CANCELLED') AND confirmed_at < hold_expires_at))`.execute(db)
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_payment_reference_is_confirmed
    CHECK (payment_reference IS NULL OR confirmed_at IS NOT NULL)`.execute(db)

  // The holds due to expire, soonest first (the expiry sweep), and each event's held seats (GET
  // /events/:id, the invariants): both over current holds only, however many bookings there are.
  await sql`CREATE INDEX bookings_held_expiry_idx ON bookings (hold_expires_at) WHERE status = 'HELD'`.execute(db)
  await sql`CREATE INDEX bookings_held_by_event_idx ON bookings (event_id, hold_expires_at) INCLUDE (quantity) WHERE status = 'HELD'`.execute(db)
}

export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX bookings_held_by_event_idx`.execute(db)
  await sql`DROP INDEX bookings_held_expiry_idx`.execute(db)
  for (const name of ['bookings_payment_reference_is_confirmed', 'bookings_confirmed_within_hold', 'bookings_held_success_is_confirmed', 'bookings_held_has_expiry', 'bookings_status_check']) {
    await sql`ALTER TABLE bookings DROP CONSTRAINT ${sql.id(name)}`.execute(db)
  }
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_status_check CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'CANCELLED'))`.execute(db)
  await sql`ALTER TABLE bookings DROP COLUMN payment_reference, DROP COLUMN confirmed_at, DROP COLUMN hold_expires_at`.execute(db)
  await sql`ALTER TABLE events DROP COLUMN hold_seconds`.execute(db)
}
