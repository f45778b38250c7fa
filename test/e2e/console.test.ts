/**
 * The admin console end to end, as an admin sees it: a real `trimswarm
 * coordinator` process with a real slapd, Debian's Chromium driven by
 * playwright-core. Logs in as dave (trimswarm-admins), publishes through the
 * CLI, runs two real agents (`trimswarm agent sync`, two sites, one with a
 * host folder for Trim Transfer) and watches the rollout and bandwidth pages
 * update by themselves (no reload). Screenshots go to test-artifacts/console/.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS, type TestSlapd } from '../helpers/slapd.ts'
import { makeHostFolder, makeTestImage, makeUpdatedImage, tempDir, type HostFolder, type TempDir, type TestImage } from '../helpers/images.ts'
import { CLI, cliOk } from '../helpers/cli-process.ts'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = new URL('../../test-artifacts/console/', import.meta.url).pathname

const HAVE_CHROMIUM = existsSync(CHROMIUM)

describe.skipIf(!HAVE_CHROMIUM)(HAVE_CHROMIUM ? 'admin console in Chromium' : `admin console in Chromium (skipped: ${CHROMIUM} is missing; scripts/install-deps.sh installs Debian's chromium)`, () => {
  let slapd: TestSlapd
  let dir: TempDir
  let coord: ChildProcess
  let coordLog = ''
  let url: string
  let tokenFile: string
  let agentToken: string
  let context: BrowserContext
  let page: Page
  let v1: TestImage
  let v2: TestImage
  let host: HostFolder

  const cli = async (...args: string[]): Promise<string> => await cliOk(args, { timeout: 60_000 })
  const shot = async (name: string): Promise<void> => { await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }) }
  const agent = async (name: string, site: string, version: string, extra: string[]): Promise<any> => {
    const out = await cli('agent', 'sync', `desk@${version}`, '--coordinator', url, '--token-file', join(dir.path, 'agent.token'),
      '--data', join(dir.path, name), '--out', join(dir.path, name, 'desk.img'), '--site', site, '--json', '--quiet', ...extra)
    return JSON.parse(out.trim().split('\n').at(-1) as string)
  }
  /** Text of the page's table with this id, as the browser shows it now. */
  const tableText = async (id: string): Promise<string> => await page.locator(`#table-${id} tbody`).innerText()

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    ;[slapd, dir] = await Promise.all([startTestSlapd(), tempDir('trimswarm-console-e2e-')])
    v1 = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 71 })
    host = await makeHostFolder(dir.path, v1)
    v2 = await makeUpdatedImage(dir.path, v1, { name: 'v2', seed: 72 })
    const config = join(dir.path, 'coordinator.json')
    await writeFile(config, JSON.stringify({ logLevel: 'warn', ldap: testLdapInit(slapd), adminGroups: [`cn=trimswarm-admins,${slapd.groupsDN}`] }))
    const listen = `127.0.0.1:${await freePort()}`
    url = `http://${listen}`
    coord = spawn(process.execPath, [CLI, 'coordinator', '--data', join(dir.path, 'data'), '--listen', listen, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] })
    coord.stdout!.on('data', (d: Buffer) => { coordLog += d.toString() })
    coord.stderr!.on('data', (d: Buffer) => { coordLog += d.toString() })
    const until = Date.now() + 20_000
    while (!coordLog.includes('coordinator listening on')) {
      if (coord.exitCode != null || Date.now() > until) throw new Error(`coordinator did not start: ${coordLog}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    tokenFile = join(dir.path, 'data', 'admin.token')
    const admin = (await readFile(tokenFile, 'utf8')).trim()
    const api = async (method: string, path: string, body: unknown): Promise<any> => {
      const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
      return await res.json()
    }
    await cli('policy', 'set', 'branch', '--images', 'desk', '--coordinator', url, '--token-file', tokenFile)
    agentToken = (await api('POST', '/v1/tokens', { group: 'branch', name: 'e2e-agents' })).token
    await writeFile(join(dir.path, 'agent.token'), agentToken + '\n', { mode: 0o600 })

    context = await chromium.launchPersistentContext(join(dir.path, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 }
    })
    page = context.pages()[0] ?? await context.newPage()
  }, 60_000)

  afterAll(async () => {
    await context?.close()
    if (coord != null && coord.exitCode == null) {
      coord.kill('SIGTERM')
      await new Promise(resolve => coord.once('exit', resolve))
    }
    await slapd?.stop()
    await dir?.cleanup()
  })

  it('sends a logged-out browser to the login page and logs dave in', async () => {
    const res = await fetch(`${url}/console/login`)
    expect(res.status, 'the console is not mounted in createCoordinator (coordinator/coordinator.ts): see docs/OPERATIONS.md "Admin console"').toBe(200)
    await page.goto(`${url}/console/rollout?image=desk`)
    expect(new URL(page.url()).pathname).toBe('/console/login')
    await page.fill('input[name=user]', 'dave')
    await page.fill('input[name=password]', 'wrong')
    await page.click('button[type=submit]')
    await expect.poll(async () => await page.locator('.form-error').innerText(), { timeout: 10_000 }).toContain('Wrong user name or password')
    await page.fill('input[name=user]', 'dave')
    await page.fill('input[name=password]', TEST_LDAP_PASSWORDS.dave)
    await shot('01-login')
    await page.click('button[type=submit]')
    await page.waitForURL(/\/console\/rollout\?image=desk$/)
    expect(await page.locator('header .who span').innerText()).toBe('dave')
    const cookies = await context.cookies(url)
    const session = cookies.find(c => c.name === 'trimswarm_session')
    expect(session?.httpOnly).toBe(true)
    expect(session?.sameSite).toBe('Strict')
  })

  it('shows an image published with the CLI on the images page without a reload', async () => {
    await page.goto(`${url}/console/images`)
    await page.evaluate(() => { (window as any).__sameDocument = true })
    await cli('publish', v1.path, '--image', 'desk', '--version', 'v1', '--coordinator', url, '--token-file', tokenFile)
    await expect.poll(async () => await tableText('versions'), { timeout: 15_000 }).toMatch(/desk\s+v1\s+latest/)
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true)
    await shot('02-images')
  })

  it('updates the rollout chart and table as two agents sync, then as one updates to v2', async () => {
    await page.goto(`${url}/console/rollout?image=desk`)
    await page.evaluate(() => { (window as any).__sameDocument = true })
    const [a, b] = await Promise.all([agent('agent-a', 'paris', 'v1', ['--no-index']), agent('agent-b', 'lyon', 'v1', ['--index', host.path])])
    expect(a.bytes.origin).toBeGreaterThan(0)
    expect(b.bytes.local).toBeGreaterThan(0)
    // one refresh may have run between the two agents' reports: wait for one showing both
    await expect.poll(async () => {
      const text = await tableText('rollout')
      return /desk\s+v1\s+lyon\s+1/.test(text) && /desk\s+v1\s+paris\s+1/.test(text)
    }, { timeout: 15_000 }).toBe(true)
    await expect.poll(async () => await page.locator('figure[data-live-svg] polyline').count(), { timeout: 15_000 }).toBeGreaterThanOrEqual(3)
    expect(await page.locator('figure[data-live-svg] svg').innerHTML()).toContain('>v1<')
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true)
    await shot('03-rollout-v1')

    await cli('publish', v2.path, '--image', 'desk', '--version', 'v2', '--coordinator', url, '--token-file', tokenFile)
    await page.goto(`${url}/console/rollout?image=desk`)
    await page.evaluate(() => { (window as any).__sameDocument = true })
    const up = await agent('agent-a', 'paris', 'v2', ['--no-index'])
    expect(up.version).toBe('v2')
    await expect.poll(async () => await tableText('rollout'), { timeout: 15_000 }).toMatch(/desk\s+v2\s+paris\s+1/)
    await expect.poll(async () => await page.locator('figure[data-live-svg] svg').innerHTML(), { timeout: 15_000 }).toContain('>v2<')
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true)
    await shot('04-rollout-v2')
  })

  it('shows bytes by source and WAN saved on the bandwidth page, and agents and events', async () => {
    await page.goto(`${url}/console/bandwidth?image=desk`)
    const note = await page.locator('figure[data-live-svg] .chart-note').textContent()
    expect(note).toMatch(/WAN saved in this window: [1-9]\d*\.\d %/)
    expect(await page.locator('figure[data-live-svg] rect[fill="#e8590c"]').count()).toBeGreaterThan(0) // origin bars
    expect(await page.locator('figure[data-live-svg] rect[fill="#2b8a3e"]').count()).toBeGreaterThan(0) // local bars
    expect(await tableText('by-site')).toMatch(/lyon/)
    await shot('05-bandwidth')
    await page.goto(`${url}/console/agents`)
    expect(await tableText('agents')).toMatch(/paris[\s\S]*desk@v2/)
    await shot('06-agents')
    // filtered views read the event index, which takes events once they are EVENT_INDEX_SETTLE_MS old
    await expect.poll(async () => {
      await page.goto(`${url}/console/events?type=sync.completed`)
      return (await tableText('events')).match(/sync\.completed/g)?.length ?? 0
    }, { timeout: 15_000 }).toBe(3)
    await shot('07-events')
    await page.goto(`${url}/console/policy/branch`)
    await page.fill('input[name=maxPeers]', 'many')
    await page.click('form.policy button[type=submit]')
    await expect.poll(async () => await page.locator('.field-error').innerText(), { timeout: 10_000 }).toContain('whole number')
    await shot('08-policy-error')
  })

  it('console data: no report rows for images that do not exist, peer ids, rate units, newest-first events, wrapped errors, favicon', async () => {
    // an agent asks for an image that does not exist: its failure is an event, not a rollout or bandwidth row
    await expect(cli('agent', 'sync', 'nosuch', '--coordinator', url, '--token-file', join(dir.path, 'agent.token'), '--data', join(dir.path, 'agent-c'),
      '--out', join(dir.path, 'agent-c', 'nosuch.img'), '--site', 'lyon', '--json', '--quiet', '--retries', '1', '--retry-delay', '50')).rejects.toThrow()
    await expect.poll(async () => {
      await page.goto(`${url}/console/events?image=nosuch`)
      return await tableText('events')
    }, { timeout: 15_000 }).toMatch(/sync\.failed/)
    await page.goto(`${url}/console/bandwidth`)
    expect(await tableText('by-image')).not.toMatch(/nosuch/)
    expect(await tableText('by-image')).toMatch(/desk@v1/)
    await page.goto(`${url}/console/rollout?image=desk`)
    expect(await tableText('rollout')).not.toMatch(/latest/)
    expect(await page.locator('figure[data-live-svg] svg').innerHTML()).not.toContain('>latest<')
    const rollout = await (await page.request.get(`${url}/console/api/by-image`)).json()
    expect(rollout.rows.map((r: { key: string }) => r.key)).not.toContain('nosuch@latest')

    // the agents page shows each agent's swarm peer id
    await page.goto(`${url}/console/agents`)
    const agentsHead = await page.locator('#table-agents thead th').allInnerTexts()
    const peerCol = agentsHead.indexOf('peer id')
    const peerIds = await page.locator(`#table-agents tbody tr td:nth-child(${peerCol + 1})`).allInnerTexts()
    const agentNames = await page.locator('#table-agents tbody tr td:nth-child(1)').allInnerTexts()
    expect(peerIds.length).toBeGreaterThan(0)
    for (const [i, id] of peerIds.entries()) {
      if (agentNames[i] == null) continue
      // agent-c never got as far as LAN sharing; the two that synced did
      if (id !== '') expect(id).toMatch(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/)
    }
    expect(peerIds.filter(id => /^12D3KooW/.test(id)).length).toBeGreaterThanOrEqual(2)
    await shot('09-agents-peer-ids')

    // the policy table's header names no unit its values do not use
    await page.goto(`${url}/console/policy`)
    const policyHead = await page.locator('#table-policies thead th').allInnerTexts()
    expect(policyHead).toContain('WAN cap')
    expect(policyHead.join(' ')).not.toMatch(/B\/s/)

    // events: newest first by their arrival, the time shown first (an agent's own clock may be off: its time follows)
    await page.goto(`${url}/console/events`)
    expect((await page.locator('#table-events thead th').allInnerTexts())[0]).toBe('received')
    const times = await page.locator('#table-events tbody tr td:nth-child(1)').allInnerTexts()
    expect(times.length).toBeGreaterThanOrEqual(6)
    expect([...times].sort().reverse()).toEqual(times)

    // the error column wraps at 1,280 px: the whole message is on the page, nothing cut
    await page.goto(`${url}/console/events?type=sync.failed`)
    const errorCell = page.locator('#table-events tbody tr td.wrap').first()
    const cut = await errorCell.evaluate((td: HTMLElement) => {
      const box = td.closest('.scroll') as HTMLElement
      return { text: td.textContent ?? '', overflow: td.scrollWidth > td.clientWidth + 1, style: getComputedStyle(td).whiteSpace, right: td.getBoundingClientRect().right, boxRight: box.getBoundingClientRect().right, tableFits: box.scrollWidth <= box.clientWidth }
    })
    expect(cut.text.length).toBeGreaterThan(0)
    expect(cut.overflow).toBe(false)
    expect(cut.style).toBe('normal')
    // the whole table fits: the error column is not hidden past the box's edge
    expect(cut.right).toBeLessThanOrEqual(cut.boxRight)
    expect(cut.tableFits).toBe(true)
    await shot('10-events-errors')
    await page.goto(`${url}/console/agents`)
    expect(await page.locator('#table-agents .scroll').evaluate((d: HTMLElement) => d.scrollWidth <= d.clientWidth)).toBe(true)

    // favicon
    const icon = await fetch(`${url}/favicon.ico`)
    expect(icon.status).toBe(200)
    expect(icon.headers.get('content-type')).toBe('image/svg+xml')
    expect(await icon.text()).toMatch(/^<svg /)
  })

  it('tables scroll inside their box on a narrow screen; the page itself does not overflow', async () => {
    await page.setViewportSize({ width: 390, height: 844 })
    try {
      for (const path of ['/console/images', '/console/agents', '/console/events', '/console/policy', '/console/tokens', '/console/bandwidth']) {
        await page.goto(url + path)
        const m = await page.evaluate(() => ({
          page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
          boxes: [...document.querySelectorAll('.scroll')].map(d => ({ overflowX: getComputedStyle(d).overflowX, right: d.getBoundingClientRect().right }))
        }))
        expect(m.page, path).toBeLessThanOrEqual(0)
        for (const b of m.boxes) {
          expect(b.overflowX, path).toBe('auto')
          expect(b.right, path).toBeLessThanOrEqual(390)
        }
      }
      await page.goto(`${url}/console/events`)
      expect(await page.locator('#table-events .scroll').evaluate((d: HTMLElement) => d.scrollWidth > d.clientWidth)).toBe(true)
      await shot('11-narrow-events')
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 })
    }
  })

  it('retires a version from its page (CSRF-protected), and the images page says so', async () => {
    // a POST without the form's CSRF token changes nothing
    const forged = await page.evaluate(async (u) => (await fetch(u, { method: 'POST', body: new URLSearchParams({ x: '1' }), credentials: 'same-origin' })).status, `${url}/console/images/desk/v1/retire`)
    expect(forged).toBe(403)
    await page.goto(`${url}/console/images`)
    expect(await tableText('versions')).not.toMatch(/retired/)
    await page.click('#table-versions a[href="/console/images/desk/v1"]')
    await page.waitForURL(/\/console\/images\/desk\/v1$/)
    expect(await page.locator('dl.details').innerText()).toMatch(/state\s+live/)
    await shot('12-version')
    await page.click('form.action button[type=submit]')
    await page.waitForURL(/\/console\/images\?retired=/)
    expect(await page.locator('p.note').first().innerText()).toContain('Retired desk v1')
    expect(await tableText('versions')).toMatch(/desk\s+v1[^\n]*retired/)
    expect(await tableText('versions')).toMatch(/desk\s+v2\s+latest/)
    await shot('13-images-retired')
    await page.goto(`${url}/console/images/desk/v1`)
    expect(await page.locator('form.action').count()).toBe(0)
  })

  it('lists machine tokens, creates one shown only once, and revokes it (CSRF-protected)', async () => {
    await page.goto(`${url}/console/tokens`)
    expect(await tableText('tokens')).toMatch(/branch\s+e2e-agents\s+\S+ \S+\s+active/)
    const before = (await tableText('tokens')).split('\n').length
    const forged = await page.evaluate(async (u) => (await fetch(u, { method: 'POST', body: new URLSearchParams({ group: 'branch', name: 'forged' }), credentials: 'same-origin' })).status, `${url}/console/tokens`)
    expect(forged).toBe(403)
    await page.goto(`${url}/console/tokens`)
    expect((await tableText('tokens')).split('\n').length).toBe(before)
    // a bad group name is refused at its field
    await page.fill('form.token input[name=group]', 'no spaces')
    await page.click('form.token button[type=submit]')
    await expect.poll(async () => await page.locator('form.token .form-error').innerText(), { timeout: 10_000 }).toContain('Group')
    await page.fill('form.token input[name=group]', 'branch')
    await page.fill('form.token input[name=name]', 'paris')
    await shot('14-tokens')
    await page.click('form.token button[type=submit]')
    const secret = (await page.locator('#new-token').innerText()).trim()
    expect(secret).toMatch(/^tsm_/)
    await shot('15-token-created')
    const me = async (): Promise<number> => (await fetch(`${url}/v1/auth/me`, { headers: { authorization: `Bearer ${secret}` } })).status
    expect(await me()).toBe(200)
    // shown once: the list does not show it again
    await page.goto(`${url}/console/tokens`)
    expect(await page.content()).not.toContain(secret)
    expect(await tableText('tokens')).toMatch(/branch\s+paris\s+\S+ \S+\s+active/)
    await page.locator('#table-tokens tbody tr', { hasText: 'paris' }).locator('a').first().click()
    await page.waitForURL(/\/console\/tokens\/[0-9a-f]{16}$/)
    await page.click('form.action button[type=submit]')
    await page.waitForURL(/\/console\/tokens\?revoked=/)
    expect(await tableText('tokens')).toMatch(/branch\s+paris\s+\S+ \S+\s+revoked/)
    expect(await me()).toBe(401)
    await shot('16-token-revoked')
  })
}, 120_000)
