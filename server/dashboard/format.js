// @ts-check
// How the page writes numbers and times: the same formats in the tiles, the table, the chart and
// the form.

export const integer = new Intl.NumberFormat('en-US')
export const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 })
export const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })
export const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' })
