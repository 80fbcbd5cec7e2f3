import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { sql } from 'kysely'
import type { Db } from '../../db/client.ts'
import { AppError } from '../errors.ts'
import { ErrorResponse } from '../schemas/common.ts'

// A health check must answer even when the database does not: give up on it after this long.
const HEALTH_TIMEOUT_MS = 2000

export const healthRoutes: FastifyPluginAsyncTypebox<{ db: Db }> = async (app, { db }) => {
  app.get('/health', {
    schema: {
      summary: '200 while the database answers, 503 when it does not',
      response: { 200: Type.Object({ status: Type.Literal('ok') }), 503: ErrorResponse }
    }
  }, async () => {
    const signal = AbortSignal.timeout(HEALTH_TIMEOUT_MS)
    const timedOut = new Promise<never>((_resolve, reject) => {
      signal.addEventListener('abort', () => reject(new AppError('DATABASE_UNAVAILABLE')), { once: true })
    })
    try {
      await Promise.race([sql`SELECT 1`.execute(db), timedOut])
    } catch (err) {
      throw err instanceof AppError ? err : new AppError('DATABASE_UNAVAILABLE', { cause: err })
    }
    return { status: 'ok' as const }
  })
}
