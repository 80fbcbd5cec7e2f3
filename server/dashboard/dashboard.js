// @ts-check
// The live sales dashboard. It follows /dashboard/stream (server-sent events: `history` once, then
// `state` when it changes and `point` every second) and draws what it says; the form posts to
// /buy and follows the booking. No framework and no build step: this file is served as it is.
// Every element is built with the DOM API; the page's CSP forbids string-to-HTML sinks.

/**
 * @typedef {{ id: string, name: string, total_quota: number, available_quota: number, sold: number,
 *   pending: number, cancelled: number, sale_status: 'scheduled' | 'open' | 'sold_out' | 'closed' }} DashboardEvent
 * @typedef {{ events: DashboardEvent[], events_total: number, queue_depth: number }} DashboardState
 * @typedef {{ t: number, decisions_per_second: number }} Point
 * @typedef {{ tick_ms: number, window_ms: number, points: Point[] }} StreamHistory
 * @typedef {{ booking_id: string, status: string, reason?: string | null, quantity?: number,
 *   position?: number | null, estimated_wait_ms?: number | null, message?: string }} Booking
 */

// The service creates this event on an empty database; the form picks it when it is there.
const DEMO_EVENT_NAME = 'Concert Event'
// The chart spans at least this, at most the history the server keeps.
const MIN_CHART_SPAN_MS = 60_000
// How long the form follows a booking (GET /bookings/:id?wait=10, up to this many times).
const FOLLOW_ROUNDS = 6
// After the server refused the stream (too many dashboards open), try again after this long.
const REFUSED_RETRY_MS = 10_000

const integer = new Intl.NumberFormat('en-US')
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 })
const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })
const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' })

const STATUS_LABELS = { scheduled: 'scheduled', open: 'on sale', sold_out: 'sold out', closed: 'closed' }

/** @param {string} id */
function byId (id) {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`the page has no #${id}`)
  return element
}

/**
 * @param {string} tag
 * @param {Record<string, string>} [attributes]
 * @param {string} [text]
 */
function html (tag, attributes = {}, text) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value)
  if (text !== undefined) element.textContent = text
  return element
}

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

const SVG_NS = 'http://www.w3.org/2000/svg'
/**
 * @param {string} tag
 * @param {Record<string, string | number>} attributes
 * @param {string} [text]
 */
function svg (tag, attributes, text) {
  const element = document.createElementNS(SVG_NS, tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value))
  if (text !== undefined) element.textContent = text
  return element
}

/** A random (version 4) UUID; crypto.randomUUID exists only on HTTPS and localhost pages. */
function randomUuid () {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

// ---- what the stream said ------------------------------------------------------------------

/** @type {Point[]} */
let points = []
let tickMs = 1000
let windowMs = 5 * 60_000
/** @type {DashboardState | undefined} */
let state
let lastMessageAt = 0
let lastPointAt = 0
let connection = 'connecting'
let problem = ''

function seen () {
  lastMessageAt = Date.now()
  if (connection !== 'live' && problem === '') setConnection('live')
}

/** @param {string} next */
function setConnection (next) {
  connection = next
  renderConnection()
}

function renderConnection () {
  const element = byId('connection')
  const silentFor = Date.now() - lastMessageAt
  let shown = connection
  let text = 'connecting…'
  if (connection === 'live' && silentFor > 3 * tickMs) {
    shown = 'stale'
    text = `no update for ${Math.round(silentFor / 1000)} s`
  } else if (connection === 'live') {
    text = lastPointAt > 0 ? `live · ${clock.format(lastPointAt)}` : 'live'
  } else if (connection === 'problem') {
    text = problem
  } else if (connection === 'reconnecting') {
    text = 'connection lost; reconnecting…'
  } else if (connection === 'refused') {
    text = `the server has too many dashboards open; trying again in ${REFUSED_RETRY_MS / 1000} s`
  }
  element.dataset.state = shown
  byId('connection-text').textContent = text
}

function connect () {
  const source = new EventSource('/dashboard/stream')
  source.addEventListener('history', (event) => {
    /** @type {StreamHistory} */
    const history = payload(event)
    tickMs = history.tick_ms
    windowMs = history.window_ms
    points = history.points
    lastPointAt = points.at(-1)?.t ?? 0
    seen()
    drawChart()
  })
  source.addEventListener('state', (event) => {
    state = /** @type {DashboardState} */ (payload(event))
    problem = ''
    seen()
    renderState()
  })
  source.addEventListener('point', (event) => {
    /** @type {Point} */
    const point = payload(event)
    points.push(point)
    while (points.length > 0 && (points[0]?.t ?? 0) < point.t - windowMs) points.shift()
    lastPointAt = point.t
    problem = ''
    seen()
    drawChart()
  })
  source.addEventListener('problem', (event) => {
    problem = /** @type {{ message: string }} */ (payload(event)).message
    lastMessageAt = Date.now()
    setConnection('problem')
  })
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (an error status, not a dropped stream): EventSource gives up, we do not.
      setConnection('refused')
      setTimeout(connect, REFUSED_RETRY_MS)
    } else {
      setConnection('reconnecting')
    }
  })
}

// ---- events and totals -----------------------------------------------------------------------

function renderState () {
  if (state === undefined) return
  const { events, events_total: total, queue_depth: queueDepth } = state
  byId('queue-depth').textContent = integer.format(queueDepth)
  byId('events-total').textContent = integer.format(total)
  byId('events-open').textContent = integer.format(events.filter((e) => e.sale_status === 'open').length)
  byId('events-note').textContent = total > events.length
    ? `the newest ${integer.format(events.length)} of ${integer.format(total)}`
    : 'newest first'
  byId('events-empty').hidden = events.length > 0

  const rows = events.map((event) => {
    const row = html('tr', { 'data-event-id': event.id })
    row.append(html('th', { scope: 'row', class: 'name', title: event.id }, event.name))
    const status = html('td')
    status.append(html('span', { class: `badge status-${event.sale_status}` }, STATUS_LABELS[event.sale_status]))
    row.append(status)
    for (const [field, value] of /** @type {const} */ ([['sold', event.sold], ['pending', event.pending], ['left', event.available_quota], ['cancelled', event.cancelled]])) {
      row.append(html('td', { class: 'num', 'data-field': field }, integer.format(value)))
    }
    const bar = html('div', { class: 'bar', title: `${integer.format(event.sold)} of ${integer.format(event.total_quota)} seats sold` })
    const fill = html('div', { class: 'bar-fill' })
    fill.style.width = `${event.total_quota > 0 ? Math.min(100, event.sold / event.total_quota * 100) : 0}%`
    bar.append(fill)
    const seats = html('td', { class: 'bar-col' })
    seats.append(bar, html('span', { class: 'bar-label' }, `${integer.format(event.sold)} / ${integer.format(event.total_quota)}`))
    row.append(seats)
    return row
  })
  byId('events').querySelector('tbody')?.replaceChildren(...rows)
  syncEventChoices(events)
}

let choicesKey = ''
/** @param {DashboardEvent[]} events */
function syncEventChoices (events) {
  const key = events.map((e) => `${e.id}\u0000${e.name}`).join('\u0001')
  if (key === choicesKey) return
  choicesKey = key
  const select = /** @type {HTMLSelectElement} */ (byId('buy-event'))
  const chosen = select.value !== '' ? select.value : (events.find((e) => e.name === DEMO_EVENT_NAME) ?? events[0])?.id
  select.replaceChildren(...events.map((e) => new Option(e.name, e.id)))
  if (chosen !== undefined && events.some((e) => e.id === chosen)) select.value = chosen
}

// ---- the chart -------------------------------------------------------------------------------

/**
 * A round step for about four gridlines up to `peak`: 1, 2, 2.5 or 5 times a power of ten.
 * @param {number} peak
 */
function gridStep (peak) {
  const rough = Math.max(peak, 10) / 4
  const magnitude = 10 ** Math.floor(Math.log10(rough))
  for (const step of [1, 2, 2.5, 5]) if (step * magnitude >= rough) return step * magnitude
  return 10 * magnitude
}

const TIME_STEPS_MS = [5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000]

function drawChart () {
  const chart = byId('chart')
  const width = Math.max(200, chart.clientWidth)
  const height = Math.max(120, chart.clientHeight)
  chart.setAttribute('viewBox', `0 0 ${width} ${height}`)
  const latest = points.at(-1)
  const first = points[0]
  if (latest === undefined || first === undefined) {
    chart.replaceChildren(svg('text', { x: width / 2, y: height / 2, class: 'chart-empty', 'text-anchor': 'middle' }, 'waiting for the first points…'))
    chart.dataset.points = '0'
    renderRate([])
    return
  }
  const pad = { left: 52, right: 20, top: 14, bottom: 26 }
  const end = latest.t
  const span = Math.min(windowMs, Math.max(MIN_CHART_SPAN_MS, end - first.t))
  const start = end - span
  const visible = points.filter((p) => p.t >= start)
  const peak = Math.max(0, ...visible.map((p) => p.decisions_per_second))
  const step = gridStep(peak)
  const top = Math.max(step, Math.ceil(peak / step) * step)
  /** @param {number} t */
  const x = (t) => pad.left + (t - start) / span * (width - pad.left - pad.right)
  /** @param {number} v */
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom)

  /** @type {SVGElement[]} */
  const parts = []
  for (let value = 0; value <= top; value += step) {
    parts.push(svg('line', { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: value === 0 ? 'axis' : 'grid' }))
    parts.push(svg('text', { x: pad.left - 8, y: y(value) + 4, class: 'tick', 'text-anchor': 'end' }, compact.format(value)))
  }
  const every = TIME_STEPS_MS.find((s) => span / s <= 6) ?? 300_000
  for (let t = Math.ceil(start / every) * every; t <= end; t += every) {
    parts.push(svg('line', { x1: x(t), x2: x(t), y1: y(0), y2: y(0) + 4, class: 'axis' }))
    parts.push(svg('text', { x: x(t), y: height - 6, class: 'tick', 'text-anchor': 'middle' }, clock.format(t)))
  }

  // A gap in the points (nobody was watching, the database was away) breaks the line.
  /** @type {Point[][]} */
  const segments = []
  for (const point of visible) {
    const segment = segments.at(-1)
    const before = segment?.at(-1)
    if (segment === undefined || before === undefined || point.t - before.t > 2.5 * tickMs) segments.push([point])
    else segment.push(point)
  }
  for (const segment of segments) {
    const line = segment.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(p.decisions_per_second).toFixed(1)}`).join('')
    const head = segment[0]
    const tail = segment.at(-1)
    if (head === undefined || tail === undefined) continue
    parts.push(svg('path', { d: `${line}L${x(tail.t).toFixed(1)},${y(0)}L${x(head.t).toFixed(1)},${y(0)}Z`, class: 'area' }))
    parts.push(svg('path', { d: line, class: 'line' }))
  }
  parts.push(svg('circle', { cx: x(latest.t), cy: y(latest.decisions_per_second), r: 3.5, class: 'dot' }))
  chart.replaceChildren(...parts)
  chart.dataset.points = String(visible.length)
  byId('chart-span').textContent = `the workers' pace over the last ${span >= 120_000 ? `${Math.round(span / 60_000)} minutes` : `${Math.round(span / 1000)} seconds`}, one point a second`
  renderRate(visible)
}

/** @param {Point[]} visible */
function renderRate (visible) {
  const latest = visible.at(-1)
  byId('rate-now').textContent = latest === undefined ? '–' : decimal.format(latest.decisions_per_second)
  byId('rate-peak').textContent = visible.length === 0 ? '–' : decimal.format(Math.max(...visible.map((p) => p.decisions_per_second)))
}

// ---- try a purchase --------------------------------------------------------------------------

const userId = randomUuid()

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

/** @param {Booking} booking */
function showBooking (booking) {
  let detail = ''
  if (booking.status === 'failed') detail = booking.reason ?? ''
  else if (booking.status === 'pending' && typeof booking.position === 'number') {
    detail = `position ${integer.format(booking.position)}${typeof booking.estimated_wait_ms === 'number' ? `, about ${decimal.format(booking.estimated_wait_ms / 1000)} s` : ''}`
  } else if (booking.status === 'success' && typeof booking.quantity === 'number') detail = `${booking.quantity} seat${booking.quantity === 1 ? '' : 's'}`
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

// ---- start -----------------------------------------------------------------------------------

byId('buy-user').textContent = userId
byId('buy-form').addEventListener('submit', (event) => {
  event.preventDefault()
  void buy()
})
window.addEventListener('resize', drawChart)
setInterval(renderConnection, 1000)
drawChart()
connect()
