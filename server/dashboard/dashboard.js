// @ts-check
// The live sales dashboard. It follows /dashboard/stream and draws what it says: the totals and
// the events table on each `state`, the chart on each `point`; the form posts to /buy and follows
// the booking. No framework and no build step: this module and those it imports are served as
// they are (server/routes/dashboard.ts lists them). Every element is built with the DOM API; the
// page's CSP forbids string-to-HTML sinks.

import { DecisionsChart } from './chart.js'
import { renderState } from './events-table.js'
import { offerEvents, startPurchaseForm } from './purchase.js'
import { followStream } from './stream.js'

const chart = new DecisionsChart()

startPurchaseForm()
window.addEventListener('resize', () => { chart.draw() })
chart.draw()
followStream({
  history: (history) => { chart.reset(history) },
  point: (point) => { chart.add(point) },
  state: (state) => {
    renderState(state)
    offerEvents(state.events)
  }
})
