// @ts-check
// Finding and building the page's elements. Only through the DOM API: the page's CSP (Trusted
// Types) forbids string-to-HTML sinks, so event names and messages are always text.

/** @param {string} id */
export function byId (id) {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`the page has no #${id}`)
  return element
}

/**
 * @param {string} tag
 * @param {Record<string, string>} [attributes]
 * @param {string} [text]
 */
export function html (tag, attributes = {}, text) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value)
  if (text !== undefined) element.textContent = text
  return element
}

const SVG_NS = 'http://www.w3.org/2000/svg'
/**
 * @param {string} tag
 * @param {Record<string, string | number>} attributes
 * @param {string} [text]
 */
export function svg (tag, attributes, text) {
  const element = document.createElementNS(SVG_NS, tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value))
  if (text !== undefined) element.textContent = text
  return element
}
