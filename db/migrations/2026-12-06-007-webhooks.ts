import { sql, type Kysely } from 'kysely'

// Signed webhooks (docs/decisions/0013-webhooks-outbox.md): endpoints the seller registers, an
// outbox that every status change of a booking writes to in its own transaction, and the recent
// delivery attempts an operator reads.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    event_types text[] NOT NULL CHECK (cardinality(event_types) > 0),
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    disabled_at timestamptz,
    disabled_reason text,
    CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
  )`.execute(db)

  // One row per status a booking reaches while an endpoint listens for it, with the columns that
  // change along the way as they were then (the others never change: read from the booking when
  // dispatched). Typed columns, not a JSON copy of the row: a quarter of the cost to write, in a
  // statement that holds an event's lock. Taken (deleted) by the dispatcher in the transaction
  // that queues its deliveries.
  await sql`CREATE TABLE webhook_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id uuid NOT NULL,
    status text NOT NULL,
    reason text,
    decided_at timestamptz,
    cancel_requested_at timestamptz,
    cancelled_at timestamptz,
    hold_expires_at timestamptz,
    confirmed_at timestamptz,
    payment_reference text,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
  )`.execute(db)

  await sql`CREATE TABLE webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id text NOT NULL,
    type text NOT NULL,
    attempt integer NOT NULL,
    status_code integer,
    error text,
    response_excerpt text,
    duration_ms integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT clock_timestamp()
  )`.execute(db)
  await sql`CREATE INDEX webhook_deliveries_by_endpoint_idx ON webhook_deliveries (endpoint_id, id)`.execute(db)
  await sql`CREATE INDEX webhook_deliveries_attempted_at_idx ON webhook_deliveries (attempted_at)`.execute(db)

  // Statement-level triggers: every statement that inserts or updates bookings, whichever code path
  // runs it, writes its status changes to the outbox in the same transaction. Once per statement,
  // not per row, and nothing but one read of the (small) endpoints table when nobody listens. The
  // transition tables are read whole (sequential scans, which the service's sessions otherwise
  // turn off: db/driver/session.ts), and JIT stays off whoever runs the statement.
  await sql`CREATE FUNCTION boxoffice_booking_changes_to_outbox() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = on SET jit = off
    AS $$
    DECLARE
      wanted text[];
    BEGIN
      SELECT array_agg(DISTINCT t) INTO wanted
      FROM webhook_endpoints e, unnest(e.event_types) AS t
      WHERE e.disabled_at IS NULL;
      IF wanted IS NULL THEN
        RETURN NULL;
      END IF;
      IF TG_OP = 'INSERT' THEN
        INSERT INTO webhook_outbox (booking_id, status, reason, decided_at, cancel_requested_at, cancelled_at, hold_expires_at, confirmed_at, payment_reference)
        SELECT n.id, n.status, n.reason, n.decided_at, n.cancel_requested_at, n.cancelled_at, n.hold_expires_at, n.confirmed_at, n.payment_reference
        FROM changed_new n
        WHERE n.status <> 'PENDING' AND 'booking.' || lower(n.status) = ANY(wanted)
        ORDER BY n.id;
      ELSE
        -- Each booking's old and new row side by side by sorting them, never by a join: the plan
        -- of a statement in a function is cached, and one made for a one-row update compared
        -- every new row with every old one in a 4,000-row decision (16 million comparisons).
        INSERT INTO webhook_outbox (booking_id, status, reason, decided_at, cancel_requested_at, cancelled_at, hold_expires_at, confirmed_at, payment_reference)
        SELECT id, status, reason, decided_at, cancel_requested_at, cancelled_at, hold_expires_at, confirmed_at, payment_reference
        FROM (
          SELECT c.*, lag(c.status) OVER (PARTITION BY c.id ORDER BY c.side) AS status_before
          FROM (
            SELECT o.id, o.status, NULL::text AS reason, NULL::timestamptz AS decided_at, NULL::timestamptz AS cancel_requested_at,
              NULL::timestamptz AS cancelled_at, NULL::timestamptz AS hold_expires_at, NULL::timestamptz AS confirmed_at,
              NULL::text AS payment_reference, 0 AS side
            FROM changed_old o
            UNION ALL
            SELECT n.id, n.status, n.reason, n.decided_at, n.cancel_requested_at, n.cancelled_at, n.hold_expires_at, n.confirmed_at,
              n.payment_reference, 1
            FROM changed_new n
          ) c
        ) changes
        WHERE side = 1 AND status IS DISTINCT FROM status_before AND 'booking.' || lower(status) = ANY(wanted)
        ORDER BY id;
      END IF;
      RETURN NULL;
    END
  $$`.execute(db)
  await sql`CREATE TRIGGER bookings_inserted_to_outbox AFTER INSERT ON bookings
    REFERENCING NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION boxoffice_booking_changes_to_outbox()`.execute(db)
  await sql`CREATE TRIGGER bookings_updated_to_outbox AFTER UPDATE ON bookings
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION boxoffice_booking_changes_to_outbox()`.execute(db)
}

export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`DROP TRIGGER bookings_updated_to_outbox ON bookings`.execute(db)
  await sql`DROP TRIGGER bookings_inserted_to_outbox ON bookings`.execute(db)
  await sql`DROP FUNCTION boxoffice_booking_changes_to_outbox()`.execute(db)
  await sql`DROP TABLE webhook_deliveries`.execute(db)
  await sql`DROP TABLE webhook_outbox`.execute(db)
  await sql`DROP TABLE webhook_endpoints`.execute(db)
}
