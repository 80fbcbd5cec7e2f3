// Usage: node test/run-suite.ts [--tier=fast] [tap args...]   (npm run test:tap -- test/server/purchases.test.ts)
//
// Runs the tap suite against a real PostgreSQL: a throwaway embedded server by default, or the
// server named by TEST_DATABASE_URL (an admin connection; each test file gets its own database).
// Prints one plain summary line last, `N passed, N failed`, counted from tap's saved results.
// --tier=fast (npm run test:fast) runs every test file but the slow tier below.
import { spawn } from 'node:child_process'
import { glob, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Parser, type FinalResults } from 'tap-parser'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.ts'
import { createTemplateDatabase, dropTemplateDatabase, TEMPLATE_DATABASE } from './fixtures/template.ts'

const RESULTS_DIR = '.tap/test-results'

/**
 * The slow tier: files that start other processes (the service, PostgreSQL servers, a browser, the
 * bench) or load the database for tens of seconds. `npm test` and CI run them with the rest;
 * `npm run test:fast` leaves them out. Paths from the repository's root; a folder ends in '/'.
 */
const SLOW_TESTS = [
  'test/bench/',
  'test/e2e/',
  'test/fault/',
  'test/app/queue-dashboard.test.ts',
  'test/service.test.ts',
  'test/db/embedded.test.ts',
  'test/server/intake.test.ts',
  'test/worker/crash.test.ts',
  // A whole sale with the tables grown under cached plans, and the 1,200-buyer races.
  'test/db/statement-plans.test.ts',
  'test/worker/settle.test.ts'
] as const

/** Every test file outside the slow tier. */
async function fastTierFiles (): Promise<string[]> {
  const files: string[] = []
  for await (const file of glob('test/**/*.test.ts')) {
    if (!SLOW_TESTS.some((slow) => slow.endsWith('/') ? file.startsWith(slow) : file === slow)) files.push(file)
  }
  return files.sort()
}

/** Leaf assertions passed and failed across every file's saved TAP (subtest summaries not counted). */
async function countResults (): Promise<{ passed: number, failed: number, skipped: number }> {
  const totals = { passed: 0, failed: 0, skipped: 0 }
  const files = await readdir(RESULTS_DIR, { recursive: true }).catch(() => [] as string[])
  for (const file of files.filter((f) => f.endsWith('.tap'))) {
    let fileFailed = 0
    const attach = (parser: Parser): void => {
      const subtests = new Set<string>()
      parser.on('child', (child: Parser) => { subtests.add(child.name); attach(child) })
      parser.on('assert', (result: { ok: boolean, name: string, skip?: boolean | string }) => {
        if (subtests.has(result.name)) return
        if (result.skip !== undefined && result.skip !== false) totals.skipped++
        else if (result.ok) totals.passed++
        else fileFailed++
      })
    }
    const parser = new Parser()
    attach(parser)
    const text = await readFile(path.join(RESULTS_DIR, file), 'utf8')
    const final = await new Promise<FinalResults>((resolve) => {
      parser.on('complete', resolve)
      parser.end(text)
    })
    // A file that crashed, timed out or bailed counts as a failure even if no assertion failed.
    totals.failed += fileFailed > 0 ? fileFailed : (final.ok ? 0 : 1)
  }
  return totals
}

let embedded: EmbeddedPostgres | undefined
let dataDir: string | undefined
let adminUrl = process.env.TEST_DATABASE_URL
let exitCode = 1
// Cleared first: results left by an earlier run must never be counted as this run's.
await rm(RESULTS_DIR, { recursive: true, force: true })
try {
  if (adminUrl === undefined) {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-test-'))
    embedded = await startEmbeddedPostgres({ dataDir, database: 'postgres' })
    adminUrl = embedded.adminUrl
  }
  await createTemplateDatabase(adminUrl)
  // One test file per core at once (tap's own default left a 2-core machine running one at a
  // time): every file has databases of its own, so they do not meet.
  const args = process.argv.slice(2).filter((arg) => arg !== '--tier=fast')
  if (args.length < process.argv.length - 2) args.push(...await fastTierFiles())
  if (!args.some((arg) => /^(-j|--jobs)/.test(arg))) args.unshift(`--jobs=${os.availableParallelism()}`)
  const tap = spawn(path.join('node_modules', '.bin', 'tap'), args, {
    stdio: 'inherit',
    // TEST_DATABASE_EMBEDDED tells the tests which kind of server this run's is (the bench's test
    // then runs the bench as `npm run bench` does by default, on an embedded server of its own).
    env: { ...process.env, TEST_DATABASE_URL: adminUrl, TEST_DATABASE_EMBEDDED: embedded === undefined ? '' : '1', BOXOFFICE_TEST_TEMPLATE: TEMPLATE_DATABASE }
  })
  exitCode = await new Promise<number>((resolve) => tap.once('close', (code) => resolve(code ?? 1)))
} catch (err) {
  process.stderr.write(`test suite could not run: ${err instanceof Error ? err.stack : String(err)}\n`)
} finally {
  if (adminUrl !== undefined) await dropTemplateDatabase(adminUrl).catch(() => {})
  await embedded?.stop()
  if (dataDir !== undefined) {
    // A failed test keeps its database (test/fixtures/database.ts): on a throwaway server, that is
    // of use only if its files stay, and the run says where.
    if (exitCode === 0) await rm(dataDir, { recursive: true, force: true })
    else process.stdout.write(`kept the embedded server's files for the failed tests' databases: DATA_DIR=${dataDir} npm run db (then connect to the database each failure named, on the port it prints)\n`)
  }
}
const { passed, failed, skipped } = await countResults()
if (passed + failed === 0) exitCode ||= 1
process.stdout.write(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`)
process.exitCode = exitCode
