import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { BuyerVerifier } from './buyer-auth.ts'
import { AppError } from './errors.ts'

/** The header admin routes document: `Authorization: Bearer <ADMIN_TOKEN>`. */
export const AdminHeaders = { type: 'object', properties: { authorization: { type: 'string' } } } as const

const BEARER = /^bearer +(\S+) *$/i

const digest = (value: string): Buffer => hash('sha256', value, 'buffer')

/**
 * A preParsing hook for admin routes: after the per-address rate limit (onRequest), so guessing
 * the token is rate-limited too, and before the body is read, so a caller without the token
 * learns nothing, not even what the body should look like: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time
 * (hashing both sides first makes the comparison independent of the token's length too). With no
 * token configured the admin routes are closed, never open.
 */
export function requireAdmin (adminToken: string | undefined) {
  const isAdmin = adminCheck(adminToken)
  return async function checkAdmin (request: FastifyRequest): Promise<void> {
    if (adminToken === undefined) throw new AppError('ADMIN_DISABLED')
    if (!isAdmin(request)) throw new AppError('UNAUTHORIZED')
  }
}

/** Whether the request carries the admin token (never true when no token is configured). */
export function adminCheck (adminToken: string | undefined): (request: FastifyRequest) => boolean {
  const expected = adminToken === undefined ? undefined : digest(adminToken)
  return (request) => {
    if (expected === undefined) return false
    // The scheme is case-insensitive (RFC 9110 11.1); the token is compared whole.
    const match = BEARER.exec(request.headers.authorization ?? '')
    return match !== null && timingSafeEqual(digest(match[1] as string), expected)
  }
}

/** Who asks about a booking: the admin, or someone naming themself as its buyer. */
export type BookingAsker = { readonly admin: true } | { readonly admin: false, readonly userId: string }

/**
 * The proof GET and DELETE /bookings/:id ask for, checked before the booking is read: the admin
 * token, or ?user_id= naming its buyer (whether it does is the route's to check, with the row).
 * A token that is not the admin's is a 401, not ignored; neither proof is a 400. With buyer tokens
 * (BUYER_AUTH=jwt, `buyers`), any other bearer token must be a buyer's: the buyer is the token's,
 * and a ?user_id= naming someone else is a 403.
 */
export function bookingAccess (adminToken: string | undefined, buyers?: BuyerVerifier):
  (request: FastifyRequest, userId: string | undefined) => Promise<BookingAsker> {
  const isAdmin = adminCheck(adminToken)
  return async (request, userId) => {
    if (isAdmin(request)) return { admin: true }
    if (buyers !== undefined) {
      const buyer = await buyers.verify(request.headers.authorization)
      if (userId !== undefined && userId.toLowerCase() !== buyer) throw new AppError('BUYER_MISMATCH')
      return { admin: false, userId: buyer }
    }
    if (request.headers.authorization !== undefined) throw new AppError('UNAUTHORIZED')
    if (userId === undefined) throw new AppError('BOOKING_OWNER_REQUIRED')
    // PostgreSQL's uuid type is case-blind; a comparison in JavaScript must be too.
    return { admin: false, userId: userId.toLowerCase() }
  }
}
