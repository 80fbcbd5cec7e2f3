// Usage: imported by bench/flash-sale.ts: the service under load, started as the npm scripts run it
// (dev/launch-service.ts), logging at warn, and stopped by SIGTERM as an operator would.
import postgres from 'postgres'
import { answersHealth, startService, type LaunchedService } from '../dev/launch-service.ts'

export type BenchService = LaunchedService

/** Names of the CPU profiles, after the npm script each role is (bench/README.md cites them). */
const PROFILE_NAME = { all: 'sale-npm-start', api: 'settlement-npm-run-server', worker: 'settlement-npm-run-worker' } as const

/**
 * Runs one of the service's entry points (`env` holds its DATABASE_URL) and waits until it is
 * ready: GET /health answers 200 for the API, and the worker has connected to the database (it
 * logs its start at info, which the bench does not log).
 */
export async function startBenchService (role: keyof typeof PROFILE_NAME, env: Record<string, string>,
  { profileDir, quiet }: { profileDir: string | undefined, quiet: boolean }): Promise<BenchService> {
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${PROFILE_NAME[role]}.cpuprofile`]
  const launch = { env: { LOG_LEVEL: 'warn', ...env }, nodeArgs, timeoutMs: 60_000, onStderr: quiet ? undefined : (text: string) => { process.stderr.write(`  [${role}] ${text}`) } }
  if (role !== 'worker') return await startService(role, { ...launch, ready: async (service) => await answersHealth(service.base) })
  const probe = postgres(env.DATABASE_URL as string, { max: 1, onnotice: () => {} })
  try {
    return await startService(role, {
      ...launch,
      ready: async () => {
        const [row] = await probe<[{ n: string }]>`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'boxoffice-worker'`
        return Number(row.n) > 0
      }
    })
  } finally {
    await probe.end()
  }
}

/** SIGTERM, as an operator stops it: anything but exit 0 is a failure of the run. */
export async function stopOrThrow (service: BenchService | undefined, what: string): Promise<void> {
  if (service === undefined) return
  const { code, signal } = await service.stop()
  if (code !== 0) throw new Error(`${what} exited with ${code ?? signal} on SIGTERM`)
}
