// Usage: imported by bench/flash-sale.ts: a database of its own for each worker mode's run.
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import { startEmbeddedPostgres } from '../db/embedded.ts'

/** A database of its own for one mode's run: on an embedded PostgreSQL, or new on --database-url's server. */
export interface RunDatabase {
  url: string
  /** Where the server's files are (its postmaster.pid gives PostgreSQL's CPU), when this machine can read them. */
  clusterDir: string | undefined
  /** Which server: "embedded", or the host and port of --database-url's. */
  server: string
  drop: () => Promise<void>
}

/** Without `serverUrl` (--database-url): a throwaway embedded PostgreSQL; with it, a new database there. */
export async function createRunDatabase (serverUrl: string | undefined, mode: string, startedAt: Date): Promise<RunDatabase> {
  if (serverUrl === undefined) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'boxoffice-bench-'))
    const embedded = await startEmbeddedPostgres({ dataDir, database: 'boxoffice' })
    return {
      url: embedded.url,
      clusterDir: path.join(embedded.dataDir, 'postgres'),
      server: 'embedded',
      drop: async () => {
        await embedded.stop()
        await rm(dataDir, { recursive: true, force: true })
      }
    }
  }
  const name = `boxoffice_bench_${startedAt.toISOString().replace(/\D/g, '').slice(0, 14)}_${mode}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  let clusterDir: string | undefined
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.unsafe(`CREATE DATABASE ${name}`)
    // Readable by superusers (and pg_read_all_settings); a server elsewhere simply has no CPU figure.
    const [row] = await admin<[{ dir: string }?]>`SELECT current_setting('data_directory') AS dir`.catch(() => [])
    clusterDir = row?.dir
  } finally {
    await admin.end()
  }
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    clusterDir,
    server: `${url.hostname}:${url.port === '' ? '5432' : url.port}`,
    drop: async () => {
      const dropper = postgres(serverUrl, { max: 1, onnotice: () => {} })
      try {
        await dropper.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await dropper.end()
      }
    }
  }
}
