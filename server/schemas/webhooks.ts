import { Type } from '@sinclair/typebox'
import { WEBHOOK_EVENT_TYPES } from '../../purchase/webhook-messages.ts'
import { Uuid } from './common.ts'

const EventType = Type.Union(WEBHOOK_EVENT_TYPES.map((type) => Type.Literal(type)))

export const WebhookBody = Type.Object({
  url: Type.String({
    minLength: 1,
    maxLength: 2048,
    description: 'Where to POST the messages: an https:// URL whose addresses are public (http:// and private addresses only with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)'
  }),
  events: Type.Optional(Type.Array(EventType, {
    minItems: 1,
    uniqueItems: true,
    description: `The message types to send (default: all of ${WEBHOOK_EVENT_TYPES.join(', ')})`
  }))
}, { additionalProperties: false, examples: [{ url: 'https://hooks.example.com/boxoffice', events: ['booking.success', 'booking.held', 'booking.expired'] }] })

const endpointFields = {
  id: Uuid,
  url: Type.String(),
  events: Type.Array(EventType),
  created_at: Type.String({ format: 'date-time' })
}

export const CreatedWebhook = Type.Object({
  ...endpointFields,
  secret: Type.String({ description: 'The signing secret (whsec_...), shown only in this answer: keep it where the receiver verifies signatures' })
})

export const Webhook = Type.Object({
  ...endpointFields,
  disabled_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Set when the endpoint stopped taking deliveries (its receiver answered 410 Gone)' }),
  disabled_reason: Type.Union([Type.String(), Type.Null()])
})

export const WebhookList = Type.Object({ webhooks: Type.Array(Webhook) })

export const DeliveriesQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]{0,2}|1000)$', description: 'Most attempts to list, 1-1000 (default 100)' }))
}, { additionalProperties: false })

export const DeliveryList = Type.Object({
  deliveries: Type.Array(Type.Object({
    message_id: Type.String({ description: 'The webhook-id header: the same for every attempt of a message' }),
    type: EventType,
    attempt: Type.Integer({ description: '1 for the first attempt' }),
    status_code: Type.Union([Type.Integer(), Type.Null()], { description: 'What the receiver answered; null when it did not (see error)' }),
    error: Type.Union([Type.String(), Type.Null()], { description: 'Why no answer came: refused address, connection error, timeout' }),
    response_excerpt: Type.Union([Type.String(), Type.Null()], { description: 'The first 256 bytes of the receiver\'s answer' }),
    duration_ms: Type.Integer(),
    attempted_at: Type.String({ format: 'date-time' })
  }))
}, { description: 'Attempts of the last 7 days, newest first' })
