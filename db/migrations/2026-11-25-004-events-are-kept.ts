import { sql, type Kysely } from 'kysely'

// bookings.event_id referenced events(id) through a foreign key, whose check runs a trigger and a
// lookup of the event row (with a FOR KEY SHARE lock) for every booking inserted: a quarter of the
// intake statement's time, for every one of a flash crowd's requests, including those answered
// sold out (docs/decisions/0002-bookings-without-a-foreign-key.md).
//
// What it guaranteed holds by construction instead:
// - bookings are inserted only by the intake statement (storePurchases), which joins each purchase
//   to its event's committed row and stores nothing for an unknown event;
// - an event row is never deleted nor given another id: the triggers below refuse both, in the
//   database itself, as the foreign key refused deleting an event that had bookings.
export async function up (db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION refuse_event_removal () RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'events are never deleted nor renumbered: bookings refer to them by id (close the sale instead)'
        USING ERRCODE = 'restrict_violation';
    END $$
  `.execute(db)
  await sql`CREATE TRIGGER events_never_deleted BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION refuse_event_removal()`.execute(db)
  await sql`CREATE TRIGGER events_never_truncated BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_removal()`.execute(db)
  await sql`CREATE TRIGGER events_never_renumbered BEFORE UPDATE OF id ON events FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION refuse_event_removal()`.execute(db)
  await sql`ALTER TABLE bookings DROP CONSTRAINT bookings_event_id_fkey`.execute(db)
}

// Rolling this back restores the foreign key, whose check takes FOR KEY SHARE on the event row:
// switch lockEventsForUpdate (db/events.ts) back to FOR NO KEY UPDATE with it, or intake waits
// behind every decision on a hot event.
export async function down (db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE bookings ADD CONSTRAINT bookings_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id)`.execute(db)
  await sql`DROP TRIGGER events_never_renumbered ON events`.execute(db)
  await sql`DROP TRIGGER events_never_truncated ON events`.execute(db)
  await sql`DROP TRIGGER events_never_deleted ON events`.execute(db)
  await sql`DROP FUNCTION refuse_event_removal()`.execute(db)
}
