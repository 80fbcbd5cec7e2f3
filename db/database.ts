import type { ColumnType, Generated, Insertable, Selectable } from 'kysely'

export const BOOKING_STATUS = {
  pending: 'PENDING',
  success: 'SUCCESS',
  failed: 'FAILED'
} as const
export type BookingStatus = typeof BOOKING_STATUS[keyof typeof BOOKING_STATUS]

/** Why a purchase failed: a stable code clients can branch on. */
export const FAILURE_REASON = {
  soldOut: 'sold_out',
  insufficientQuota: 'insufficient_quota',
  invalid: 'invalid_request'
} as const
export type FailureReason = typeof FAILURE_REASON[keyof typeof FAILURE_REASON]

export interface EventTable {
  id: Generated<string>
  name: string
  total_quota: number
  available_quota: number
  version: Generated<number>
  created_at: ColumnType<Date, never, never>
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
}

export interface Database {
  events: EventTable
  bookings: BookingTable
}

export type EventRow = Selectable<EventTable>
export type NewEvent = Insertable<EventTable>
export type BookingRow = Selectable<BookingTable>
export type NewBooking = Insertable<BookingTable>
