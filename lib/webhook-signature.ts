import { createHmac, randomBytes } from 'node:crypto'

// Signing as the Standard Webhooks specification fixes it (https://www.standardwebhooks.com), so a
// receiver verifies with its maintained libraries (the `standardwebhooks` package and its ports):
// the secret is `whsec_` + base64 of random bytes; the signature is HMAC-SHA256, keyed with those
// bytes, of `<webhook-id>.<webhook-timestamp>.<body>`, sent as `v1,<base64>`.

const SECRET_PREFIX = 'whsec_'

/** A new endpoint secret: 32 random bytes. */
export function newWebhookSecret (): string {
  return `${SECRET_PREFIX}${randomBytes(32).toString('base64')}`
}

/** The three headers of one delivery attempt of a message. */
export function webhookHeaders (secret: string, messageId: string, at: Date, body: string): Record<string, string> {
  const timestamp = Math.floor(at.getTime() / 1000).toString()
  const key = Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64')
  const signature = createHmac('sha256', key).update(`${messageId}.${timestamp}.${body}`).digest('base64')
  return { 'webhook-id': messageId, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` }
}
