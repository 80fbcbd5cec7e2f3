import type { ColumnType, Generated, Insertable, Selectable, Transaction } from 'kysely'
import type { BookingStatus } from '../purchase/vocabulary.ts'

// The tables as Kysely sees them. The words in them (statuses, reasons) are the purchase domain's:
// purchase/vocabulary.ts.

export interface EventTable {
  id: Generated<string>
  name: string
  total_quota: number
  available_quota: number
  version: Generated<number>
  created_at: ColumnType<Date, never, never>
  max_per_user: number | null
  sales_open_at: Date | null
  sales_close_at: Date | null
  cancelled_seats: Generated<number>
  /** bigint: postgres.js returns it as a string. */
  decided_through: ColumnType<string, never, string>
  hold_seconds: number | null
}

export interface BookingTable {
  id: string
  event_id: string
  user_id: string
  quantity: number
  status: BookingStatus
  reason: string | null
  created_at: ColumnType<Date, never, never>
  decided_at: Date | null
  idempotency_key: string | null
  max_wait_seconds: number | null
  expires_at: Date | null
  /** bigint: postgres.js returns it as a string. */
  arrival: string | null
  cancel_requested_at: Date | null
  cancelled_at: Date | null
  hold_expires_at: Date | null
  confirmed_at: Date | null
  payment_reference: string | null
}

export interface WorkerRateTable {
  worker_id: string
  decisions_per_second: number
  measured_at: Date
}

export interface WebhookEndpointTable {
  id: string
  url: string
  event_types: string[]
  secret: string
  created_at: ColumnType<Date, never, never>
  disabled_at: Date | null
  disabled_reason: string | null
}

export interface WebhookDeliveryTable {
  id: Generated<string>
  endpoint_id: string
  message_id: string
  type: string
  attempt: number
  status_code: number | null
  error: string | null
  response_excerpt: string | null
  duration_ms: number
  attempted_at: ColumnType<Date, never, never>
}

export interface Database {
  events: EventTable
  bookings: BookingTable
  worker_rates: WorkerRateTable
  webhook_endpoints: WebhookEndpointTable
  webhook_deliveries: WebhookDeliveryTable
}

export type EventRow = Selectable<EventTable>
export type NewEvent = Insertable<EventTable>
export type BookingRow = Selectable<BookingTable>
export type NewBooking = Insertable<BookingTable>
export type WebhookEndpointRow = Selectable<WebhookEndpointTable>
export type WebhookDeliveryRow = Selectable<WebhookDeliveryTable>

/**
 * A transaction: what functions that lock rows (FOR UPDATE) or must commit with other writes take,
 * so that calling one outside a transaction does not compile.
 */
export type Trx = Transaction<Database>
