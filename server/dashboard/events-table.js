// @ts-check
// The totals tiles and the table of events, as the stream's `state` gives them.

/** @import { DashboardEvent, DashboardState } from './stream.js' */

import { byId, html } from './dom.js'
import { duration, integer } from './format.js'

const STATUS_LABELS = { scheduled: 'scheduled', open: 'on sale', sold_out: 'sold out', closed: 'closed' }

/**
 * The Held cell: a dash for an event that holds no seats (its purchases are final at once), so that
 * the events with holds stand out; the count otherwise, 0 included.
 * @param {DashboardEvent} event
 */
function heldCell (event) {
  if (event.hold_seconds === null && event.held === 0) {
    return html('td', { class: 'num none', 'data-field': 'held', title: 'no holds: purchases are final at once' }, '–')
  }
  const title = event.hold_seconds === null ? 'new purchases are final at once; these holds still run' : `a hold lasts ${duration(event.hold_seconds)}`
  return html('td', { class: 'num', 'data-field': 'held', title }, integer.format(event.held))
}

/**
 * The seat bar: sold, then held, out of the total (the rest, the bar's ground, is left on sale).
 * @param {DashboardEvent} event
 */
function seatsCell (event) {
  const { sold, held, total_quota: total } = event
  const share = (/** @type {number} */ seats) => total > 0 ? Math.min(100, seats / total * 100) : 0
  const soldShare = share(sold)
  const title = held > 0
    ? `${integer.format(sold)} sold and ${integer.format(held)} held of ${integer.format(total)} seats`
    : `${integer.format(sold)} of ${integer.format(total)} seats sold`
  const bar = html('div', { class: 'bar', title })
  const soldFill = html('div', { class: 'bar-fill' })
  soldFill.style.width = `${soldShare}%`
  bar.append(soldFill)
  const label = html('span', { class: 'bar-label' }, integer.format(sold))
  if (held > 0) {
    const heldFill = html('div', { class: 'bar-fill bar-held' })
    heldFill.style.width = `${Math.min(100 - soldShare, share(held))}%`
    bar.append(heldFill)
    label.append(' + ', html('span', { class: 'held' }, `${integer.format(held)} held`))
  }
  label.append(` / ${integer.format(total)}`)
  const cell = html('td', { class: 'bar-col' })
  cell.append(bar, label)
  return cell
}

/** @param {DashboardState} state */
export function renderState (state) {
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
    row.append(html('td', { class: 'num', 'data-field': 'sold' }, integer.format(event.sold)), heldCell(event))
    for (const [field, value] of /** @type {const} */ ([['pending', event.pending], ['left', event.available_quota], ['cancelled', event.cancelled]])) {
      row.append(html('td', { class: 'num', 'data-field': field }, integer.format(value)))
    }
    row.append(seatsCell(event))
    return row
  })
  byId('events').querySelector('tbody')?.replaceChildren(...rows)
}
