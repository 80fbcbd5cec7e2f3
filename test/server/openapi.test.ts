import t from 'tap'
import { Validator } from '@seriousme/openapi-schema-validator'
import { startTestApp } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { request } from '../fixtures/http.ts'

// Every route the API serves, as OpenAPI writes it (the health routes and the dashboard included).
const ROUTES = [
  ['post', '/buy'], ['get', '/bookings/{id}'], ['delete', '/bookings/{id}'],
  ['get', '/events'], ['post', '/events'], ['get', '/events/{id}'], ['patch', '/events/{id}'], ['post', '/events/{id}/close'],
  ['get', '/admin/invariants'], ['get', '/admin/failed-purchases'], ['get', '/health'],
  ['get', '/'], ['get', '/dashboard/stream']
] as const

t.test('GET /openapi.json: a valid OpenAPI document, generated from the route schemas, naming every route', async (t) => {
  const database = await createTestDatabase(t)
  const { app, base } = await startTestApp(t, database)
  const res = await request(base, 'GET', '/openapi.json')
  t.equal(res.status, 200)
  const validator = new Validator()
  const result = await validator.validate(res.body)
  t.ok(result.valid, `valid against the OpenAPI ${String(validator.version)} schema: ${JSON.stringify(result.errors ?? []).slice(0, 500)}`)
  const doc = res.body as { openapi: string, paths: Record<string, Record<string, { responses?: Record<string, unknown>, parameters?: unknown[] }>> }
  t.match(doc.openapi, /^3\./)
  for (const [method, path] of ROUTES) t.ok(doc.paths[path]?.[method] !== undefined, `${method.toUpperCase()} ${path} is documented`)
  // And nothing the server does not serve: every documented operation answers (no 404 ROUTE_NOT_FOUND).
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => [method, path] as const))
  for (const [method, path] of documented) {
    const found = app.hasRoute({ method: method.toUpperCase(), url: path.replace(/\{(\w+)\}/g, ':$1') })
    t.ok(found, `${method.toUpperCase()} ${path} is a real route`)
  }
  t.ok(doc.paths['/buy']?.post?.responses?.['202'] !== undefined && doc.paths['/buy']?.post?.responses?.['429'] !== undefined, 'POST /buy documents its 202 and its 429')
  t.ok(doc.paths['/bookings/{id}']?.get?.responses?.['404'] !== undefined, 'GET /bookings/{id} documents its 404')
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
