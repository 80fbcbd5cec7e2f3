// Usage: imported by bench/flash-sale.ts: with --buyer-tokens, the identity provider the crowd
// signs in with.
//
// With BUYER_AUTH=jwt the service trusts the seller's identity provider (server/buyer-auth.ts): a
// buyer sends the provider's token, and its user_id is what the service derives from the token's
// (iss, sub), never the body's. The bench plays that provider: one RS256 key pair per run, whose
// public key each service it starts is given, and one token per crowd user, signed before the load
// starts (a buyer signs in before the sale; signing is the provider's CPU, not the service's).
import { exportSPKI, generateKeyPair, SignJWT } from 'jose'
import { buyerId } from '../lib/ids.ts'

/** Who buys: the user_id the service knows the buyer by, and with buyer tokens the Authorization header that proves it. */
export interface Buyer {
  readonly userId: string
  readonly authorization: string | undefined
}

export interface IdentityProvider {
  /** What a service needs to trust this provider's tokens (the no-op server takes it too: bodies without user_id). */
  readonly serviceEnv: Readonly<Record<string, string>>
  /** One buyer per subject (the provider's user id), each with a token signed now. */
  signIn: (subjects: readonly string[]) => Promise<Buyer[]>
}

const ISSUER = 'https://id.bench.boxoffice.invalid'
const AUDIENCE = 'boxoffice'
// Far beyond any run, so no token expires mid-run. The service keeps a verified token at most 10
// minutes (server/buyer-auth.ts): a run longer than that verifies each token again then.
const TOKEN_LIFETIME = '24h'
// RS256: what OpenID Connect providers sign with unless told otherwise (the one algorithm the
// specification requires them to support), and the cheapest of the allowed ones to verify: an
// ES256 token takes about twice the CPU (decision 0014).
const ALG = 'RS256'

/** A provider with a key pair of its own: only the services this run starts trust it. */
export async function startIdentityProvider (): Promise<IdentityProvider> {
  const { privateKey, publicKey } = await generateKeyPair(ALG)
  const serviceEnv = { BUYER_AUTH: 'jwt', BUYER_JWT_ISSUER: ISSUER, BUYER_JWT_AUDIENCE: AUDIENCE, BUYER_JWT_PUBLIC_KEY: await exportSPKI(publicKey) }
  return {
    serviceEnv,
    async signIn (subjects) {
      return await Promise.all(subjects.map(async (subject) => {
        const token = await new SignJWT({}).setProtectedHeader({ alg: ALG, typ: 'JWT' })
          .setIssuer(ISSUER).setAudience(AUDIENCE).setSubject(subject).setIssuedAt().setExpirationTime(TOKEN_LIFETIME)
          .sign(privateKey)
        return { userId: buyerId(ISSUER, subject), authorization: `Bearer ${token}` }
      }))
    }
  }
}
