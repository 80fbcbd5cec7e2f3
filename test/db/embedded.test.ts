import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import t from 'tap'
import { startEmbeddedPostgres } from '../../db/embedded.ts'
import { lookupUser } from '../../db/embedded-user.ts'

const ROOT = path.resolve(import.meta.dirname, '..', '..')

async function tempDir (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-embedded-test-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

t.test('keeps its data across restarts, on a port that is never 5432', async (t) => {
  const dataDir = await tempDir(t)
  const first = await startEmbeddedPostgres({ dataDir, database: 'persist' })
  t.not(first.port, 5432)
  let sql = postgres(first.url, { max: 1, onnotice: () => {} })
  await sql`CREATE TABLE kept (value text)`
  await sql`INSERT INTO kept VALUES ('still here')`
  await sql.end()
  await first.stop()
  t.notOk(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid')), 'stopped cleanly')

  const second = await startEmbeddedPostgres({ dataDir, database: 'persist' })
  t.teardown(second.stop)
  sql = postgres(second.url, { max: 1, onnotice: () => {} })
  t.same(await sql`SELECT value FROM kept`, [{ value: 'still here' }])
  const [{ version }] = await sql<[{ version: string }]>`SELECT current_setting('server_version') AS version`
  t.match(version, /^18\./, 'PostgreSQL 18')
  await sql.end()
})

t.test('takes over from a server left running by a process killed with SIGKILL', async (t) => {
  const dataDir = await tempDir(t)
  // A process that starts the server and is then killed -9 cannot stop it: the server lives on.
  const script = `import { startEmbeddedPostgres } from ${JSON.stringify(path.join(ROOT, 'db', 'embedded.ts'))}
    await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} }); process.stdout.write('up\\n')`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => { if (chunk.toString().includes('up')) resolve() })
    child.once('exit', (code) => reject(new Error(`child exited ${code}`)))
  })
  child.kill('SIGKILL')
  await new Promise((resolve) => child.once('exit', resolve))
  const pid = Number((await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0])
  t.doesNotThrow(() => process.kill(pid, 0), 'the orphaned server is still running')

  const next = await startEmbeddedPostgres({ dataDir })
  t.teardown(next.stop)
  t.throws(() => process.kill(pid, 0), 'the orphan was stopped')
  const sql = postgres(next.url, { max: 1, onnotice: () => {} })
  t.same(await sql`SELECT 1 AS ok`, [{ ok: 1 }])
  await sql.end()
})

// As root, the normal-user path is run in a child process as the unprivileged "postgres" user.
const isRoot = process.getuid?.() === 0
const unprivileged = isRoot ? lookupUser('postgres') : undefined
const checkoutReadable = unprivileged !== undefined &&
  spawnSync('test', ['-r', path.join(ROOT, 'db', 'embedded.ts')], unprivileged).status === 0

t.test('runs as a normal (non-root) user too', {
  skip: isRoot && !checkoutReadable ? `the checkout at ${ROOT} is not readable by an unprivileged user, so that path cannot be run from here` : false
}, async (t) => {
  if (!isRoot || unprivileged === undefined) {
    t.pass('this whole run is as a normal user: the tests above took that path')
    return
  }
  const dataDir = await tempDir(t)
  await chown(dataDir, unprivileged.uid, unprivileged.gid)
  const script = `import { startEmbeddedPostgres } from ${JSON.stringify(path.join(ROOT, 'db', 'embedded.ts'))}
    const pg = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} })
    await pg.stop()
    process.stdout.write(JSON.stringify({ uid: process.getuid(), port: pg.port }))`
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    ...unprivileged, cwd: ROOT, encoding: 'utf8', timeout: 60_000
  })
  // (tap's process-info exit hook may complain on stderr that this user cannot write .tap: harmless)
  t.equal(run.status, 0, 'the unprivileged process started and stopped the server', { stderr: run.stderr })
  t.match(JSON.parse(run.stdout), { uid: unprivileged.uid, port: Number })
  t.ok(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION')), 'the cluster was created by and for that user')
})

t.test('a second start while the owner is alive shares the running server instead of stopping it', async (t) => {
  const dataDir = await tempDir(t)
  const owner = await startEmbeddedPostgres({ dataDir })
  t.teardown(owner.stop)
  // Pretend the owner is another live process (this test process is the owner's pid otherwise).
  const sleeper = spawn('sleep', ['60'])
  t.teardown(() => { sleeper.kill() })
  await writeFile(path.join(dataDir, 'postgres-owner.pid'), String(sleeper.pid))

  const second = await startEmbeddedPostgres({ dataDir })
  t.equal(second.port, owner.port, 'attached to the running server')
  await second.stop() // not the owner: must leave the server running
  const sql = postgres(owner.url, { max: 1, onnotice: () => {} })
  t.same(await sql`SELECT 1 AS ok`, [{ ok: 1 }], 'the owner\'s server still answers')
  await sql.end()
})
