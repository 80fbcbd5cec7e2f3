// @ts-check
// The "Try a purchase" form: POST /buy as a user made up for this page load, then it follows the
// booking until it is decided.

/**
 * @import { DashboardEvent } from './stream.js'
 * @typedef {{ booking_id: string, status: string, reason?: string | null, quantity?: number,
 *   position?: number | null, estimated_wait_ms?: number | null, hold_expires_at?: string | null,
 *   message?: string }} Booking
 */

import { byId } from './dom.js'
import { clock, decimal, integer } from './format.js'

// The service creates this event on an empty database; the form picks it when it is there.
const DEMO_EVENT_NAME = 'Concert Event'
// How long the form follows a booking (GET /bookings/:id?wait=10, up to this many times).
const FOLLOW_ROUNDS = 6

/** A random (version 4) UUID; crypto.randomUUID exists only on HTTPS and localhost pages. */
function randomUuid () {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const userId = randomUuid()

/**
 * A response's JSON body; undefined when it has none.
 * @param {Response} response
 * @returns {Promise<unknown>}
 */
async function bodyOf (response) {
  /** @type {unknown} */
  const body = await response.json().catch(() => undefined)
  return body
}

/** @param {string} status @param {string} detail @param {string} [bookingId] */
function showResult (status, detail, bookingId) {
  const result = byId('buy-result')
  result.hidden = false
  const field = (/** @type {string} */ name) => {
    const element = result.querySelector(`[data-field="${name}"]`)
    if (!(element instanceof HTMLElement)) throw new Error(`the result has no ${name}`)
    return element
  }
  if (bookingId !== undefined) field('booking-id').textContent = bookingId
  const badge = field('status')
  badge.textContent = status
  badge.className = `badge booking-${status}`
  field('detail').textContent = detail
}

/** @param {number} quantity */
const seats = (quantity) => `${integer.format(quantity)} seat${quantity === 1 ? '' : 's'}`

/** @param {Booking} booking */
function showBooking (booking) {
  let detail = ''
  if (booking.status === 'failed') detail = booking.reason ?? ''
  else if (booking.status === 'pending' && typeof booking.position === 'number') {
    detail = `position ${integer.format(booking.position)}${typeof booking.estimated_wait_ms === 'number' ? `, about ${decimal.format(booking.estimated_wait_ms / 1000)} s` : ''}`
  } else if (booking.status === 'success' && typeof booking.quantity === 'number') detail = seats(booking.quantity)
  else if (booking.status === 'held' && typeof booking.quantity === 'number') {
    // Kept for the buyer until then; the seller's confirmation of the payment makes them sold.
    const until = typeof booking.hold_expires_at === 'string' ? ` until ${clock.format(Date.parse(booking.hold_expires_at))}` : ''
    detail = `${seats(booking.quantity)}${until}, waiting for the seller's confirmation`
  }
  showResult(booking.status, detail, booking.booking_id)
}

/** @param {Response} response */
async function errorText (response) {
  const body = /** @type {{ code?: string, message?: string }} */ (await bodyOf(response) ?? {})
  return `${response.status} ${body.code ?? ''} ${body.message ?? response.statusText}`.replace(/\s+/g, ' ')
}

async function buy () {
  const button = /** @type {HTMLButtonElement} */ (byId('buy-button'))
  const eventId = /** @type {HTMLSelectElement} */ (byId('buy-event')).value
  const quantity = Number(/** @type {HTMLInputElement} */ (byId('buy-quantity')).value)
  button.disabled = true
  showResult('sending', '', '…')
  try {
    const response = await fetch('/buy', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event_id: eventId, user_id: userId, quantity })
    })
    if (response.status !== 200 && response.status !== 202) {
      showResult('refused', await errorText(response), '–')
      return
    }
    let booking = /** @type {Booking} */ (await bodyOf(response))
    showBooking(booking)
    // Follow the Location the service gives (it carries whatever GET /bookings/:id needs).
    const location = response.headers.get('location')
    for (let round = 0; booking.status === 'pending' && location !== null && round < FOLLOW_ROUNDS; round++) {
      const url = new URL(location, window.location.href)
      url.searchParams.set('wait', '10')
      const followed = await fetch(url.pathname + url.search)
      if (!followed.ok) {
        showResult('unknown', `following the booking: ${await errorText(followed)}`)
        return
      }
      booking = /** @type {Booking} */ (await bodyOf(followed))
      showBooking(booking)
    }
  } catch (err) {
    showResult('unknown', `network error: ${err instanceof Error ? err.message : String(err)}`)
  } finally {
    button.disabled = false
  }
}

let choicesKey = ''
/**
 * The events the form offers: those the table shows. Rebuilt only when they change, so that a
 * choice survives the stream's updates.
 * @param {DashboardEvent[]} events
 */
export function offerEvents (events) {
  const key = events.map((e) => `${e.id}\u0000${e.name}`).join('\u0001')
  if (key === choicesKey) return
  choicesKey = key
  const select = /** @type {HTMLSelectElement} */ (byId('buy-event'))
  const chosen = select.value !== '' ? select.value : (events.find((e) => e.name === DEMO_EVENT_NAME) ?? events[0])?.id
  select.replaceChildren(...events.map((e) => new Option(e.name, e.id)))
  if (chosen !== undefined && events.some((e) => e.id === chosen)) select.value = chosen
}

export function startPurchaseForm () {
  byId('buy-user').textContent = userId
  byId('buy-form').addEventListener('submit', (event) => {
    event.preventDefault()
    void buy()
  })
}
