import { randomFillSync } from 'node:crypto'
import { v5, v7 } from 'uuid'

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

// The namespace of buyer ids (a random UUID, fixed forever: changing it changes every buyer's id).
const BUYER_NAMESPACE = 'a3f5c1e2-6b7d-4c8e-9f10-2b3c4d5e6f70'

/**
 * The buyer id of an identity provider's user: a UUIDv5 (RFC 9562, SHA-1 of this namespace and
 * `<iss> <newline> <sub>`), so the same (issuer, subject) is always the same user_id, and two
 * issuers' subjects never meet. `sub` alone is not an identity (OpenID Connect Core 5.7).
 */
export function buyerId (issuer: string, subject: string): string {
  return v5(`${issuer}\n${subject}`, BUYER_NAMESPACE)
}
