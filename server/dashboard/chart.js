// @ts-check
// The chart of decisions per second (SVG, drawn from the stream's points) and the tile beside it.

/** @import { Point, StreamHistory } from './stream.js' */

import { byId, svg } from './dom.js'
import { clock, compact, decimal } from './format.js'

// The chart spans at least this, at most the history the server keeps.
const MIN_CHART_SPAN_MS = 60_000
const TIME_STEPS_MS = [5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000]

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

/** @param {Point[]} visible */
function renderRate (visible) {
  const latest = visible.at(-1)
  byId('rate-now').textContent = latest === undefined ? '–' : decimal.format(latest.decisions_per_second)
  byId('rate-peak').textContent = visible.length === 0 ? '–' : decimal.format(Math.max(...visible.map((p) => p.decisions_per_second)))
}

/** The points the stream sent within its window, and their drawing. */
export class DecisionsChart {
  /** @type {Point[]} */
  #points = []
  #tickMs = 1000
  #windowMs = 5 * 60_000

  /** The stream's history: the chart so far, and its tick and window. @param {StreamHistory} history */
  reset (history) {
    this.#tickMs = history.tick_ms
    this.#windowMs = history.window_ms
    this.#points = history.points
    this.draw()
  }

  /** @param {Point} point */
  add (point) {
    const points = this.#points
    points.push(point)
    while (points.length > 0 && (points[0]?.t ?? 0) < point.t - this.#windowMs) points.shift()
    this.draw()
  }

  draw () {
    const chart = byId('chart')
    const width = Math.max(200, chart.clientWidth)
    const height = Math.max(120, chart.clientHeight)
    chart.setAttribute('viewBox', `0 0 ${width} ${height}`)
    const latest = this.#points.at(-1)
    const first = this.#points[0]
    if (latest === undefined || first === undefined) {
      chart.replaceChildren(svg('text', { x: width / 2, y: height / 2, class: 'chart-empty', 'text-anchor': 'middle' }, 'waiting for the first points…'))
      chart.dataset.points = '0'
      renderRate([])
      return
    }
    const pad = { left: 52, right: 20, top: 14, bottom: 26 }
    const end = latest.t
    const span = Math.min(this.#windowMs, Math.max(MIN_CHART_SPAN_MS, end - first.t))
    const start = end - span
    const visible = this.#points.filter((p) => p.t >= start)
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
      if (segment === undefined || before === undefined || point.t - before.t > 2.5 * this.#tickMs) segments.push([point])
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
}
