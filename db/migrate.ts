import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { Kysely } from 'kysely'
import { FileMigrationProvider, Migrator, type MigrationResultSet } from 'kysely/migration'

const MIGRATION_FOLDER = path.join(import.meta.dirname, 'migrations')

export function createMigrator<DB> (db: Kysely<DB>): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATION_FOLDER })
  })
}

/** Applies every pending migration; Kysely's lock table makes concurrent callers safe. */
export async function migrateToLatest<DB> (db: Kysely<DB>): Promise<MigrationResultSet> {
  const result = await createMigrator(db).migrateToLatest()
  if (result.error !== undefined) {
    const failed = result.results?.find((r) => r.status === 'Error')
    const reason = result.error instanceof Error ? result.error.message : JSON.stringify(result.error)
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${reason}`, { cause: result.error })
  }
  return result
}
