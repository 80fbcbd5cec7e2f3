// The live dashboard in a real browser (headless Chromium through playwright-core) against the
// real service process, during a small sale: what the page shows must be what the API says.
// Leaves its screenshot as an artifact in .tap/dashboard.png (.tap/dashboard-failure.png when a
// check failed); with UPDATE_README_SCREENSHOT=1 it also writes docs/dashboard.png, the README's, so
// ordinary runs do not leave the work tree modified. Skipped only when no Chromium is installed; CHROMIUM_PATH names one (.ci/run sets
// it, so in CI a missing browser is a failure, not a skip).
import { existsSync } from 'node:fs'
import { copyFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { chromium, type Page } from 'playwright-core'
import t from 'tap'
import { ADMIN_TOKEN } from '../fixtures/app.ts'
import { createTestDatabase } from '../fixtures/database.ts'
import { newUserId } from '../fixtures/events.ts'
import { mapConcurrent, request, waitFor } from '../fixtures/http.ts'
import { startService } from '../fixtures/service.ts'

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const SCREENSHOT = path.join(ROOT, '.tap', 'dashboard.png')
const README_SCREENSHOT = path.join(ROOT, 'docs', 'dashboard.png')
const FAILURE_SCREENSHOT = path.join(ROOT, '.tap', 'dashboard-failure.png')
const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome-stable', '/usr/bin/google-chrome']
const chromiumPath = process.env.CHROMIUM_PATH ?? CHROMIUM_CANDIDATES.find((candidate) => existsSync(candidate))
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

interface Counts { sold: number, held: number, pending: number, left: number, cancelled: number }

const count = (text: string | null): number => Number((text ?? '').replace(/[^\d]/g, ''))

/** The counts the page shows in an event's row, as a reader sees them ('–', no holds, reads as 0). */
async function shownCounts (page: Page, eventId: string): Promise<Counts> {
  const cell = async (field: string): Promise<number> => count(await page.locator(`tr[data-event-id="${eventId}"] td[data-field="${field}"]`).textContent({ timeout: 10_000 }))
  return { sold: await cell('sold'), held: await cell('held'), pending: await cell('pending'), left: await cell('left'), cancelled: await cell('cancelled') }
}

/** The background colour the page draws the first element matching `selector` with (a string: this file is checked without the DOM's types). */
const background = async (page: Page, selector: string): Promise<string> =>
  String(await page.evaluate(`getComputedStyle(document.querySelector(${JSON.stringify(selector)})).backgroundColor`))

async function apiCounts (base: string, eventId: string): Promise<Counts> {
  const { body } = await request(base, 'GET', `/events/${eventId}`)
  return { sold: body.sold, held: body.held, pending: body.pending, left: body.available_quota, cancelled: body.cancelled }
}

const noChromium = `no Chromium executable found (looked for ${CHROMIUM_CANDIDATES.join(', ')}; set CHROMIUM_PATH, or install Debian's chromium package)`

t.test('the live dashboard in headless Chromium during a sale shows what the API says', { skip: chromiumPath === undefined ? noChromium : false, timeout: 170_000 }, async (t) => {
  const database = await createTestDatabase(t)
  const { base } = await startService(t, 'all', { DATABASE_URL: database.url, DEMO_EVENT: 'true', ADMIN_TOKEN })
  const demo = (await request(base, 'GET', '/events')).body.events.find((e: { name: string }) => e.name === 'Concert Event') as { id: string }
  t.ok(demo, 'the service created its demo event')

  const browser = await chromium.launch({ executablePath: chromiumPath })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } })
  // Console errors include CSP violations: the page must need nothing its policy forbids.
  const problems: string[] = []
  page.on('console', (message) => { if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text()) })
  page.on('pageerror', (err) => { problems.push(err.message) })

  try {
    await page.goto(`${base}/`)
    // Set once: still there at the end means the page was never reloaded.
    await page.evaluate('window.loadedOnce = true')
    await page.locator(`tr[data-event-id="${demo.id}"]`).waitFor({ timeout: 30_000 })
    t.equal(await page.locator('#connection').getAttribute('data-state'), 'live', 'the stream is live')

    // Events created after the page opened appear on it by themselves.
    const sale = (await request(base, 'POST', '/events', { headers: admin, json: { name: 'Flash sale', total_quota: 250 } })).body as { id: string }
    await request(base, 'POST', '/events', { headers: admin, json: { name: 'Jazz Night', total_quota: 80, sales_open_at: new Date(Date.now() + 86_400_000).toISOString() } })
    await page.locator(`tr[data-event-id="${sale.id}"]`).waitFor({ timeout: 30_000 })
    t.pass('the new events appeared without a reload')

    // The sale: 360 buyers in waves a second apart (so that the chart has a shape), one in five
    // asking for two seats, for 250 seats: it sells out in the fourth or fifth wave.
    const answers: number[] = []
    for (let wave = 0; wave < 6; wave++) {
      const [statuses] = await Promise.all([
        mapConcurrent(Array.from({ length: 60 }, (_v, i) => i), 20, async (i) =>
          (await request(base, 'POST', '/buy', { json: { event_id: sale.id, user_id: newUserId(), quantity: i % 5 === 0 ? 2 : 1 } })).status),
        new Promise((resolve) => setTimeout(resolve, 1000))
      ])
      answers.push(...statuses)
    }
    t.ok(answers.every((status) => status === 202 || status === 200), 'every purchase stored')
    const final = await waitFor(async () => {
      const counts = await apiCounts(base, sale.id)
      return counts.pending === 0 ? counts : undefined
    }, { timeoutMs: 60_000, what: 'every purchase decided' })
    t.equal(final.left, 0, 'sold out')

    // The page settles on the API's numbers (it is told within about a second).
    const shown = await waitFor(async () => {
      const counts = await shownCounts(page, sale.id)
      return counts.sold === final.sold && counts.pending === final.pending ? counts : undefined
    }, { timeoutMs: 30_000, what: 'the page to show the final numbers' })
    t.same(shown, final, 'sold, held, pending, left and cancelled on the page are GET /events/:id\'s')
    const saleRow = page.locator(`tr[data-event-id="${sale.id}"]`)
    t.equal(await saleRow.locator('td[data-field="held"]').textContent(), '–', 'an event without holds shows none')
    t.equal(await saleRow.locator('.bar-held').count(), 0, 'and no held part in its seat bar')
    t.equal(count(await page.locator('#queue-depth').textContent()), 0, 'queue depth 0')
    t.equal(count(await page.locator('#events-total').textContent()), 3)

    // Holds: seats taken but not sold until the seller confirms, shown apart from sold and left.
    const matinee = (await request(base, 'POST', '/events', { headers: admin, json: { name: 'Matinee', total_quota: 20, hold_seconds: 900 } })).body as { id: string }
    const holds = await Promise.all([2, 1, 1].map(async (quantity) =>
      (await request(base, 'POST', '/buy', { json: { event_id: matinee.id, user_id: newUserId(), quantity } })).body.booking_id as string))
    const held = await waitFor(async () => {
      const counts = await apiCounts(base, matinee.id)
      return counts.pending === 0 ? counts : undefined
    }, { timeoutMs: 30_000, what: 'the held purchases decided' })
    t.match(held, { sold: 0, held: 4, left: 16 })
    const heldShown = await waitFor(async () => {
      const counts = await shownCounts(page, matinee.id)
      return counts.left === held.left ? counts : undefined
    }, { timeoutMs: 30_000, what: 'the page to show the holds' })
    t.same(heldShown, held, 'the held seats on the page are GET /events/:id\'s')
    const matineeRow = page.locator(`tr[data-event-id="${matinee.id}"]`)
    t.equal(await matineeRow.locator('.bar-held').count(), 1, 'the seat bar has a held part')
    t.match(await matineeRow.locator('.bar-label').textContent(), /^0 \+ 4 held \/ 20$/, 'and its label counts the held seats')
    const [heldColour, soldColour, leftColour] = await Promise.all([
      background(page, `tr[data-event-id="${matinee.id}"] .bar-held`),
      background(page, `tr[data-event-id="${sale.id}"] .bar-fill`),
      background(page, `tr[data-event-id="${matinee.id}"] .bar`)
    ])
    t.ok(heldColour !== soldColour && heldColour !== leftColour, `held (${heldColour}) is coloured apart from sold (${soldColour}) and left (${leftColour})`)
    t.equal((await request(base, 'POST', `/bookings/${holds[0] ?? ''}/confirm`, { headers: admin })).status, 200)
    const confirmed = await waitFor(async () => {
      const counts = await shownCounts(page, matinee.id)
      return counts.sold === 2 ? counts : undefined
    }, { timeoutMs: 30_000, what: 'the confirmed hold to show as sold' })
    t.same(confirmed, await apiCounts(base, matinee.id), 'a confirmed hold moves from held to sold on the page')

    // The chart: points, a line, and a peak from the sale.
    const points = await waitFor(async () => {
      const n = Number(await page.locator('#chart').getAttribute('data-points'))
      return n >= 3 ? n : undefined
    }, { timeoutMs: 30_000, what: 'chart points' })
    t.ok(points >= 3, `the chart has ${points} points`)
    t.ok(await page.locator('#chart path.line').count() >= 1, 'and a line through them')
    t.ok(count(await page.locator('#rate-peak').textContent()) > 0, 'the sale shows as decisions per second')

    // The form: buys on the demo event as the page's own user, and follows the booking.
    t.equal(await page.locator('#buy-event').inputValue(), demo.id, 'the demo event is the default choice')
    const user = await page.locator('#buy-user').textContent()
    await page.locator('#buy-button').click()
    const status = await waitFor(async () => {
      const text = await page.locator('#buy-result [data-field="status"]').textContent()
      return text === 'success' || text === 'failed' ? text : undefined
    }, { timeoutMs: 30_000, what: 'the purchase to be decided on the page' })
    const bookingId = await page.locator('#buy-result [data-field="booking-id"]').textContent()
    // The admin token reads any booking, whether or not GET /bookings/:id asks for its buyer.
    const booking = await request(base, 'GET', `/bookings/${bookingId ?? ''}`, { headers: admin })
    t.equal(booking.status, 200)
    t.match(booking.body, { booking_id: bookingId, status, event_id: demo.id, user_id: user, quantity: 1 }, 'the booking the page shows is the API\'s')
    t.equal(status, 'success', 'a seat of the demo event')
    const demoCounts = await waitFor(async () => {
      const counts = await shownCounts(page, demo.id)
      return counts.sold === 1 ? counts : undefined
    }, { timeoutMs: 30_000, what: 'the demo event\'s sale on the page' })
    t.same(demoCounts, await apiCounts(base, demo.id), 'and the demo event\'s row agrees with the API')

    t.equal(await page.evaluate('window.loadedOnce === true'), true, 'all of it live: the page was never reloaded')
    t.same(problems, [], 'no errors or CSP violations in the console')
  } finally {
    const file = t.passing() ? SCREENSHOT : FAILURE_SCREENSHOT
    await mkdir(path.dirname(file), { recursive: true })
    await page.screenshot({ path: file, fullPage: true })
    t.comment(`screenshot: ${path.relative(ROOT, file)}`)
    if (t.passing() && process.env.UPDATE_README_SCREENSHOT === '1') {
      await copyFile(file, README_SCREENSHOT)
      t.comment(`and the README's: ${path.relative(ROOT, README_SCREENSHOT)}`)
    }
  }
})
