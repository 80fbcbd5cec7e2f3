// @ts-check
// How the page writes numbers and times: the same formats in the tiles, the table, the chart and
// the form.

export const integer = new Intl.NumberFormat('en-US')
export const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 })
export const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })
export const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' })

/** A span of time given in seconds, in the largest unit that reads naturally: 90 s, 15 min, 2.5 h. @param {number} seconds */
export function duration (seconds) {
  if (seconds < 120) return `${integer.format(seconds)} s`
  if (seconds < 7200) return `${decimal.format(seconds / 60)} min`
  return `${decimal.format(seconds / 3600)} h`
}
