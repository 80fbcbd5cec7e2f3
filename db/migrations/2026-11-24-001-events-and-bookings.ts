import { sql, type Kysely } from 'kysely'

// The constraints are the last line of defence against overselling: even a buggy worker cannot
// commit a negative or over-full quota, a zero-seat purchase, or a decided booking without a time.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE events (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
      total_quota integer NOT NULL CHECK (total_quota >= 0),
      available_quota integer NOT NULL,
      version integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT events_quota_bounds CHECK (available_quota >= 0 AND available_quota <= total_quota)
    )
  `.execute(db)
  await sql`
    CREATE TABLE bookings (
      id uuid PRIMARY KEY,
      event_id uuid NOT NULL REFERENCES events (id),
      user_id uuid NOT NULL,
      quantity integer NOT NULL CHECK (quantity >= 1),
      status text NOT NULL CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED')),
      reason text,
      created_at timestamptz NOT NULL DEFAULT now(),
      decided_at timestamptz,
      CONSTRAINT bookings_decided_at_matches_status CHECK ((status = 'PENDING') = (decided_at IS NULL)),
      CONSTRAINT bookings_failed_has_reason CHECK ((status = 'FAILED') = (reason IS NOT NULL))
    )
  `.execute(db)
  await sql`CREATE INDEX bookings_event_id_status_idx ON bookings (event_id, status)`.execute(db)
  // Small partial index: the intake's capacity check counts pending purchases through it.
  await sql`CREATE INDEX bookings_pending_idx ON bookings (event_id) WHERE status = 'PENDING'`.execute(db)
}

export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE bookings`.execute(db)
  await sql`DROP TABLE events`.execute(db)
}
