import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ConfigSchema, loadConfig } from '../../lib/config.ts'

t.test('defaults apply when nothing is set', async (t) => {
  const config = loadConfig({}, { dotenv: false })
  t.match(config, { HOST: '127.0.0.1', PORT: 3000, QUEUE_CAPACITY: 100000, WORKER_MODE: 'batched', DEMO_EVENT: true })
  t.equal(config.DATABASE_URL, undefined)
  t.equal(config.ADMIN_TOKEN, undefined)
  t.ok(Object.isFrozen(config))
})

t.test('values are parsed, and empty values mean unset', async (t) => {
  const config = loadConfig({ PORT: '8080', QUEUE_CAPACITY: '5', DATABASE_URL: '', ADMIN_TOKEN: '', DEMO_EVENT: 'false' }, { dotenv: false })
  t.match(config, { PORT: 8080, QUEUE_CAPACITY: 5, DEMO_EVENT: false })
  t.equal(config.DATABASE_URL, undefined)
})

t.test('every problem is listed in one error', async (t) => {
  t.throws(() => loadConfig({ PORT: 'x', QUEUE_CAPACITY: '0', DATABASE_URL: 'mysql://x', WORKER_MODE: 'turbo' }, { dotenv: false }), {
    message: /PORT.*integer[\s\S]*DATABASE_URL[\s\S]*QUEUE_CAPACITY/
  })
})

t.test('.env.example documents exactly the variables the service reads', async (t) => {
  const example = readFileSync(path.join(import.meta.dirname, '..', '..', '.env.example'), 'utf8')
  const documented = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]).sort()
  t.same(documented, Object.keys(ConfigSchema.properties).sort())
})
