/**
 * The admin console in process (`app.request()`), wired like the coordinator
 * (createCoordinator without a socket) with a real LDAP directory (test slapd): login
 * and its refusals, CSRF, escaping, the policy form, CSV/JSON, paging.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentEvent } from '../../../protocol/api.ts'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { createLdapAuthenticator } from '../../../coordinator/ldap-authenticator.ts'
import { createLogger } from '../../../coordinator/logger.ts'
import { buildManifest } from '../../../chunker/build-manifest.ts'
import { chunkCid } from '../../../protocol/block-id.ts'
import { seededBytes } from '../../helpers/images.ts'
import { startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS, type TestSlapd } from '../../helpers/slapd.ts'
import { cookieHeader, keepCookies } from '../../helpers/cookie-jar.ts'

let slapd: TestSlapd
let dir: string
let stack: Coordinator

/** A tiny cookie jar over app.request(). */
class Browser {
  cookies = new Map<string, string>()
  async req (path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers)
    const cookie = cookieHeader(this.cookies)
    if (cookie != null) headers.set('Cookie', cookie)
    const res = await stack.app.request(`http://console.test${path}`, { ...init, headers })
    keepCookies(this.cookies, res)
    return res
  }

  async csrf (): Promise<string> {
    if (!this.cookies.has('trimswarm_csrf')) await this.req('/console/login')
    return this.cookies.get('trimswarm_csrf') as string
  }

  async post (path: string, fields: Record<string, string>, withCsrf = true): Promise<Response> {
    const body = new URLSearchParams(fields)
    if (withCsrf) body.set('_csrf', await this.csrf())
    return await this.req(path, { method: 'POST', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })
  }
}

async function adminBrowser (): Promise<Browser> {
  const b = new Browser()
  const res = await b.post('/console/login', { token: stack.adminToken, next: '/console/images' })
  expect(res.status).toBe(303)
  return b
}

let seq = 0
function ev (over: Partial<AgentEvent>): AgentEvent {
  seq++
  return { id: `ev-${String(seq).padStart(8, '0')}`, type: 'sync.completed', time: new Date(Date.now() + seq).toISOString(), agent: 'agent-1', site: 'paris', image: 'desk', version: 'v1', ...over }
}

const auditLines: any[] = []

async function postEvents (events: AgentEvent[]): Promise<void> {
  const res = await stack.app.request('/v1/events', { method: 'POST', body: JSON.stringify({ events }), headers: { Authorization: `Bearer ${stack.adminToken}`, 'Content-Type': 'application/json' } })
  expect(res.status).toBe(200)
}

beforeAll(async () => {
  slapd = await startTestSlapd()
  dir = await mkdtemp(join(tmpdir(), 'trimswarm-console-'))
  const authenticator = createLdapAuthenticator({ logger: createLogger({ level: 'silent' }) }, testLdapInit(slapd))
  // info lines kept (not printed): the audit lines of console changes are checked
  stack = createCoordinator({ dataDir: dir, serve: false, logger: createLogger({ level: 'info', write: (l) => { if (l.includes('"msg":"audit"')) auditLines.push(JSON.parse(l)) } }), authenticator, config: { adminGroups: [`cn=trimswarm-admins,${slapd.groupsDN}`], console: { sampleMs: 200, indexSettleMs: 0 }, images: { buildDeltaPacks: false } } })
  await stack.start()
  // report rows count only for published versions: publish the ones the events below name
  for (const [image, version, seed] of [['desk', 'v1', 1], ['desk', 'v2', 2], ['charted', 'v9', 3]] as const) await publishTiny(image, version, seed)
}, 60_000)

/** Publishes a 64 KiB image of seeded bytes as `image` `version`, in-process. */
async function publishTiny (image: string, version: string, seed: number): Promise<void> {
  const file = join(dir, `${image}-${version}.img`)
  await writeFile(file, seededBytes(seed, 64 * 1024))
  const built = await buildManifest(file, { name: image, version, onChunk: async (c) => { await stack.images.putChunk(chunkCid(c.digest), new Uint8Array(c.bytes)) } })
  await stack.images.commitVersion(image, built.manifestBytes)
}

afterAll(async () => {
  await stack?.stop()
  await slapd?.stop()
  if (dir != null) await rm(dir, { recursive: true, force: true })
})

describe('login', () => {
  it('redirects a logged-out browser to the login page, and answers the data routes 401', async () => {
    const b = new Browser()
    for (const page of ['/console/images', '/console/rollout', '/console/bandwidth', '/console/agents', '/console/policy', '/console/events']) {
      const res = await b.req(page + '?x=1')
      expect(res.status).toBe(303)
      expect(res.headers.get('location')).toBe(`/console/login?next=${encodeURIComponent(page + '?x=1')}`)
    }
    expect((await b.req('/')).headers.get('location')).toBe('/console/images')
    for (const api of ['/console/api/events', '/console/api/rollout.csv', '/console/live/agents', '/console/chart/bandwidth']) {
      const res = await b.req(api)
      expect(res.status).toBe(401)
      expect((await res.json()).error.name).toBe('UnauthorizedError')
    }
  })

  it('logs in an LDAP user of the admin group with an HttpOnly SameSite=Strict session cookie', async () => {
    const b = new Browser()
    const res = await b.post('/console/login', { user: 'dave', password: TEST_LDAP_PASSWORDS.dave, next: '/console/events?type=sync.failed' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/events?type=sync.failed')
    const cookie = res.headers.getSetCookie().find(c => c.startsWith('trimswarm_session='))
    expect(cookie).toMatch(/HttpOnly/)
    expect(cookie).toMatch(/SameSite=Strict/)
    expect(cookie).toMatch(/Path=\//)
    const page = await b.req('/console/images')
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('dave')
    // and out again
    const out = await b.post('/console/logout', {})
    expect(out.status).toBe(303)
    expect((await b.req('/console/images')).status).toBe(303)
  })

  it('shows a 403 page to a directory user outside the admin group and sets no session', async () => {
    const b = new Browser()
    const res = await b.post('/console/login', { user: 'alice', password: TEST_LDAP_PASSWORDS.alice })
    expect(res.status).toBe(403)
    expect(await res.text()).toContain('not in an admin group')
    expect(b.cookies.has('trimswarm_session')).toBe(false)
    // alice's own API session token in the cookie: still 403, page and data
    const login = await stack.app.request('/v1/auth/login', { method: 'POST', body: JSON.stringify({ user: 'alice', password: TEST_LDAP_PASSWORDS.alice }), headers: { 'Content-Type': 'application/json' } })
    b.cookies.set('trimswarm_session', (await login.json()).token)
    expect((await b.req('/console/images')).status).toBe(403)
    expect((await b.req('/console/api/events')).status).toBe(403)
  })

  it('refuses a wrong password and a wrong admin token with the same form and no cookie', async () => {
    const b = new Browser()
    const bad = await b.post('/console/login', { user: 'dave', password: 'nope' })
    expect(bad.status).toBe(401)
    expect(await bad.text()).toContain('Wrong user name or password')
    const badToken = await b.post('/console/login', { token: 'tsa_not-the-token' })
    expect(badToken.status).toBe(401)
    expect(b.cookies.has('trimswarm_session')).toBe(false)
  })

  it('marks both cookies Secure when the console is reached over HTTPS', async () => {
    const first = await stack.app.request('https://console.test/console/login')
    const csrf = /trimswarm_csrf=([^;]+)/.exec(first.headers.get('set-cookie') ?? '')?.[1] as string
    expect(first.headers.get('set-cookie')).toMatch(/; Secure/)
    const res = await stack.app.request('https://console.test/console/login', { method: 'POST', body: new URLSearchParams({ token: stack.adminToken, _csrf: csrf }), headers: { Cookie: `trimswarm_csrf=${csrf}`, 'Content-Type': 'application/x-www-form-urlencoded' } })
    expect(res.status).toBe(303)
    expect(res.headers.getSetCookie().find(c => c.startsWith('trimswarm_session='))).toMatch(/; Secure/)
  })

  it('never redirects to another origin after login', async () => {
    const b = new Browser()
    for (const next of ['https://evil.example/', '//evil.example/x', '/\\evil.example', '/v1/tokens']) {
      const res = await b.post('/console/login', { token: stack.adminToken, next })
      expect(res.headers.get('location')).toBe('/console/images')
    }
  })
})

describe('CSRF', () => {
  it('rejects a POST without the token, or with another browser\'s token, and changes nothing', async () => {
    const b = await adminBrowser()
    const other = new Browser()
    const form = { images: 'desk', wanLimit: '20mbit', lanUpload: 'unlimited', maxPeers: '8', lanSharing: 'on' }
    const none = await b.post('/console/policy/csrf-group', form, false)
    expect(none.status).toBe(403)
    expect(await none.text()).toContain('CSRF check failed')
    const wrong = await b.post('/console/policy/csrf-group', { ...form, _csrf: await other.csrf() }, false)
    expect(wrong.status).toBe(403)
    expect(stack.policies.get('csrf-group')).toBeUndefined()
    // the login and logout forms are checked too
    expect((await new Browser().post('/console/login', { token: stack.adminToken }, false)).status).toBe(403)
    expect((await b.post('/console/logout', {}, false)).status).toBe(403)
    // with the token it saves
    const ok = await b.post('/console/policy/csrf-group', form)
    expect(ok.status).toBe(303)
    expect(stack.policies.get('csrf-group')?.wanLimitBps).toBe(2_500_000)
  })

  it('puts the token in every form of every page', async () => {
    const b = await adminBrowser()
    const token = await b.csrf()
    for (const page of ['/console/images', '/console/policy/new', '/console/policy/desk', '/console/events']) {
      const text = await (await b.req(page)).text()
      const posts = text.match(/<form[^>]*method="post"[\s\S]*?<\/form>/g) ?? []
      expect(posts.length).toBeGreaterThan(0)
      for (const f of posts) expect(f).toContain(`name="_csrf" value="${token}"`)
    }
  })
})

describe('policy form', () => {
  it('shows each bad value next to its field and saves nothing', async () => {
    const b = await adminBrowser()
    await stack.policies.put('lab', { images: ['lab'], wanLimitBps: 0, lanSharing: true, lanUploadBps: 0, maxPeers: 8, updateWindow: null, indexFolders: {} })
    const res = await b.post('/console/policy/lab', { images: 'lab\n../etc', wanLimit: 'fast', lanUpload: '5MB/s', maxPeers: '-3', windowStart: '25:00', windowEnd: '06:00' })
    expect(res.status).toBe(400)
    const text = await res.text()
    expect(text).toContain('is not an image name')
    expect(text).toContain('cannot parse rate')
    expect(text).toContain('must be a whole number from 0 to 1000')
    expect(text).toContain('must be HH:MM')
    expect(text).toContain('aria-invalid="true"')
    // what was typed stays in the form, escaped
    expect(text).toContain('lab\n../etc</textarea>')
    expect(stack.policies.get('lab')).toEqual({ images: ['lab'], wanLimitBps: 0, lanSharing: true, lanUploadBps: 0, maxPeers: 8, updateWindow: null, indexFolders: {} })
    // a new group with a bad name: nothing saved either
    const bad = await b.post('/console/policy', { group: '../x', images: 'desk', wanLimit: '', lanUpload: '', maxPeers: '1' })
    expect(bad.status).toBe(400)
    expect(stack.policies.all()['../x']).toBeUndefined()
  })

  it('saves a valid form and reads it back', async () => {
    const b = await adminBrowser()
    const res = await b.post('/console/policy', { group: 'desk', images: 'desk, base', wanLimit: '20mbit', lanSharing: 'on', lanUpload: '5MB/s', maxPeers: '4', transfer: 'foreground', windowStart: '22:00', windowEnd: '06:00', linux: '/usr\n/opt', windows: '', macos: '' })
    expect(res.status).toBe(303)
    expect(stack.policies.get('desk')).toEqual({ images: ['desk', 'base'], wanLimitBps: 2_500_000, lanSharing: true, lanUploadBps: 5_000_000, maxPeers: 4, transfer: 'foreground', updateWindow: { start: '22:00', end: '06:00' }, indexFolders: { linux: ['/usr', '/opt'] } })
    expect(auditLines.at(-1)).toMatchObject({ action: 'policy.set', who: { kind: 'admin' }, target: { group: 'desk', via: 'console' }, after: stack.policies.get('desk') })
    const page = await (await b.req('/console/policy')).text()
    expect(page).toContain('20 mbit')
    const api = await (await b.req('/console/api/policies')).json()
    expect(api.rows.find((r: { group: string }) => r.group === 'desk').maxPeers).toBe(4)
  })
})

describe('data', () => {
  it('escapes data everywhere it is shown (agent names, errors, folders)', async () => {
    const evil = '<script>alert(1)</script>'
    await postEvents([ev({ agent: evil, type: 'sync.failed', error: `<img src=x onerror=alert(2)> "quoted" & more`, site: 'lyon' })])
    await stack.policies.put('evil', { images: ['desk'], wanLimitBps: 0, lanSharing: true, lanUploadBps: 0, maxPeers: 8, updateWindow: null, indexFolders: { linux: [evil] } })
    const b = await adminBrowser()
    for (const page of ['/console/events', '/console/agents', '/console/rollout?image=desk', '/console/policy', '/console/policy/evil']) {
      const text = await (await b.req(page)).text()
      expect(text, page).not.toContain('<script>alert')
      expect(text, page).not.toContain('<img src=x')
      expect(text, page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;')
    }
    // a name in the query string comes back escaped in the error page, never as markup
    const q = await (await b.req('/console/rollout?image=%3Cscript%3Ex')).text()
    expect(q).not.toContain('<script>x')
    // JSON keeps the raw text (the page script puts it in with textContent); CSV quotes it
    const live = await (await b.req('/console/live/events?site=lyon')).json()
    expect(live.cells[0]).toContainEqual([evil])
    const csv = await (await b.req('/console/api/events.csv?site=lyon')).text()
    expect(csv).toContain('"<img src=x onerror=alert(2)> ""quoted"" & more"')
    // pages forbid inline scripts
    expect((await b.req('/console/events')).headers.get('content-security-policy')).toContain("script-src 'self'")
  })

  it('exports every table as CSV with the same rows as its JSON', async () => {
    await postEvents([
      ev({ agent: 'a1', site: 'paris', version: 'v1', bytes: { local: 700, peers: 200, origin: 100 } }),
      ev({ agent: 'a2', site: 'berlin', version: 'v1', bytes: { local: 0, peers: 0, origin: 1000 } }),
      ev({ agent: 'a3', site: 'paris', version: 'v2', type: 'sync.started' })
    ])
    const b = await adminBrowser()
    for (const table of ['versions', 'rollout', 'failures', 'totals', 'by-site', 'by-image', 'agents', 'events', 'policies']) {
      const csv = await b.req(`/console/api/${table}.csv`)
      expect(csv.status, table).toBe(200)
      expect(csv.headers.get('content-type')).toContain('text/csv')
      expect(csv.headers.get('content-disposition')).toContain(`trimswarm-${table}.csv`)
      const lines = (await csv.text()).split('\r\n').filter(l => l !== '')
      const json = await (await b.req(`/console/api/${table}`)).json()
      // header + one line per row (no field here holds a line break)
      expect(lines.length, table).toBe(json.rows.length + 1)
    }
    const bySite = await (await b.req('/console/api/by-site.csv?image=desk')).text()
    expect(bySite.split('\r\n')[0]).toBe('site,clients,in progress,failed,local bytes,LAN peer bytes,WAN origin bytes,WAN saved %')
    expect(bySite).toContain('berlin,1,0,0,0,0,1000,0\r\n')
    const totals = await (await b.req('/console/api/totals?site=berlin')).json()
    expect(totals.rows).toEqual([{ key: 'site berlin', clients: 1, inProgress: 0, failed: 0, bytes: { local: 0, peers: 0, origin: 1000 }, wanSavedPercent: 0 }])
    const rollout = await (await b.req('/console/api/rollout?image=desk&version=v1&site=paris')).json()
    expect(rollout.rows[0]).toMatchObject({ clients: 1, bytes: { local: 700, peers: 200, origin: 100 }, wanSavedPercent: 90 })
    expect((await b.req('/console/api/rollout?color=red')).status).toBe(400)
    expect((await b.req('/console/api/nope')).status).toBe(400)
  })

  it('pages events with a cursor and filters them through the index without overlap', async () => {
    const batch: AgentEvent[] = []
    for (let i = 0; i < 250; i++) batch.push(ev({ agent: `pager-${i % 7}`, site: 'pagersite', type: i % 5 === 0 ? 'sync.failed' : 'sync.progress', error: i % 5 === 0 ? 'disk full' : undefined }))
    await postEvents(batch)
    const b = await adminBrowser()
    const seen = new Set<string>()
    let next: string | null = null
    let pages = 0
    do {
      const res: { rows: Array<{ event: AgentEvent }>, next: string | null } = await (await b.req(`/console/api/events?site=pagersite&limit=40${next != null ? `&before=${next}` : ''}`)).json()
      for (const r of res.rows) { expect(seen.has(r.event.id)).toBe(false); seen.add(r.event.id) }
      next = res.next
      pages++
    } while (next != null && pages < 20)
    expect(seen.size).toBe(250)
    const failed = await (await b.req('/console/api/events?site=pagersite&type=sync.failed&limit=1000')).json()
    expect(failed.rows).toHaveLength(50)
    expect(failed.rows.every((r: { event: AgentEvent }) => r.event.type === 'sync.failed' && r.event.site === 'pagersite')).toBe(true)
    // the HTML page links to the next page with the cursor
    const html = await (await b.req('/console/events?site=pagersite&limit=100')).text()
    expect(html).toMatch(/href="\/console\/events\?site=pagersite&amp;limit=100&amp;before=\d{15}(!|%21)[0-9a-z]{4}-ev-\d+" rel="next"/)
    expect((await b.req('/console/api/events?before=not-a-cursor')).status).toBe(400)
  })

  it('filters agents by site and image through the agent index, page by page, and follows an agent that moved', async () => {
    const batch: AgentEvent[] = []
    for (let i = 0; i < 9; i++) batch.push(ev({ agent: `fleet-${i}`, site: i % 3 === 0 ? 'oslo' : 'rome', image: i % 2 === 0 ? 'fleetimg' : 'other', ...(i === 6 ? { servedBytes: 3 << 20 } : {}) }))
    await postEvents(batch)
    const b = await adminBrowser()
    const names = async (q: string): Promise<string[]> => {
      const out: string[] = []
      let after: string | null = null
      for (let n = 0; n < 20; n++) {
        const res: { rows: Array<{ agent: string }>, next: string | null } = await (await b.req(`/console/api/agents?${q}&limit=2${after != null ? `&after=${encodeURIComponent(after)}` : ''}`)).json()
        out.push(...res.rows.map(r => r.agent))
        if (res.next == null) return out
        after = res.next
      }
      throw new Error('paging did not end')
    }
    expect(await names('site=oslo')).toEqual(['fleet-0', 'fleet-3', 'fleet-6'])
    expect(await names('image=fleetimg')).toEqual(['fleet-0', 'fleet-2', 'fleet-4', 'fleet-6', 'fleet-8'])
    expect(await names('site=rome&image=fleetimg')).toEqual(['fleet-2', 'fleet-4', 'fleet-8'])
    await postEvents([ev({ agent: 'fleet-3', site: 'rome', image: 'other' })])
    expect(await names('site=oslo')).toEqual(['fleet-0', 'fleet-6'])
    expect(await names('site=rome')).toContain('fleet-3')
    const csv = await (await b.req('/console/api/agents.csv?site=oslo')).text()
    const lines = csv.split('\r\n')
    expect(lines[0]).toBe('agent,site,last seen,version held,latest sync,error,served to peers,peer id')
    // bytes served to LAN peers: raw in CSV and JSON, human formatted on the page; empty when never reported
    expect(lines.find(l => l.startsWith('fleet-6,'))).toMatch(/,3145728,[^,]*$/)
    expect(lines.find(l => l.startsWith('fleet-0,'))).toMatch(/,,[^,]*$/)
    const json: { rows: Array<{ agent: string, servedBytes: number | null }> } = await (await b.req('/console/api/agents?site=oslo')).json()
    expect(json.rows.map(r => [r.agent, r.servedBytes])).toEqual([['fleet-0', null], ['fleet-6', 3 << 20]])
    expect(await (await b.req('/console/agents?site=oslo')).text()).toMatch(/<th[^>]*>served to peers<\/th>[\s\S]*3\.0 MiB/)
  })

  it('draws charts from samples of the report, and the rollout page shows failures with reasons', async () => {
    const b = await adminBrowser()
    await stack.console.series.sample()
    await postEvents([ev({ agent: 'chart-1', site: 'paris', image: 'charted', version: 'v9', bytes: { local: 3 << 20, peers: 1 << 20, origin: 1 << 20 } })])
    await stack.console.series.sample()
    const svg = await (await b.req('/console/chart/bandwidth?image=charted')).text()
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg).toContain('WAN saved in this window: 80.0 %')
    expect(svg).toMatch(/<rect [^>]*><title>local disk: 3\.0 MiB<\/title>/)
    const roll = await (await b.req('/console/chart/rollout?image=charted&window=1h')).text()
    expect(roll).toContain('<polyline')
    expect(roll).toContain('v9')
    expect((await b.req('/console/chart/rollout?image=charted&window=2y')).status).toBe(400)
    await postEvents([ev({ agent: 'chart-2', site: 'paris', image: 'charted', version: 'v9', type: 'sync.failed', error: 'origin unreachable: ECONNREFUSED' })])
    const page = await (await b.req('/console/rollout?image=charted')).text()
    expect(page).toContain('origin unreachable: ECONNREFUSED')
    expect(page).toContain('data-live-svg="/console/chart/rollout?image=charted"')
  })
})

describe('console data fixes', () => {
  it('makes no report rows or chart versions of images or versions never published; they stay events', async () => {
    await postEvents([
      ev({ agent: 'ghost-1', site: 'ghosttown', image: 'nosuch', version: 'latest', type: 'sync.failed', error: 'no image nosuch' }),
      ev({ agent: 'ghost-2', site: 'ghosttown', image: 'desk', version: '9', type: 'sync.failed', error: 'no version 9' })
    ])
    const b = await adminBrowser()
    const keys = (await (await b.req('/console/api/by-image')).json()).rows.map((r: { key: string }) => r.key)
    expect(keys).not.toContain('nosuch@latest')
    expect(keys).not.toContain('desk@9')
    expect(keys).toContain('desk@v1')
    expect((await (await b.req('/console/api/rollout?image=nosuch')).json()).rows).toEqual([])
    expect((await (await b.req('/console/api/by-site')).json()).rows.map((r: { key: string }) => r.key)).not.toContain('ghosttown')
    await stack.console.series.sample()
    expect(await (await b.req('/console/chart/rollout.svg?image=desk')).text()).not.toContain('>9<')
    // still there as events
    expect((await (await b.req('/console/api/events?site=ghosttown')).json()).rows).toHaveLength(2)
  })

  it('names rates without a unit the values do not use, lists events by arrival first, wraps errors, serves a favicon', async () => {
    const b = await adminBrowser()
    const policies = await (await b.req('/console/api/policies.csv')).text()
    expect(policies.split('\r\n')[0]).toContain(',WAN cap,')
    expect(policies.split('\r\n')[0]).not.toMatch(/B\/s/)
    const events = await (await b.req('/console/events')).text()
    expect(events).toMatch(/<thead><tr><th>received<\/th>/)
    expect(events).toContain('<th class="wrap">error</th>')
    const icon = await b.req('/favicon.ico')
    expect(icon.status).toBe(200)
    expect(icon.headers.get('content-type')).toBe('image/svg+xml')
    expect(await icon.text()).toMatch(/^<svg /)
  })
})
