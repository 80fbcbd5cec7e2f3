import { randomFillSync } from 'node:crypto'
import { v7 } from 'uuid'

// uuid's v7() asks the crypto module for 16 fresh bytes per id; under a flood that call was the
// API's largest single cost after garbage collection (bench --profile). The bytes come from a pool
// here instead, refilled 4 KB at a time, and the time/sequence state is kept as v7() keeps it.
const POOL_BYTES = 4096
const pool = new Uint8Array(POOL_BYTES)
let poolOffset = POOL_BYTES
let lastMs = -Infinity
let sequence = 0

function randomBytes16 (): Uint8Array {
  if (poolOffset + 16 > POOL_BYTES) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const bytes = pool.subarray(poolOffset, poolOffset + 16)
  poolOffset += 16
  return bytes
}

/**
 * A UUIDv7, strictly increasing within this process (RFC 9562's monotonic counter, as uuid's v7()
 * without options): purchases and cancellations sort in the order the API took them. Booking ids
 * and job ids come from here, so a cancellation's job always sorts after the purchases before it.
 */
export function timeOrderedId (): string {
  const random = randomBytes16()
  const now = Date.now()
  if (now > lastMs) {
    lastMs = now
    // A random start within the millisecond, leaving room to count up (uuid's v7Sequence).
    sequence = (((random[6] as number) & 0x7f) << 24) | ((random[7] as number) << 16) | ((random[8] as number) << 8) | (random[9] as number)
  } else {
    sequence = (sequence + 1) | 0
    if (sequence === 0) lastMs += 1
  }
  return v7({ msecs: lastMs, seq: sequence, random })
}
