import { sql, type Kysely } from 'kysely'

// The purchase rules sellers and buyers ask for: idempotent retries, per-user caps, sale windows,
// cancellation, a deadline per purchase, and a queue position. As in the first migration, the
// constraints are the last line of defence: a cap below one, a window that closes before it
// opens, a cancelled booking without its time, or a key nobody could send are refused here too.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE events
      ADD COLUMN max_per_user integer CHECK (max_per_user >= 1),
      ADD COLUMN sales_open_at timestamptz,
      ADD COLUMN sales_close_at timestamptz,
      -- Seats given back by cancellations (they are on sale again: available_quota has them).
      ADD COLUMN cancelled_seats integer NOT NULL DEFAULT 0 CHECK (cancelled_seats >= 0),
      -- The highest arrival number the worker has decided: a pending purchase's position is its
      -- own arrival number minus this, with no count over the queue.
      ADD COLUMN decided_through bigint NOT NULL DEFAULT 0,
      ADD CONSTRAINT events_sale_window CHECK (sales_open_at < sales_close_at)
  `.execute(db)

  await sql`
    ALTER TABLE bookings
      DROP CONSTRAINT bookings_status_check,
      ADD CONSTRAINT bookings_status_check CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'CANCELLED')),
      ADD COLUMN idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
      ADD COLUMN max_wait_seconds integer CHECK (max_wait_seconds >= 1),
      ADD COLUMN expires_at timestamptz,
      -- Per event, in order of storage; only purchases that queued get one.
      ADD COLUMN arrival bigint,
      ADD COLUMN cancel_requested_at timestamptz,
      ADD COLUMN cancelled_at timestamptz,
      ADD CONSTRAINT bookings_cancelled_at_matches_status CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL)),
      ADD CONSTRAINT bookings_deadline_matches_wait CHECK ((max_wait_seconds IS NULL) = (expires_at IS NULL))
  `.execute(db)
  // One purchase per key and user: a retry finds the first, however concurrent.
  await sql`CREATE UNIQUE INDEX bookings_user_idempotency_key_idx ON bookings (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL`.execute(db)
  // The per-user cap sums a user's successful seats for an event, under the event's lock.
  await sql`CREATE INDEX bookings_success_by_user_idx ON bookings (event_id, user_id) WHERE status = 'SUCCESS'`.execute(db)
  // The expiry sweep finds pending purchases whose deadline has passed.
  await sql`CREATE INDEX bookings_pending_expiry_idx ON bookings (expires_at) WHERE status = 'PENDING' AND expires_at IS NOT NULL`.execute(db)

  // Arrival numbers per event come from a sequence of the event's own: nextval() takes no lock a
  // transaction holds, so concurrent intake batches for one hot event never wait on each other
  // (a counter column on the event would serialise every intake commit on its row lock).
  await sql`
    CREATE FUNCTION event_arrivals_sequence (event_id uuid) RETURNS regclass
    LANGUAGE sql STABLE AS $$ SELECT format('event_arrivals_%s', replace(event_id::text, '-', ''))::regclass $$
  `.execute(db)
  await sql`
    CREATE FUNCTION create_event_arrivals_sequence () RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I', format('event_arrivals_%s', replace(NEW.id::text, '-', '')));
      RETURN NEW;
    END $$
  `.execute(db)
  await sql`
    CREATE TRIGGER events_arrivals_sequence AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION create_event_arrivals_sequence()
  `.execute(db)
  await sql`
    DO $$
    DECLARE e record;
    BEGIN
      FOR e IN SELECT id FROM events LOOP
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I', format('event_arrivals_%s', replace(e.id::text, '-', '')));
      END LOOP;
    END $$
  `.execute(db)

  // The worker's recent pace, for a pending purchase's estimated wait: one row per worker process,
  // written about once a second while it decides.
  await sql`
    CREATE TABLE worker_rates (
      worker_id text PRIMARY KEY,
      decisions_per_second real NOT NULL CHECK (decisions_per_second >= 0),
      measured_at timestamptz NOT NULL
    )
  `.execute(db)
}

export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE worker_rates`.execute(db)
  await sql`DROP TRIGGER events_arrivals_sequence ON events`.execute(db)
  await sql`
    DO $$
    DECLARE s record;
    BEGIN
      FOR s IN SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE 'event\\_arrivals\\_%' LOOP
        EXECUTE format('DROP SEQUENCE %I', s.relname);
      END LOOP;
    END $$
  `.execute(db)
  await sql`DROP FUNCTION create_event_arrivals_sequence()`.execute(db)
  await sql`DROP FUNCTION event_arrivals_sequence(uuid)`.execute(db)
  await sql`DROP INDEX bookings_pending_expiry_idx`.execute(db)
  await sql`DROP INDEX bookings_success_by_user_idx`.execute(db)
  await sql`DROP INDEX bookings_user_idempotency_key_idx`.execute(db)
  // The old schema has no cancelled status: a cancelled booking is kept, as failed "cancelled".
  await sql`ALTER TABLE bookings DROP CONSTRAINT bookings_cancelled_at_matches_status`.execute(db)
  await sql`UPDATE bookings SET status = 'FAILED', reason = 'cancelled', decided_at = coalesce(decided_at, cancelled_at) WHERE status = 'CANCELLED'`.execute(db)
  await sql`
    ALTER TABLE bookings
      DROP CONSTRAINT bookings_deadline_matches_wait,
      DROP COLUMN cancelled_at, DROP COLUMN cancel_requested_at, DROP COLUMN arrival,
      DROP COLUMN expires_at, DROP COLUMN max_wait_seconds, DROP COLUMN idempotency_key,
      DROP CONSTRAINT bookings_status_check,
      ADD CONSTRAINT bookings_status_check CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED'))
  `.execute(db)
  await sql`
    ALTER TABLE events
      DROP CONSTRAINT events_sale_window,
      DROP COLUMN decided_through, DROP COLUMN cancelled_seats, DROP COLUMN sales_close_at,
      DROP COLUMN sales_open_at, DROP COLUMN max_per_user
  `.execute(db)
}
