import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Db } from '../../db/client.ts'
import { createDashboardFeed, DASHBOARD_EVENT_LIMIT, dashboardSnapshotReader, FEED_DEFAULTS, type FeedOptions } from '../dashboard-feed.ts'
import { AppError } from '../errors.ts'
import { ErrorResponse } from '../schemas/common.ts'

const ASSET_DIR = path.join(import.meta.dirname, '..', 'dashboard')

const SCRIPT = 'text/javascript; charset=utf-8'

// The page's own files, served as they are in the repository: no build step. dashboard.js is the
// page's script; the other modules are those it imports, by relative path (so /dashboard/<name>).
// Only what is listed here is served: a module left out would break the page with a 404 (the
// dashboard's server test follows the imports from dashboard.js to catch that).
const ASSET_TYPES = {
  'dashboard.js': SCRIPT,
  'stream.js': SCRIPT,
  'chart.js': SCRIPT,
  'events-table.js': SCRIPT,
  'purchase.js': SCRIPT,
  'dom.js': SCRIPT,
  'format.js': SCRIPT,
  'dashboard.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml'
} as const

/**
 * The page runs only its own scripts and stylesheet and talks only to this server (the stream,
 * POST /buy, GET /bookings): no inline code, no other origin, no framing, and no string-to-HTML
 * sinks at all (Trusted Types: the script builds every element with the DOM).
 */
const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'"

interface Asset { body: Buffer, type: string, etag: string }

async function loadAsset (name: string, type: string): Promise<Asset> {
  const body = await readFile(path.join(ASSET_DIR, name))
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }
}

// Read once at start-up; revalidated by the browser on every load (an ETag, so usually a 304).
function sendAsset (request: FastifyRequest, reply: FastifyReply, asset: Asset): FastifyReply {
  void reply.header('etag', asset.etag).header('cache-control', 'no-cache').type(asset.type)
  if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send()
  return reply.send(asset.body)
}

export interface DashboardRouteOptions {
  db: Db
  log: Logger
  feed?: Partial<FeedOptions>
}

/**
 * The live sales dashboard: the page at GET /, its files under /dashboard/, and its feed of
 * server-sent events at GET /dashboard/stream. It shows what GET /events shows (public), plus the
 * queue depth and the workers' pace.
 */
export const dashboardRoutes: FastifyPluginAsyncTypebox<DashboardRouteOptions> = async (app, { db, log, feed: feedOptions }) => {
  const page = await loadAsset('index.html', 'text/html; charset=utf-8')
  const feed = createDashboardFeed(
    { readSnapshot: dashboardSnapshotReader(db, DASHBOARD_EVENT_LIMIT), log: log.child({ component: 'dashboard' }) },
    { ...FEED_DEFAULTS, ...feedOptions }
  )
  // Open streams never go idle: without this, closing the server would wait for every dashboard.
  app.addHook('preClose', async () => { await feed.close() })

  app.get('/', {
    schema: {
      summary: 'The live sales dashboard (HTML): seats per event, queue depth, decisions per second, and a form to try a purchase',
      response: { 200: { description: 'The page; it loads /dashboard/dashboard.js and follows /dashboard/stream', content: { 'text/html': { schema: Type.String() } } } }
    }
  }, async (request, reply) => {
    void reply.header('content-security-policy', DASHBOARD_CSP)
    return sendAsset(request, reply, page)
  })

  for (const [name, type] of Object.entries(ASSET_TYPES)) {
    const asset = await loadAsset(name, type)
    app.get(`/dashboard/${name}`, { schema: { hide: true } }, async (request, reply) => sendAsset(request, reply, asset))
  }

  app.get('/dashboard/stream', {
    schema: {
      summary: 'The dashboard\'s live feed (server-sent events)',
      description: 'Events: `history` first ({tick_ms, window_ms, points}), then `state` ({events, events_total, queue_depth}: the newest ' +
        `${DASHBOARD_EVENT_LIMIT} events with sold, held, pending, available_quota, cancelled and hold_seconds as GET /events/{id} gives them) whenever it changes, ` +
        '`point` ({t, decisions_per_second}) every second, and `problem` ({message}) while the database does not answer. ' +
        'One snapshot a second is read for all clients together; the stream ends when the server closes, and EventSource reconnects by itself.',
      response: {
        200: { description: 'A stream of server-sent events', content: { 'text/event-stream': { schema: Type.String() } } },
        503: ErrorResponse
      }
    }
  }, async (request, reply) => {
    // Gone while the request was routed: its 'close' has passed, so it would never leave the feed.
    if (request.raw.socket.destroyed) return reply.hijack()
    const joined = feed.join(reply.raw)
    if (joined === 'full') throw new AppError('DASHBOARD_FULL')
    if (joined === 'closed') throw new AppError('SHUTTING_DOWN')
    // From here the response is a stream this handler writes itself, with the headers set so far
    // (security headers, rate-limit headers) and those of an event stream.
    void reply.headers({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // Proxies such as nginx would otherwise hold events back to fill their buffers.
      'x-accel-buffering': 'no',
      // When the stream ends (the server closes) its connection ends too: kept alive, an idle
      // socket would hold the server's close open until the keep-alive timeout.
      connection: 'close'
    }).hijack()
    for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) reply.raw.setHeader(name, value)
    reply.raw.writeHead(200)
    reply.raw.write(joined.greeting)
    reply.raw.once('close', joined.leave)
    request.log.debug('dashboard stream opened')
  })
}
