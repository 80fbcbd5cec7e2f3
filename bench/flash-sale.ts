// Usage: npm run bench -- [options]          (node bench/flash-sale.ts --help lists them)
//
// A flash sale, measured against this machine's own ceiling and checked for correctness:
//  1. ceiling: a no-op Fastify POST /buy (same schema, same reply, no database) is loaded with the
//     same generator, concurrency, request bodies and per-answer work (status counted, booking id
//     kept); every throughput is reported as a ratio of it;
//  then, for each worker mode asked for (default: batched, then serial), on a fresh database:
//  2. sale: events are created (with a per-user cap, `--max-per-user`), then `--requests`
//     purchases from a crowd of `--users` (some buy more than once) are fired at `--concurrency`
//     as fast as the server accepts them (autocannon), at `npm start` (API and worker in one
//     process), while `--cancel-percent` of the queued purchases are cancelled; the events hold a
//     purchase's seats `--hold-seconds` (0: no holds), and of the holds the seller confirms
//     `--confirm-percent`, their buyers release `--release-percent`, the rest expire (bench/holds.ts);
//  3. drain: the bench waits until every stored purchase has a final status and every hold has
//     ended (or `--wait` runs out);
//  4. invariants, from the database and the API (bench/invariants.ts); any failure exits 1;
//  5. settlement: `--backlog` purchases are stored by the API alone (`npm run server`), then the
//     worker alone (`npm run worker`) is started and timed deciding them: decisions per second
//     with nothing else running (for at most `--backlog-seconds`).
//  Reads (bench/reads.ts): during the sale and the drain, `--followers` buyers follow their queued
//  bookings (the Location of each 202, plain polling or ?wait=); after it, `--reads` reads of the
//  Locations from `--readers` connections, against a no-op GET ceiling measured first.
//  With --buyer-tokens (bench/buyer-tokens.ts) the service runs with BUYER_AUTH=jwt: every crowd
//  user signs in first and sends its token with each purchase (no user_id) and each read as a buyer;
//  the ceilings get the same headers.
// Without --url it runs the real service on a fresh database per mode and stops both after: an
// embedded PostgreSQL, or a new database on the server of `--database-url`, dropped after.
// Writes bench/results/<time>-<mode>.json and .svg; --json prints each mode's JSON, one line each.
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { startIdentityProvider } from './buyer-tokens.ts'
import { measureCeilings } from './ceiling.ts'
import { renderChart } from './chart.ts'
import { runMode } from './mode.ts'
import { parseBenchOptions } from './options.ts'
import { summarizeProfiles } from './profile.ts'
import { printTable } from './report.ts'

// Where each step lives: options.ts (flags), ceiling.ts (1), sale.ts, load.ts and holds.ts (2-3),
// invariants.ts (4), settlement.ts (5), mode.ts (2-5 for one worker mode, on a database of its
// own from run-database.ts and a service started by service.ts), cpu.ts, report.ts (JSON, table).
const options = parseBenchOptions()
const { concurrency, requests, quota, serialRequests } = options
const log = (line: string): void => { if (!options.quiet) process.stderr.write(line + '\n') }

let exitCode: number
try {
  const startedAt = new Date()
  // With --buyer-tokens, the identity provider every crowd signs in with, and every service trusts.
  const identity = options.buyerTokens ? await startIdentityProvider() : undefined
  // 1. The ceiling, measured first, while nothing else runs.
  const { ceilingRps, readCeilingRps } = await measureCeilings(options, log, identity)

  await mkdir(options.out, { recursive: true })
  const stamp = startedAt.toISOString().replaceAll(':', '-').replace(/\..*/, '')
  const results: Array<Record<string, unknown>> = []
  for (const mode of options.workerModes) {
    // The serial worker settles a few hundred purchases a second: it gets a smaller sale with the
    // same seats-to-requests ratio, so it ends in about a minute rather than many.
    const modeRequests = mode === 'serial' && options.url === undefined ? Math.min(requests, serialRequests) : requests
    const modeQuota = Math.max(1, Math.round(quota * modeRequests / requests))
    const stem = path.join(options.out, `flash-sale-${stamp}-${mode}`)
    const profileDir = options.profile ? `${stem}-profiles` : undefined
    const params = { mode, requests: modeRequests, quota: modeQuota, ceilingRps, readCeilingRps, startedAt, profileDir, identity }
    const { samples, ...result } = await runMode(options, log, params)
    results.push(result)
    await writeFile(`${stem}.json`, JSON.stringify(result, null, 2) + '\n')
    await writeFile(`${stem}.svg`, await renderChart(samples, ceilingRps,
      `Flash sale: ${modeRequests} requests${options.buyerTokens ? ' with buyer tokens' : ''}, ${result.quota as number} seats${options.holdSeconds > 0 ? ` held ${options.holdSeconds} s` : ''}, concurrency ${concurrency}, worker ${mode}`))
    result.written = [`${stem}.json`, `${stem}.svg`]
    if (profileDir !== undefined) {
      result.profiles = profileDir
      log(`\nwhere the time went (${mode}), self time by function across ${profileDir}:`)
      process.stderr.write((await summarizeProfiles(profileDir)) + '\n')
    }
  }
  printTable(results, options.waitS)
  if (options.json) for (const result of results) process.stdout.write(JSON.stringify(result) + '\n')
  exitCode = results.every((result) => result.invariants_ok === true) ? 0 : 1
} catch (err) {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`)
  exitCode = 1
}
process.exitCode = exitCode
