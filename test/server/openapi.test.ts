import t from 'tap'
import { Validator } from '@seriousme/openapi-schema-validator'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { request } from '../fixtures/http.ts'

// Routes left out of the document on purpose: the document itself, the docs page's files
// (registered by @fastify/swagger-ui with hide: true) and the dashboard page's static files (its
// script's modules, stylesheet and icon).
const UNDOCUMENTED = /^\/(openapi\.json|docs(\/.*)?|dashboard\/((dashboard|stream|chart|events-table|purchase|dom|format)\.js|dashboard\.css|favicon\.svg))$/

t.test('GET /openapi.json: a valid OpenAPI document, generated from the route schemas, naming every route', async (t) => {
  const database = await createTestDatabase(t)
  const { app, base } = await startTestApp(t, database)
  const res = await request(base, 'GET', '/openapi.json')
  t.equal(res.status, 200)
  const validator = new Validator()
  const result = await validator.validate(res.body)
  t.ok(result.valid, `valid against the OpenAPI ${String(validator.version)} schema: ${JSON.stringify(result.errors ?? []).slice(0, 500)}`)
  type Operation = { description?: string, responses?: Record<string, unknown>, parameters?: unknown[], security?: unknown[], requestBody?: unknown }
  const doc = res.body as { openapi: string, paths: Record<string, Record<string, Operation>> }
  t.match(doc.openapi, /^3\./)
  // Every route registered on the app (HEAD is Fastify's automatic twin of each GET).
  const registered = app.registeredRoutes.filter((r) => r.method !== 'HEAD' && !UNDOCUMENTED.test(r.url))
  t.ok(registered.length >= 14, `the app's routes were seen (${registered.length})`)
  for (const { method, url, documented } of registered) {
    const path = url.replace(/:(\w+)/g, '{$1}')
    t.ok(documented && doc.paths[path]?.[method.toLowerCase()] !== undefined, `${method} ${path} is documented`)
  }
  // And nothing the server does not serve: every documented operation answers (no 404 ROUTE_NOT_FOUND).
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => [method, path] as const))
  for (const [method, path] of documented) {
    const found = app.hasRoute({ method: method.toUpperCase(), url: path.replace(/\{(\w+)\}/g, ':$1') })
    t.ok(found, `${method.toUpperCase()} ${path} is a real route`)
  }
  t.ok(doc.paths['/buy']?.post?.responses?.['202'] !== undefined && doc.paths['/buy']?.post?.responses?.['429'] !== undefined, 'POST /buy documents its 202 and its 429')
  const readBooking = doc.paths['/bookings/{id}']?.get
  for (const status of ['200', '400', '401', '404']) t.ok(readBooking?.responses?.[status] !== undefined, `GET /bookings/{id} documents its ${status}`)
  t.match(readBooking?.parameters, [{ in: 'query', name: 'user_id', required: false, schema: { format: 'uuid' }, description: /buyer/ }, { in: 'query', name: 'wait' }, { in: 'path', name: 'id' }],
    'GET /bookings/{id} documents ?user_id= (the buyer) beside ?wait=')
  t.match(readBooking?.description, /BOOKING_OWNER_REQUIRED.*BOOKING_NOT_FOUND/, 'and says what its 400 and 404 mean')
  t.same(readBooking?.security, [{}, { admin: [] }], 'and that the admin token is the other way in')
  // Examples a reader can copy: the purchase body, its answers, events, and the error shape.
  const media = (node: unknown): { example?: unknown, examples?: unknown } | undefined => (node as { content?: Record<string, { example?: unknown, examples?: unknown }> } | undefined)?.content?.['application/json']
  const hasExample = (node: unknown): boolean => media(node)?.example !== undefined || media(node)?.examples !== undefined
  const buy = doc.paths['/buy']?.post
  t.ok(hasExample(buy?.requestBody), 'POST /buy has body examples')
  t.ok(hasExample(buy?.responses?.['202']) && hasExample(buy?.responses?.['200']), 'and answer examples')
  t.ok(hasExample(doc.paths['/events']?.post?.requestBody), 'POST /events has body examples')
  t.ok(hasExample(doc.paths['/events/{id}']?.get?.responses?.['200']), 'GET /events/{id} has an answer example')
  t.ok(hasExample(buy?.responses?.['409']), 'errors have examples')
})

t.test('GET /docs: the interactive docs page, allowed to load its own scripts', async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startTestApp(t, database)
  const res = await request(base, 'GET', '/docs/')
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /text\/html/)
  t.match(res.headers.get('content-security-policy'), /script-src 'self'/)
  t.equal(res.headers.get('x-content-type-options'), 'nosniff')
})
