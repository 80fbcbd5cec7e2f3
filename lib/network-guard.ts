import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'

// Where a webhook may be sent (docs/decisions/0013-webhooks-outbox.md): a receiver's URL is the
// seller's to choose, so without a check it could point the service at its own network (the
// database, a cloud metadata service at 169.254.169.254, an admin port on localhost). Only public
// unicast addresses are allowed unless private networks are allowed outright; the check runs on
// every address a name resolves to, at each delivery, and the request then goes to the address
// checked, so a name that resolves elsewhere a moment later (DNS rebinding) gains nothing.

/** An address class, as ipaddr.js names it: 'unicast' is the public internet. */
export function addressRange (address: string): string {
  const parsed = ipaddr.parse(address)
  const plain = parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed
  return plain.range()
}

export class RefusedAddressError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'RefusedAddressError'
  }
}

export interface ResolvedTarget {
  address: string
  family: 4 | 6
}

/**
 * The address to connect to for `hostname`: resolved (or taken as written, for an IP literal), and
 * refused with RefusedAddressError when any address it resolves to is not public, unless
 * `allowPrivate`. A name that does not resolve throws the resolver's error.
 */
export async function resolvePublicTarget (hostname: string, allowPrivate: boolean): Promise<ResolvedTarget> {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
  const literal = isIP(bare)
  const addresses = literal !== 0 ? [{ address: bare, family: literal }] : await lookup(bare, { all: true, verbatim: true })
  if (addresses.length === 0) throw new RefusedAddressError(`${hostname} resolves to no address`)
  if (!allowPrivate) {
    for (const { address } of addresses) {
      const range = addressRange(address)
      if (range !== 'unicast') {
        throw new RefusedAddressError(`${hostname} resolves to ${address} (${range}), not a public address; set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow private networks`)
      }
    }
  }
  const [first] = addresses as [{ address: string, family: number }]
  return { address: first.address, family: first.family === 6 ? 6 : 4 }
}
