import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { Metrics } from '../../lib/metrics.ts'

/**
 * GET /metrics in Prometheus's text format. Open like /health: put it on a network only your
 * monitoring reaches (it names events and their queue lengths, nothing about buyers).
 */
export const metricsRoutes: FastifyPluginAsyncTypebox<{ metrics: Metrics }> = async (app, { metrics }) => {
  app.get('/metrics', {
    // Exempt from load shedding: an overloaded process is exactly when its metrics matter.
    config: { shedUnderPressure: false },
    schema: {
      summary: 'Prometheus metrics of this process (text exposition format)',
      response: { 200: { description: 'The metrics', content: { 'text/plain': { schema: Type.String() } } } }
    }
  }, async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return await reply.type(metrics.registry.contentType).send(text)
  })
}
