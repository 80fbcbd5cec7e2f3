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
