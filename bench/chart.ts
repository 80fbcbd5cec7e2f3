// Usage: imported by bench/flash-sale.ts; renderChart(samples, ceilingRps) returns an SVG string.
//
// Accepted and decided purchases per second over the run, one line each, with the no-op ceiling
// as a horizontal rule, drawn by Vega-Lite (rendered headless by Vega, no browser needed).
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'

export interface Sample { t: number, accepted: number, decided: number }

export async function renderChart (samples: readonly Sample[], ceilingRps: number, title: string): Promise<string> {
  const values: Array<{ t: number, rate: number, series: string }> = []
  for (let i = 1; i < samples.length; i++) {
    const prev = samples[i - 1] as Sample
    const cur = samples[i] as Sample
    const dt = cur.t - prev.t
    if (dt <= 0) continue
    values.push({ t: cur.t, rate: (cur.accepted - prev.accepted) / dt, series: 'accepted / s' })
    values.push({ t: cur.t, rate: (cur.decided - prev.decided) / dt, series: 'decided / s' })
  }
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 720,
    height: 320,
    layer: [
      {
        data: { values },
        mark: { type: 'line', interpolate: 'monotone' },
        encoding: {
          x: { field: 't', type: 'quantitative', title: 'seconds since the sale opened' },
          y: { field: 'rate', type: 'quantitative', title: 'purchases per second' },
          color: { field: 'series', type: 'nominal', title: null }
        }
      },
      {
        data: { values: [{ ceiling: ceilingRps, label: `no-op ceiling ${Math.round(ceilingRps)} req/s` }] },
        layer: [
          { mark: { type: 'rule', strokeDash: [6, 4], color: 'gray' }, encoding: { y: { field: 'ceiling', type: 'quantitative' } } },
          { mark: { type: 'text', align: 'left', dx: 4, dy: -6, color: 'gray' }, encoding: { y: { field: 'ceiling', type: 'quantitative' }, x: { value: 0 }, text: { field: 'label' } } }
        ]
      }
    ]
  }
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}
