import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { AppError } from './errors.ts'

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

/**
 * A preHandler for admin routes: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time
 * (hashing both sides first makes the comparison independent of the token's length too). With no
 * token configured the admin routes are closed, never open.
 */
export function requireAdmin (adminToken: string | undefined) {
  const expected = adminToken === undefined ? undefined : digest(adminToken)
  return async function checkAdmin (request: FastifyRequest): Promise<void> {
    if (expected === undefined) throw new AppError('ADMIN_DISABLED')
    const header = request.headers.authorization
    const token = header?.startsWith('Bearer ') === true ? header.slice('Bearer '.length).trim() : ''
    if (token === '' || !timingSafeEqual(digest(token), expected)) throw new AppError('UNAUTHORIZED')
  }
}
