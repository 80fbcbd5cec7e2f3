// @ts-check
// The totals tiles and the table of events, as the stream's `state` gives them.

/** @import { DashboardState } from './stream.js' */

import { byId, html } from './dom.js'
import { integer } from './format.js'

const STATUS_LABELS = { scheduled: 'scheduled', open: 'on sale', sold_out: 'sold out', closed: 'closed' }

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
}
