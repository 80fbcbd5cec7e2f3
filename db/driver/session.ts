/**
 * Settings every connection the service opens starts with, pg-boss's own included
 * (purchase/queue.ts). JIT compilation off: it pays tens to hundreds of milliseconds of
 * compiling to save time in queries that run for seconds, and ours run for a millisecond or less.
 * PostgreSQL decides it by estimated cost (jit_above_cost), and estimates that pass the threshold
 * come from sizes, not from slowness: a claim of 4,000 ids, or a plan node disabled by an enable_*
 * setting on PostgreSQL 15-17 (10^10). PostgreSQL 15-17 as Debian, Ubuntu, the official images and
 * many managed services ship them have JIT on. (docs/decisions/0001-plans-that-hold-as-tables-grow.md)
 */
export const SERVICE_SESSION_SETTINGS = { jit: 'off' } as const

/**
 * How a pool's statements are planned, as session settings. In a sale the bookings table and the
 * queue's jobs grow from a few rows to a million within a minute, far faster than autovacuum
 * re-analyses them: a prepared statement keeps the generic plan it got at its sixth run on a
 * connection until the table is next analysed, and a plan priced on stale statistics takes a
 * partial index that held ten rows for one that still does. A plan chosen while the table was
 * small (a hash join over a sequential scan of every booking, a nested loop comparing every
 * pending booking with every decision) grows slower with every booking. What holds instead
 * (docs/decisions/0001-plans-that-hold-as-tables-grow.md):
 *
 * - `probesOnly`, both service pools': index scans, and nested loops whose inner side is probed
 *   anew for each outer row (sequential scans, hash and merge joins and materialised inner sides
 *   off). Their statements find bookings and jobs by key only: one row by its key, a batch by
 *   `= ANY(ids)` or through a LATERAL or scalar subquery per row, never a join a plan could turn
 *   into a scan of the table. Whatever a plan guesses, it probes the rows it was given, however
 *   large the table has grown, so the generic plans are kept: planning each run instead cost a
 *   third more PostgreSQL CPU per stored purchase, twice per read, and a third of the worker's
 *   pace (PostgreSQL 15 and 18).
 * - `default`: as PostgreSQL plans, for migrations and tools that read whole tables.
 *
 * Every table a statement reads on such a pool needs an index its conditions or order can use: a
 * plan that must scan one holds a disabled node, which PostgreSQL before 18 costs at 10^10 (what
 * made every statement JIT-compiled on PostgreSQL 15 with JIT on). test/db/statement-plans.test.ts
 * checks every statement the service runs. Operators' whole-table reads use withEveryPlan.
 */
const PROBES_ONLY = { enable_seqscan: 'off', enable_hashjoin: 'off', enable_mergejoin: 'off', enable_material: 'off' } as const

export const PLANNING = {
  probesOnly: PROBES_ONLY,
  default: {}
} as const satisfies Record<string, Record<string, string>>

export type Planning = keyof typeof PLANNING

/** The planner settings withEveryPlan turns back on. */
export const PROBES_ONLY_SETTINGS = Object.keys(PROBES_ONLY)
