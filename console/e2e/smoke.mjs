// Browser test of the staff console against a running careloop (BASE, a
// sandbox with demo data): sign-in per role, the navigation each role sees,
// the front desk's day board, a check-in and a walk-in booked and checked
// in, an article written, previewed, published and mass-sent to a tag with
// its reads shown, no console error and no failed
// request on any page. Screenshots go to test-results/.
//
//   BASE=http://127.0.0.1:8080 node e2e/smoke.mjs
import { chromium } from 'playwright-core'
import { mkdirSync } from 'node:fs'

const BASE = process.env.BASE ?? 'http://127.0.0.1:8080'
const PASSWORD = 'careloop-demo'
const out = new URL('../test-results/' + (process.env.SHOTS ? process.env.SHOTS + '/' : ''), import.meta.url).pathname
mkdirSync(out, { recursive: true })

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
})
const problems = []
let failures = 0
// Timings are reported, not asserted (a loaded machine is slow, not wrong).
function figure(what, value, unit = 'ms') {
  console.log(`figure ${what} ${value} ${unit}`)
}
function check(ok, what) {
  if (!ok) {
    failures++
    console.error('FAIL', what)
  } else console.log('ok  ', what)
}

async function signIn(username) {
  const ctx = await browser.newContext({ locale: 'zh-CN', viewport: { width: 1366, height: 800 } })
  const page = await ctx.newPage()
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${username}: console: ${m.text()}`)
  })
  page.on('pageerror', (e) => problems.push(`${username}: page error: ${e.message}`))
  page.on('requestfailed', (r) => {
    // Leaving the inbox closes its live stream on purpose.
    if (r.url().endsWith('/conversations/stream') && r.failure()?.errorText === 'net::ERR_ABORTED') return
    problems.push(`${username}: request failed: ${r.url()} ${r.failure()?.errorText}`)
  })
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().endsWith('/api/admin/me')) problems.push(`${username}: ${r.status()} ${r.url()}`)
  })
  let bytes = 0
  let wire = 0 // as sent: gzipped where the browser took gzip
  const weigh = (r) => {
    const h = r.headers()
    if (/javascript|css/.test(h['content-type'] ?? '')) {
      r.request().sizes().then((z) => (wire += z.responseBodySize), () => {})
      r.body().then((b) => (bytes += b.length), () => {})
    }
  }
  page.on('response', weigh)
  const started = Date.now()
  await page.goto(BASE + '/')
  await page.waitForSelector('[data-test=login]')
  figure(`${username}: sign-in page usable after`, Date.now() - started)
  // The demo accounts come from /api/console/config, after the page itself.
  const demo = await page.getByText('演示环境').waitFor({ timeout: 5000 }).then(() => true, () => false)
  check(demo, `${username}: the sign-in page lists the demo accounts`)
  await page.waitForLoadState('networkidle')
  page.off('response', weigh)
  figure(`${username}: first load, JS and CSS before gzip`, bytes, 'bytes')
  figure(`${username}: first load, JS and CSS as sent (gzip)`, wire, 'bytes')
  await page.screenshot({ path: out + 'login.png' })
  await page.fill('input[data-test=username], [data-test=username] input', username)
  await page.fill('input[data-test=password], [data-test=password] input', PASSWORD)
  await page.click('[data-test=login]')
  await page.waitForSelector('[data-test=nav-dashboard]')
  await page.waitForLoadState('networkidle')
  return { ctx, page }
}

// The front desk: the day board, a search by 尾号, a check-in.
{
  const { ctx, page } = await signIn('frontdesk')
  await page.screenshot({ path: out + 'frontdesk-dashboard.png' })
  check(await page.locator('[data-test=nav-frontdesk]').isVisible(), 'frontdesk: sees 前台')
  const t = Date.now()
  await page.click('[data-test=nav-frontdesk]')
  await page.waitForSelector('[data-test=bookings]')
  await page.waitForLoadState('networkidle')
  figure('frontdesk: day board usable after', Date.now() - t)
  await page.screenshot({ path: out + 'frontdesk-board.png' })
  const rows = await page.locator('[data-test=bookings] .el-table__body tr').count()
  check(rows > 0, `frontdesk: the day board lists today's bookings (${rows})`)
  // The one search box: the last four digits of a phone (尾号) find 李娜.
  await page.fill('input[data-test=search], [data-test=search] input', '0103')
  const searched = page.waitForResponse((r) => r.url().includes('/api/admin/bookings?') && r.url().includes('q=0103'))
  await page.click('[data-test=search-go]')
  await searched
  const found = page.locator('[data-test=bookings] .el-table__body tr')
  for (let i = 0; i < 50 && (await found.count()) !== 1; i++) await page.waitForTimeout(100) // the table re-renders
  check((await found.count()) === 1 && (await found.first().innerText()).includes('李娜'), 'frontdesk: finds a patient by 尾号 0103')
  const button = page.locator('[data-test^=check-in-]').first()
  if (await button.count()) {
    await button.click()
    await page.getByText('已签到').first().waitFor()
    check((await found.first().innerText()).includes('李娜'), 'frontdesk: checks the patient found by 尾号 in')
    await page.screenshot({ path: out + 'frontdesk-checked-in.png' })
  } else check(false, 'frontdesk: a booking to check in')

  // A walk-in: registered and booked in the 代约 dialog, then found by 尾号
  // and checked in. A slot open all day today (made through the schedule
  // API, as the desk would) lets the check run at any hour.
  const tok = await page.evaluate(() => JSON.parse(sessionStorage.getItem('careloop.session')).token)
  const today = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai' }).format(new Date())
  const weekday = new Date(today + 'T12:00:00+08:00').getUTCDay()
  const sched = await page.request.post(BASE + '/api/admin/schedules', {
    headers: { Authorization: 'Bearer ' + tok },
    data: { from: today, to: today, weekdays: { [weekday]: [{ start: '00:00', end: '23:59', capacity: 20 }] } },
  })
  check(sched.ok(), `frontdesk: a walk-in slot for today (${sched.status()})`)
  await page.fill('input[data-test=search], [data-test=search] input', '')
  await page.click('[data-test=search-go]')
  await page.click('[data-test=walk-in-open]')
  await page.waitForSelector('[data-test=walk-in] [data-test=mode-new]')
  await page.screenshot({ path: out + 'frontdesk-walk-in-open.png' })
  await page.click('[data-test=walk-in] [data-test=mode-new]')
  await page.fill('input[data-test=new-name], [data-test=new-name] input', '孙立新')
  await page.fill('input[data-test=new-phone], [data-test=new-phone] input', '13700004321')
  await page.fill('[data-test=new-birth] input', '1980-05-20')
  await page.keyboard.press('Enter')
  await page.click('[data-test=walk-in] [data-test=package]')
  await page.locator('.el-select-dropdown__item:visible').first().click()
  const slot = page.locator('[data-test=walk-in] [data-test="slot-00:00"]')
  await slot.waitFor()
  await slot.click()
  await page.screenshot({ path: out + 'frontdesk-walk-in-filled.png' })
  const bookedRes = page.waitForResponse((r) => r.url().endsWith('/api/admin/bookings') && r.request().method() === 'POST')
  await page.click('[data-test=walk-in-submit]')
  const res = await bookedRes
  check(res.status() === 201, `frontdesk: books the walk-in (${res.status()} ${res.status() === 201 ? '' : await res.text()})`)
  await page.locator('[data-test=walk-in]').waitFor({ state: 'hidden' })
  await page.fill('input[data-test=search], [data-test=search] input', '4321')
  const again = page.waitForResponse((r) => r.url().includes('/api/admin/bookings?') && r.url().includes('q=4321'))
  await page.click('[data-test=search-go]')
  await again
  for (let i = 0; i < 50 && (await found.count()) !== 1; i++) await page.waitForTimeout(100)
  check((await found.count()) === 1 && (await found.first().innerText()).includes('孙立新'), 'frontdesk: finds the walk-in by 尾号 4321')
  const walkInButton = page.locator('[data-test^=check-in-]').first()
  if (await walkInButton.count()) {
    await walkInButton.click()
    // The row itself changes (a toast of the earlier check-in may still say 已签到).
    for (let i = 0; i < 50 && !(await found.first().innerText()).includes('已签到'); i++) await page.waitForTimeout(100)
    check((await found.first().innerText()).includes('已签到'), 'frontdesk: checks the walk-in in')
    await page.screenshot({ path: out + 'frontdesk-walk-in-checked-in.png' })
  } else check(false, 'frontdesk: the walk-in can be checked in')

  // 报告: the report the PEIS sent for nobody is linked to its patient.
  await page.click('[data-test=nav-reports]')
  await page.waitForSelector('[data-test=unmatched]')
  await page.waitForLoadState('networkidle')
  const unmatchedRows = page.locator('[data-test=unmatched] .el-table__body tr')
  await unmatchedRows.first().waitFor({ timeout: 5000 }).catch(() => {})
  check((await unmatchedRows.count()) === 1, `frontdesk: one report waits to be linked (${await unmatchedRows.count()})`)
  await page.screenshot({ path: out + 'frontdesk-reports.png' })
  await unmatchedRows.first().getByRole('button', { name: '关联患者' }).click()
  await page.fill('input[data-test=patient-q], [data-test=patient-q] input', '13800000103')
  await page.click('[data-test=patient-find]')
  await page.locator('[data-test^=patient-]', { hasText: '李娜' }).first().waitFor()
  const linked = page.waitForResponse((r) => /\/api\/admin\/reports\/\d+\/link$/.test(r.url()))
  await page.getByRole('button', { name: '关联并通知患者' }).click()
  check((await linked).status() === 200, 'frontdesk: links the report to 李娜')
  for (let i = 0; i < 30 && (await unmatchedRows.count()) !== 0; i++) await page.waitForTimeout(100)
  check((await unmatchedRows.count()) === 0, 'frontdesk: no report left to link')
  await ctx.close()
}

// Marketing: no front-desk page, and its API answers 403.
{
  const { ctx, page } = await signIn('marketing')
  check(!(await page.locator('[data-test=nav-frontdesk]').count()), 'marketing: does not see 前台')
  const tok = await page.evaluate(() => JSON.parse(sessionStorage.getItem('careloop.session')).token)
  const res = await page.request.get(BASE + '/api/admin/bookings', { headers: { Authorization: 'Bearer ' + tok } })
  check(res.status() === 403, `marketing: the front desk's API answers ${res.status()}`)
  await page.screenshot({ path: out + 'marketing-dashboard.png' })

  // 满意度与投诉: charts drawn from the results; a complaint moves a step.
  const t = Date.now()
  await page.click('[data-test=nav-satisfaction]')
  await page.locator('[data-test=chart-trend] canvas').waitFor()
  await page.waitForLoadState('networkidle')
  figure('marketing: satisfaction page usable after', Date.now() - t)
  check((await page.locator('[data-test=chart-nps] canvas').count()) === 1, 'marketing: the NPS chart is drawn')
  await page.waitForTimeout(600) // the charts' entry animation
  await page.screenshot({ path: out + 'marketing-satisfaction.png' })
  await page.getByRole('tab', { name: '投诉' }).click()
  const complaintRows = page.locator('[data-test=complaints] .el-table__body tr')
  await complaintRows.first().waitFor()
  check((await complaintRows.count()) >= 2, `marketing: complaints are listed (${await complaintRows.count()})`)
  await complaintRows.filter({ hasText: '超时' }).first().click()
  await page.getByPlaceholder('处理科室，如：体检中心前台').fill('体检中心采血室')
  const stepped = page.waitForResponse((r) => /\/complaints\/\d+\/steps$/.test(r.url()))
  await page.getByRole('button', { name: '确认已分派' }).click()
  check((await stepped).status() === 200, 'marketing: assigns the overdue complaint to a department')
  await page.getByRole('heading', { name: '下一步：调查中' }).waitFor()
  await page.screenshot({ path: out + 'marketing-complaint.png' })

  // 设置: marketing keeps packages, member benefits and the official account;
  // the administrators' settings are neither shown nor answered.
  await page.keyboard.press('Escape')
  await page.click('[data-test=nav-settings]')
  await page.waitForSelector('[data-test=settings-tabs]')
  await page.waitForLoadState('networkidle')
  const mine = await page.locator('[data-test=settings-tabs] .el-tabs__item').allInnerTexts()
  check(mine.join(',') === '套餐,会员等级,积分商品,公众号,通知类型', `marketing: settings tabs are its own (${mine.join('、')})`)
  await page.screenshot({ path: out + 'marketing-settings.png' })
  for (const path of ['/api/admin/staff', '/api/admin/audit', '/api/admin/chat/settings', '/api/admin/notification-rules']) {
    const res = await page.request.get(BASE + path, { headers: { Authorization: 'Bearer ' + tok } })
    const method = path.endsWith('chat/settings') ? 'PUT' : 'GET'
    const r = method === 'PUT' ? await page.request.put(BASE + path, { headers: { Authorization: 'Bearer ' + tok }, data: {} }) : res
    check(r.status() === 403, `marketing: ${method} ${path} answers ${r.status()}`)
  }
  await ctx.close()
}

// Self-media: a marketing user writes an article with two images, previews
// it to their own WeChat (the sandbox's), publishes it, sends it to a tag
// and sees the result and the reads.
{
  const { ctx, page } = await signIn('marketing')
  const tok = await page.evaluate(() => JSON.parse(sessionStorage.getItem('careloop.session')).token)
  const staff = { Authorization: 'Bearer ' + tok }
  const post = async (path, data, headers = staff) => {
    const r = await page.request.post(BASE + path, { headers, data })
    return { status: r.status(), body: await r.json().catch(() => ({})) }
  }
  // Two patients who follow the official account, with the tag.
  const tag = await post('/api/admin/tags', { name: '冬季随访', category: 'basic', kind: 'fact' })
  const readers = []
  for (const name of ['e2e-reader-1', 'e2e-reader-2']) {
    const l = await post('/api/mp/login', { code: 'dev:' + name }, {})
    readers.push(l.body.token)
    await post('/sandbox/wechat/oa/event', { openid: 'oa-' + name, event: 'subscribe' }, {})
    await post(`/api/admin/patients/${l.body.patient.id}/tags`, { tag_id: tag.body.id })
  }
  await post('/sandbox/wechat/follow', { openid: 'oa-marketing-li' }, {})
  // Pictures drawn in the page, as a phone's photos would be.
  const picture = async (w, h, hue) => {
    const data = await page.evaluate(([w, h, hue]) => {
      const c = document.createElement('canvas')
      c.width = w
      c.height = h
      const g = c.getContext('2d')
      const grad = g.createLinearGradient(0, 0, w, h)
      grad.addColorStop(0, `hsl(${hue},70%,55%)`)
      grad.addColorStop(1, `hsl(${hue + 60},70%,75%)`)
      g.fillStyle = grad
      g.fillRect(0, 0, w, h)
      g.fillStyle = '#fff'
      g.font = `bold ${Math.round(h / 5)}px sans-serif`
      g.fillText('体检', w / 10, h / 2)
      return c.toDataURL('image/png').split(',')[1]
    }, [w, h, hue])
    return Buffer.from(data, 'base64')
  }

  const t = Date.now()
  await page.click('[data-test=nav-articles]')
  await page.waitForSelector('[data-test=articles]')
  await page.waitForLoadState('networkidle')
  figure('marketing: articles page usable after', Date.now() - t)
  await page.click('[data-test=article-new]')
  await page.waitForSelector('[data-test=article-editor] .w-e-text-container')
  await page.fill('input[data-test=article-title], [data-test=article-title] input', '冬季体检须知')
  await page.fill('textarea[data-test=article-digest], [data-test=article-digest] textarea', '体检前一天的饮食与作息')
  await page.fill('input[data-test=article-author], [data-test=article-author] input', '体检中心')
  await page.click('[data-test=article-category]')
  await page.getByRole('option', { name: '体检须知' }).click()
  await page.setInputFiles('[data-test=article-cover] input[type=file]', { name: 'cover.png', mimeType: 'image/png', buffer: await picture(900, 383, 200) })
  await page.locator('[data-test=article-cover] img').waitFor()
  await page.click('[data-test=article-editor] .w-e-text-container [contenteditable=true]')
  await page.keyboard.type('体检前一天晚上 8 点后请禁食，保证充足睡眠。')
  for (const [i, hue] of [[1, 10], [2, 120]]) {
    // The editor's menus work while it has the cursor.
    await page.locator('[data-test=article-editor] [data-menu-key=uploadImage]:not(.disabled)').waitFor()
    const chooser = page.waitForEvent('filechooser')
    await page.click('[data-test=article-editor] [data-menu-key=uploadImage]')
    await (await chooser).setFiles({ name: `step${i}.png`, mimeType: 'image/png', buffer: await picture(640, 360, hue) })
    await page.locator('[data-test=article-editor] .w-e-text-container img').nth(i - 1).waitFor()
  }
  await page.screenshot({ path: out + 'marketing-article-editor.png' })
  const saved = page.waitForResponse((r) => r.url().endsWith('/api/admin/articles') && r.request().method() === 'POST')
  await page.click('[data-test=article-save]')
  const created = await (await saved).json()
  check(created.status === 'draft' && (created.content.match(/<img/g) ?? []).length === 2, `marketing: the article is saved as a draft with two images (${created.status})`)
  const id = created.id

  // Preview to one's own WeChat.
  await page.click(`[data-test=article-preview-${id}]`)
  await page.fill('input[data-test=preview-to], [data-test=preview-to] input', 'oa-marketing-li')
  const previewed = page.waitForResponse((r) => r.url().endsWith(`/articles/${id}/preview`))
  await page.click('[data-test=preview-send]')
  check((await previewed).status() === 204, 'marketing: the preview is sent')
  const sent = await (await page.request.get(BASE + '/sandbox/wechat/messages')).json()
  check(sent.items.some((m) => m.api === 'mass_preview' && m.touser === 'oa-marketing-li' && m.errcode === 0), 'marketing: the preview reached their WeChat (sandbox)')

  // Publish: the list follows it to 已发布.
  const pt = Date.now()
  await page.click(`[data-test=article-publish-${id}]`)
  await page.getByRole('button', { name: '发布', exact: true }).last().click()
  await page.locator(`[data-test=article-status-${id}]`, { hasText: '已发布' }).waitFor({ timeout: 30000 })
  figure('marketing: article published (WeChat job and event included) after', Date.now() - pt)
  await page.screenshot({ path: out + 'marketing-articles.png' })

  // Send it to the tag and watch the result.
  await page.getByRole('tab', { name: '群发' }).click()
  await page.click('[data-test=mass-article]')
  await page.getByRole('option', { name: '冬季体检须知' }).click()
  await page.click('[data-test=mass-tag]')
  await page.getByRole('option', { name: '冬季随访' }).click()
  const massed = page.waitForResponse((r) => r.url().endsWith('/api/admin/mass-sends') && r.request().method() === 'POST')
  await page.click('[data-test=mass-send]')
  await page.getByRole('button', { name: '群发', exact: true }).last().click()
  const mass = await (await massed).json()
  await page.locator(`[data-test=mass-status-${mass.id}]`, { hasText: '已完成' }).waitFor({ timeout: 30000 })
  const result = await page.locator(`[data-test=mass-result-${mass.id}]`).innerText()
  check(/送达 2/.test(result), `marketing: the mass send reached the tag's two followers (${result})`)
  await page.screenshot({ path: out + 'marketing-mass-send.png' })

  // Patients read it in the mini-program; the figures show the reads.
  for (const r of readers) await page.request.get(BASE + `/api/mp/articles/${id}`, { headers: { Authorization: 'Bearer ' + r } })
  await page.request.get(BASE + `/api/mp/articles/${id}`, { headers: { Authorization: 'Bearer ' + readers[0] } })
  await page.getByRole('tab', { name: '文章' }).click()
  await page.click(`[data-test=article-details-${id}]`)
  await page.locator('[data-test=article-figures]').waitFor()
  const reads = await page.locator('[data-test=fig-reads] .el-statistic__number').innerText()
  const readersShown = await page.locator('[data-test=fig-readers] .el-statistic__number').innerText()
  check(reads === '3' && readersShown === '2', `marketing: the console shows 3 reads by 2 readers (${reads}, ${readersShown})`)
  await page.waitForTimeout(400)
  await page.screenshot({ path: out + 'marketing-article-figures.png' })
  await page.keyboard.press('Escape')

  // A channel with its QR code; a scan by someone new shows in its figures.
  await page.getByRole('tab', { name: '渠道' }).click()
  await page.fill('input[data-test=channel-name], [data-test=channel-name] input', '社区义诊海报')
  const made = page.waitForResponse((r) => r.url().endsWith('/api/admin/channels') && r.request().method() === 'POST')
  await page.click('[data-test=channel-add]')
  const channel = await (await made).json()
  await page.locator('[data-test=channels] img.qr').first().waitFor()
  await post('/sandbox/wechat/oa/scan', { openid: 'oa-e2e-passer-by', scene: channel.scene }, {})
  await page.getByRole('tab', { name: '群发' }).click()
  await page.getByRole('tab', { name: '渠道' }).click()
  await page.reload()
  await page.getByRole('tab', { name: '渠道' }).click()
  const figures = await page.locator(`[data-test=channel-figures-${channel.id}]`).innerText()
  check(figures.startsWith('1 / 1'), `marketing: the channel counts the scan and the new follower (${figures})`)
  await page.locator('[data-test=channels] img.qr').first().waitFor()
  await page.screenshot({ path: out + 'marketing-channels.png' })

  // The tag mirrored as a WeChat user tag: its two followers are tagged at WeChat.
  await page.getByRole('tab', { name: '公众号标签' }).click()
  const row = page.locator('[data-test=wxtags] .el-table__body tr', { hasText: '冬季随访' })
  await row.locator('.el-switch').click()
  await row.getByText(/^2 \/ 0 \/ 0$/).waitFor({ timeout: 15000 }).then(() => check(true, 'marketing: the tag is mirrored to WeChat with its 2 followers'),
    async () => check(false, `marketing: the tag is mirrored to WeChat with its 2 followers (${await row.innerText()})`))
  await row.locator('.el-switch.is-checked').waitFor()
  await page.waitForTimeout(400) // the switch's own animation
  await page.screenshot({ path: out + 'marketing-wechat-tags.png' })
  await ctx.close()
}

// 价值分层: marketing scores the patients twice; the tiers, their chart and
// the migration matrix show.
{
  // The front desk completes the day's checked-in checkups first: they are what is scored.
  const desk = await (await fetch(BASE + '/api/admin/login', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'frontdesk', password: PASSWORD }) })).json()
  const deskAuth = { Authorization: 'Bearer ' + desk.token }
  const day = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai' }).format(new Date())
  const list = await (await fetch(BASE + `/api/admin/bookings?date=${day}&limit=100`, { headers: deskAuth })).json()
  let completed = 0
  for (const b of list.items ?? []) {
    if (b.status !== 'checked_in') continue
    const r = await fetch(BASE + `/api/admin/bookings/${b.id}/complete`, { method: 'POST', headers: deskAuth })
    if (r.status === 200) completed++
  }
  check(completed > 0, `frontdesk: completes the checked-in checkups (${completed})`)
  const { ctx, page } = await signIn('marketing')
  await page.click('[data-test=nav-tiers]')
  await page.waitForLoadState('networkidle')
  for (let i = 0; i < 2; i++) {
    const started = page.waitForResponse((r) => r.url().endsWith('/api/admin/rfm/runs') && r.request().method() === 'POST')
    await page.click('[data-test=rfm-run]')
    const res = await started
    check(res.status() === 202, `marketing: RFM run ${i + 1} starts`)
    // The page shows the run once it is done.
    await page.getByText(`第 ${(await res.json()).id} 次评分`).waitFor({ timeout: 30000 })
  }
  await page.locator('[data-test=chart-tiers] canvas').waitFor()
  const scored = await Promise.all(['platinum', 'gold', 'iron', 'lead'].map((t) => page.locator(`[data-test=tier-${t}] .el-statistic__number`).innerText()))
  check(scored.reduce((n, x) => n + Number(x), 0) > 0, `marketing: patients are placed in tiers (${scored.join('/')})`)
  const rows = await page.locator('[data-test=migration] .el-table__body tr').count()
  check(rows > 0, `marketing: the migration matrix shows (${rows} rows)`)
  await page.waitForTimeout(600)
  await page.screenshot({ path: out + 'marketing-tiers.png' })
  await ctx.close()
}

// 分群与活动 (#17's "done when"): marketing builds a segment of gold patients
// due for their re-check, launches a campaign with a coupon, watches it go
// out, and sees the conversion when one of them books.
{
  const { ctx, page } = await signIn('marketing')
  const tok = await page.evaluate(() => JSON.parse(sessionStorage.getItem('careloop.session')).token)
  const staff = { Authorization: 'Bearer ' + tok }
  const post = async (path, data, headers = staff) => {
    const r = await page.request.post(BASE + path, { headers, data })
    return { status: r.status(), body: await r.json().catch(() => ({})) }
  }
  const reward = await post('/api/admin/rewards', { name: '年度复检立减100元', kind: 'coupon', cost_points: 5000, stock: 1000, coupon_value_fen: 10000, active: false })
  check(reward.status === 201 || reward.status === 200, `marketing: a coupon to give (${reward.status})`)
  await page.click('[data-test=nav-marketing]')
  await page.waitForLoadState('networkidle')
  const pick = async (sel, text, typed = false) => {
    await page.click(sel)
    if (typed) await page.keyboard.type(text) // a long list: filter it
    await page.locator('.el-select-dropdown__item:visible', { hasText: text }).first().click()
  }
  await page.fill('input[data-test=segment-name], [data-test=segment-name] input', '黄金待复检')
  await page.click('[data-test=cond-add]')
  await pick('[data-test=cond-field-0]', '价值分层', true)
  await pick('[data-test=cond-value-0]', '黄金')
  await page.keyboard.press('Escape')
  await page.click('[data-test=cond-add]')
  await pick('[data-test=cond-field-1]', '距上次体检天数', true)
  await page.fill('input[data-test=cond-value-1], [data-test=cond-value-1] input', '365')
  await page.click('[data-test=cond-add]')
  await pick('[data-test=cond-field-2]', '有待到检预约', true)
  await pick('[data-test=cond-value-2]', '否')
  const previewed = page.waitForResponse((r) => r.url().endsWith('/api/admin/segments/preview'))
  await page.click('[data-test=segment-preview]')
  const pv = await (await previewed).json()
  check(pv.count >= 1, `marketing: gold patients due for the re-check are counted (${pv.count})`)
  await page.locator('[data-test=segment-count]').waitFor()
  await page.screenshot({ path: out + 'marketing-segment.png' })
  const saved = page.waitForResponse((r) => r.url().endsWith('/api/admin/segments') && r.request().method() === 'POST')
  await page.click('[data-test=segment-save]')
  check((await saved).status() === 201, 'marketing: the segment is saved')

  await page.getByRole('tab', { name: '营销活动' }).click()
  await page.fill('input[data-test=campaign-name], [data-test=campaign-name] input', '黄金客户年度复检')
  await pick('[data-test=campaign-segment]', '黄金待复检')
  await page.fill('input[data-test=campaign-thing1], [data-test=campaign-thing1] input', '年度复检季')
  await page.fill('input[data-test=campaign-thing2], [data-test=campaign-thing2] input', '黄金会员专享立减券')
  await pick('[data-test=campaign-coupon]', '年度复检立减100元')
  const created = page.waitForResponse((r) => r.url().endsWith('/api/admin/campaigns') && r.request().method() === 'POST')
  await page.click('[data-test=campaign-create]')
  const cr = await created
  const campaign = await cr.json()
  check(cr.status() === 201, `marketing: the campaign is created (${cr.status()})`)
  await page.click(`[data-test=campaign-start-${campaign.id}]`)
  await page.locator('[data-test=campaigns] .el-table__expand-icon').first().click()
  await page.locator(`[data-test=campaign-status-${campaign.id}]`, { hasText: '已完成' }).waitFor({ timeout: 60000 }).then(
    () => check(true, 'marketing: the campaign goes out and ends'), async () => check(false, `marketing: the campaign ends (${await page.locator(`[data-test=campaign-status-${campaign.id}]`).innerText()})`))
  const sentStat = page.locator(`[data-test=campaign-sent-${campaign.id}] .el-statistic__number`)
  await sentStat.filter({ hasText: new RegExp(`^${pv.count}$`) }).waitFor({ timeout: 15000 }).catch(() => {})
  const sent = Number(await sentStat.innerText())
  check(sent === pv.count, `marketing: every counted patient is reached (${sent} of ${pv.count})`)
  // One of them books: a conversion.
  const member = await post('/api/mp/login', { code: 'dev:demo-member-1' }, {})
  const mp = { Authorization: 'Bearer ' + member.body.token }
  const coupons = await (await page.request.get(BASE + '/api/mp/coupons', { headers: mp })).json()
  check((coupons.items ?? []).some((c) => c.value_fen === 10000), "patient: the campaign's coupon is in their wallet")
  const pkgs = await (await page.request.get(BASE + '/api/mp/packages', { headers: mp })).json()
  let booked = 0
  for (const pkg of pkgs.items ?? []) {
    const slots = await (await page.request.get(BASE + `/api/mp/packages/${pkg.id}/slots`, { headers: mp })).json()
    const free = (slots.items ?? []).find((x) => (x.remaining ?? x.available ?? 1) > 0)
    if (!free) continue
    const b = await page.request.post(BASE + '/api/mp/bookings', { headers: { ...mp, 'Idempotency-Key': 'e2e-campaign-book' }, data: { package_id: pkg.id, slot_id: free.id } })
    booked = b.status()
    if (booked === 201) break
  }
  check(booked === 201, `patient: books after the campaign (${booked})`)
  await page.locator(`[data-test=campaign-conv-${campaign.id}] .el-statistic__number`, { hasText: '1' }).waitFor({ timeout: 30000 }).then(
    () => check(true, "marketing: the booking shows as the campaign's conversion"), () => check(false, "marketing: the booking shows as the campaign's conversion"))
  await page.locator(`[data-test=campaign-detail-${campaign.id}]`).scrollIntoViewIfNeeded()
  await page.waitForTimeout(500)
  await page.screenshot({ path: out + 'marketing-campaign.png' })
  await ctx.close()
}

// The doctor's inbox: a patient's message (sent through the sandbox's
// official account) appears without reload, patient text stays text, the
// reply leaves as a customer message, and a burst of 20 messages a second
// arrives whole and in order.
{
  const { ctx, page } = await signIn('doctor')
  const dialogs = []
  page.on('dialog', (d) => {
    dialogs.push(d.message())
    d.dismiss().catch(() => {})
  })
  check(await page.locator('[data-test=nav-inbox]').isVisible(), 'doctor: sees 医生工作台')
  const t = Date.now()
  await page.click('[data-test=nav-inbox]')
  await page.waitForSelector('[data-test=conversations]')
  await page.waitForLoadState('networkidle')
  figure('doctor: inbox usable after', Date.now() - t)
  await page.locator('[data-test=live-state].on').waitFor({ timeout: 5000 })
  await page.click('[data-test=scope-all]')
  const sandbox = (path, data) => page.request.post(BASE + '/sandbox/wechat' + path, { data })
  const openid = 'oa-e2e-' + Date.now()
  await sandbox('/oa/event', { openid, event: 'subscribe' })
  const sent = Date.now()
  await sandbox('/oa/user-message', { openid, content: '体检前一天可以喝水吗' })
  const row = page.locator('[data-test^=conversation-]', { hasText: '体检前一天可以喝水吗' }).first()
  let arrived = true
  await row.waitFor({ timeout: 2000 }).catch(() => (arrived = false))
  figure('doctor: a patient message in the open inbox after', Date.now() - sent)
  check(arrived, 'doctor: a new patient message appears in the open inbox within 2 s, without reload')
  if (arrived) {
    const convID = Number((await row.getAttribute('data-test')).split('-')[1]) // the preview changes below
    await row.click()
    const pane = page.locator('[data-test=messages]')
    await pane.getByText('体检前一天可以喝水吗').waitFor()
    await page.locator('[data-test=patient-360]').waitFor()
    check(true, 'doctor: opens the conversation with the patient beside it')

    // Patient text is text: no element made, no script run.
    const evil = '<img src=x onerror=alert(1)>'
    await sandbox('/oa/user-message', { openid, content: evil })
    await pane.getByText(evil).waitFor({ timeout: 2000 })
    await page.waitForTimeout(300)
    check((await page.locator('img[src="x"]').count()) === 0 && dialogs.length === 0, 'doctor: patient HTML is shown as text (no element, no dialog)')

    // The reply reaches the patient as a customer-service message.
    const reply = '可以少量喝水，早上空腹即可'
    await page.fill('textarea[data-test=reply], [data-test=reply] textarea', reply)
    const posted = page.waitForResponse((r) => /\/api\/admin\/conversations\/\d+\/messages$/.test(r.url()) && r.request().method() === 'POST')
    await page.click('[data-test=send]')
    check((await posted).status() === 201, 'doctor: the reply is sent')
    await pane.getByText(reply).waitFor()
    let delivered = false
    for (let i = 0; i < 30 && !delivered; i++) {
      const out = await (await page.request.get(BASE + '/sandbox/wechat/messages')).json()
      delivered = out.items.some((m) => m.api === 'custom_send' && m.touser === openid && JSON.stringify(m.payload).includes(reply))
      if (!delivered) await page.waitForTimeout(100)
    }
    check(delivered, 'doctor: the reply reached WeChat (the sandbox) as a customer message')

    // A canned reply of the doctor's own fills the reply box.
    await page.getByRole('button', { name: '管理快捷回复' }).click()
    await page.getByPlaceholder('标题，如：空腹说明').fill('复查提醒')
    await page.getByPlaceholder('回复内容').fill('建议三个月后复查，届时可在小程序预约。')
    await page.getByRole('button', { name: '添加' }).click()
    await page.getByRole('cell', { name: '复查提醒' }).waitFor()
    await page.keyboard.press('Escape')
    await page.click('[data-test=canned]')
    await page.locator('.el-select-dropdown__item:visible', { hasText: '复查提醒' }).click()
    const draft = await page.locator('textarea[data-test=reply], [data-test=reply] textarea').inputValue()
    check(draft.includes('三个月后复查'), 'doctor: a canned reply of their own fills the reply box')
    await page.fill('textarea[data-test=reply], [data-test=reply] textarea', '')
    await page.screenshot({ path: out + 'doctor-inbox.png' })

    // 20 messages in a second: all shown, in the order the server keeps.
    const burstStart = Date.now()
    const posts = []
    for (let i = 1; i <= 20; i++) {
      posts.push(sandbox('/oa/user-message', { openid, content: `连发消息 ${i}` }))
      await page.waitForTimeout(50)
    }
    await Promise.all(posts)
    const shown = async () => (await pane.locator('.bubble.text').allInnerTexts()).filter((x) => x.startsWith('连发消息'))
    for (let i = 0; i < 50 && (await shown()).length < 20; i++) await page.waitForTimeout(100)
    figure('doctor: 20 messages sent at 20/s all shown after', Date.now() - burstStart)
    const got = await shown()
    const tok = await page.evaluate(() => JSON.parse(sessionStorage.getItem('careloop.session')).token)
    const kept = await (await page.request.get(`${BASE}/api/admin/conversations/${convID}/messages`, { headers: { Authorization: 'Bearer ' + tok } })).json()
    const order = kept.items.map((m) => m.content).filter((x) => x.startsWith('连发消息'))
    check(got.length === 20 && got.join('|') === order.join('|'), `doctor: the burst is shown whole and in order (${got.length} of 20)`)
    await page.screenshot({ path: out + 'doctor-inbox-burst.png' })
  }

  // 报告: the critical value waits on top; the interpretation a patient asked
  // for is written and leaves the list.
  await page.click('[data-test=nav-reports]')
  await page.waitForSelector('[data-test=critical]')
  const criticalRow = page.locator('[data-test=critical] .el-table__body tr').first()
  check(await criticalRow.waitFor({ timeout: 5000 }).then(() => true, () => false), 'doctor: the critical value is listed')
  await page.getByRole('tab', { name: /解读申请/ }).click()
  const asks = page.locator('[data-test=interpretations] .el-table__body tr')
  await asks.first().waitFor()
  const before = await asks.count()
  await asks.first().getByRole('button', { name: '解读' }).click()
  await page.getByPlaceholder('用通俗的话向患者解释结果和下一步').fill('血脂略高，先调整饮食并增加运动，三个月后复查，暂不需要用药。')
  await page.screenshot({ path: out + 'doctor-interpretation.png' })
  const saved = page.waitForResponse((r) => /\/interpretation$/.test(r.url()))
  await page.getByRole('button', { name: '保存并通知患者' }).click()
  check((await saved).status() === 200, 'doctor: the interpretation is saved')
  for (let i = 0; i < 30 && (await asks.count()) >= before; i++) await page.waitForTimeout(100)
  check((await asks.count()) === before - 1, 'doctor: the answered request leaves the list')
  await ctx.close()
}

// The admin imports a HIS export of 5,000 patients through the 患者 page: the
// progress bar moves to 100% and the refused rows download as CSV.
if (process.env.HIS_XLSX) {
  const { ctx, page } = await signIn('admin')
  await page.click('[data-test=nav-patients]')
  await page.waitForSelector('[data-test=patients]')
  await page.waitForLoadState('networkidle')
  await page.screenshot({ path: out + 'admin-patients.png' })
  await page.click('[data-test=import-open]')
  await page.waitForSelector('[data-test=import-upload]')
  const started = Date.now()
  await page.setInputFiles('[data-test=import-upload] input[type=file]', process.env.HIS_XLSX)
  await page.waitForSelector('[data-test=import-progress]')
  const seen = new Set()
  const result = page.locator('[data-test=import-result]')
  // Under the race detector on a busy CI machine the import takes tens of
  // seconds (a quiet machine: about one): wait for it, report the time.
  for (const until = Date.now() + 180000; Date.now() < until && !(await result.isVisible()); ) {
    const v = await page.locator('[data-test=import-progress]').getAttribute('data-percent').catch(() => null)
    if (v !== null) seen.add(Number(v))
    await page.waitForTimeout(50)
  }
  figure('admin: 5,000-row import finished after', Date.now() - started)
  const pct = await page.locator('[data-test=import-progress]').innerText()
  console.log(`figure admin: progress seen ${[...seen].sort((a, b) => a - b).join(',')} %`)
  check((await result.isVisible()) && pct.includes('100%'), 'admin: the import progress bar reaches 100%')
  check(seen.size >= 2, `admin: the progress bar moved (${[...seen].join(',')})`)
  check((await result.innerText()).includes('新建 4900') && (await result.innerText()).includes('拒绝 100'), `admin: the import counts (${await result.innerText().catch(() => '')})`)
  await page.screenshot({ path: out + 'admin-import-done.png' })
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-test=import-rejected]')])
  const file = await download.path()
  const { readFileSync } = await import('node:fs')
  const lines = readFileSync(file, 'utf8').replace(/^\uFEFF/, '').trim().split('\n')
  check(lines.length === 101 && lines[1].startsWith('51,phone,'), `admin: the refused rows download (${lines.length - 1} rows)`)
  await page.keyboard.press('Escape')

  // 患者 pages on the server: forward to the next page and back again.
  const patientRows = page.locator('[data-test=patients] .el-table__body tr')
  const firstRow = async () => (await patientRows.first().innerText()).trim().split(/\s+/)[0]
  await page.click('[data-test=patient-search]')
  await page.waitForLoadState('networkidle')
  const page1 = await firstRow()
  await page.click('[data-test=patients-next]')
  for (let i = 0; i < 50 && (await firstRow()) === page1; i++) await page.waitForTimeout(100)
  const page2 = await firstRow()
  await page.getByRole('button', { name: '上一页' }).click()
  for (let i = 0; i < 50 && (await firstRow()) !== page1; i++) await page.waitForTimeout(100)
  check(page2 !== page1 && (await firstRow()) === page1 && (await patientRows.count()) === 20, `admin: patients page forward and back (${page1} → ${page2} → ${await firstRow()})`)

  // 设置: every tab opens on real data without an error.
  await page.click('[data-test=nav-settings]')
  await page.waitForSelector('[data-test=settings-tabs]')
  const names = await page.locator('[data-test=settings-tabs] .el-tabs__item').allInnerTexts()
  check(names.length === 10, `admin: sees every settings tab (${names.join('、')})`)
  for (const name of names) {
    const t0 = Date.now()
    await page.getByRole('tab', { name }).click()
    await page.waitForLoadState('networkidle')
    figure(`admin: settings ${name} usable after`, Date.now() - t0)
  }
  await page.getByRole('tab', { name: '员工与角色' }).click()
  await page.locator('[data-test=settings-staff] .el-table__body tr').first().waitFor()
  await page.screenshot({ path: out + 'admin-settings-staff.png' })
  await ctx.close()
}

// Admin and doctor reach their dashboards.
for (const who of ['admin', 'doctor']) {
  const { ctx, page } = await signIn(who)
  await page.screenshot({ path: out + `${who}-dashboard.png` })
  check(await page.locator('[data-test=card-tasks]').isVisible(), `${who}: the dashboard shows the tasks`)
  await ctx.close()
}

await browser.close()
for (const p of problems) console.error('FAIL', p)
if (failures || problems.length) process.exit(1)
console.log('all browser checks passed')
