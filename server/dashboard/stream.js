// @ts-check
// The page's connection to /dashboard/stream (server-sent events: `history` once, then `state`
// when it changes and `point` every second): it passes what the stream says on, and shows in the
// header whether the stream is live.

/**
 * What the stream says, as GET /dashboard/stream's documentation describes it.
 * @typedef {{ id: string, name: string, total_quota: number, available_quota: number, sold: number,
 *   held: number, hold_seconds: number | null, pending: number, cancelled: number,
 *   sale_status: 'scheduled' | 'open' | 'sold_out' | 'closed' }} DashboardEvent
 * @typedef {{ events: DashboardEvent[], events_total: number, queue_depth: number }} DashboardState
 * @typedef {{ t: number, decisions_per_second: number }} Point
 * @typedef {{ tick_ms: number, window_ms: number, points: Point[] }} StreamHistory
 * @typedef {{ history: (history: StreamHistory) => void, point: (point: Point) => void,
 *   state: (state: DashboardState) => void }} StreamListeners
 * @typedef {'connecting' | 'live' | 'problem' | 'reconnecting' | 'refused'} ConnectionState
 */

import { byId } from './dom.js'
import { clock } from './format.js'

// After the server refused the stream (too many dashboards open), try again after this long.
const REFUSED_RETRY_MS = 10_000

/**
 * A server-sent event's JSON payload, as the stream's documentation describes it.
 * @template T
 * @param {MessageEvent} event
 * @returns {T}
 */
function payload (event) {
  /** @type {unknown} */
  const value = JSON.parse(String(event.data))
  return /** @type {T} */ (value)
}

/** The header's indicator: live (with the time of the last point), stale, a problem, or lost. */
class ConnectionIndicator {
  /** @type {ConnectionState} */
  #state = 'connecting'
  #problem = ''
  #lastMessageAt = 0
  #lastPointAt = 0
  #tickMs = 1000

  /** @param {StreamHistory} history */
  sawHistory (history) {
    this.#tickMs = history.tick_ms
    this.#lastPointAt = history.points.at(-1)?.t ?? 0
    this.#seen()
  }

  sawState () {
    this.#problem = ''
    this.#seen()
  }

  /** @param {Point} point */
  sawPoint (point) {
    this.#lastPointAt = point.t
    this.#problem = ''
    this.#seen()
  }

  /** @param {string} message */
  sawProblem (message) {
    this.#problem = message
    this.#lastMessageAt = Date.now()
    this.set('problem')
  }

  /** @param {ConnectionState} next */
  set (next) {
    this.#state = next
    this.render()
  }

  render () {
    const silentFor = Date.now() - this.#lastMessageAt
    /** @type {ConnectionState | 'stale'} */
    let shown = this.#state
    let text = 'connecting…'
    if (this.#state === 'live' && silentFor > 3 * this.#tickMs) {
      shown = 'stale'
      text = `no update for ${Math.round(silentFor / 1000)} s`
    } else if (this.#state === 'live') {
      text = this.#lastPointAt > 0 ? `live · ${clock.format(this.#lastPointAt)}` : 'live'
    } else if (this.#state === 'problem') {
      text = this.#problem
    } else if (this.#state === 'reconnecting') {
      text = 'connection lost; reconnecting…'
    } else if (this.#state === 'refused') {
      text = `the server has too many dashboards open; trying again in ${REFUSED_RETRY_MS / 1000} s`
    }
    byId('connection').dataset.state = shown
    byId('connection-text').textContent = text
  }

  #seen () {
    this.#lastMessageAt = Date.now()
    if (this.#state !== 'live' && this.#problem === '') this.set('live')
  }
}

/**
 * Opens the stream and keeps it open; `on` hears each of its messages.
 * @param {StreamListeners} on
 */
export function followStream (on) {
  const indicator = new ConnectionIndicator()
  // Re-rendered every second, so that a stream gone silent shows as stale.
  setInterval(() => { indicator.render() }, 1000)
  connect(indicator, on)
}

/**
 * @param {ConnectionIndicator} indicator
 * @param {StreamListeners} on
 */
function connect (indicator, on) {
  const source = new EventSource('/dashboard/stream')
  source.addEventListener('history', (event) => {
    /** @type {StreamHistory} */
    const history = payload(event)
    indicator.sawHistory(history)
    on.history(history)
  })
  source.addEventListener('state', (event) => {
    /** @type {DashboardState} */
    const state = payload(event)
    indicator.sawState()
    on.state(state)
  })
  source.addEventListener('point', (event) => {
    /** @type {Point} */
    const point = payload(event)
    indicator.sawPoint(point)
    on.point(point)
  })
  source.addEventListener('problem', (event) => {
    indicator.sawProblem(/** @type {{ message: string }} */ (payload(event)).message)
  })
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (an error status, not a dropped stream): EventSource gives up, we do not.
      indicator.set('refused')
      setTimeout(() => { connect(indicator, on) }, REFUSED_RETRY_MS)
    } else {
      indicator.set('reconnecting')
    }
  })
}
