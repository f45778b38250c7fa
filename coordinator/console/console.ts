/**
 * The admin console: server-rendered pages under /console (and a redirect at
 * /), their live refresh, JSON API and CSV export, built on the coordinator's
 * own components (auth, image service, event store, policy store). Its only
 * state of its own is the event index and the chart samples (level
 * sublevels `console-*`), both derived and rebuildable.
 *
 * Mount: `const admin = createConsole({ auth, api: app, db, events, images, policies, tokens, logger, audit }, { sessionTtlSeconds })`,
 * `await admin.start()`, `app.route('/', admin.app)`, and `await admin.stop()` before the db closes.
 */
import { readFileSync } from 'node:fs'
import { Hono, type Context } from 'hono'
import { html } from 'hono/html'
import { ADMIN_TOKEN_PREFIX, type Auth } from '../auth.ts'
import type { Audit } from '../audit.ts'
import { DEFAULT_SESSION_TTL_SECONDS } from '../constants.ts'
import type { EventStore } from '../event-store.ts'
import { STATUS_OF_ERROR } from '../http-errors.ts'
import type { ImageService } from '../image-service.ts'
import type { CoordinatorEnv, Logger } from '../interface.ts'
import type { MetaDb } from '../meta-db.ts'
import type { PolicyStore } from '../policy-store.ts'
import type { SessionTokens } from '../session-tokens.ts'
import { nameParam, tokenIdParam as tokenId } from '../request-body.ts'
import type { TokenStore } from '../token-store.ts'
import { ForbiddenError, NotFoundError, TrimswarmError, UnauthorizedError, ValidationError } from '../../protocol/errors.ts'
import { name as nameSchema } from '../../protocol/api.ts'
import { createCharts, windowParam } from './charts.ts'
import { CONSOLE_REFRESH_MS } from './constants.ts'
import { createEventIndex, type EventIndex } from './event-index.ts'
import { shell, type Body, type Markup } from './layout.ts'
import { formatBytes, formatTime } from './format.ts'
import { actionForm, chartBox, createdTokenBody, detailList, errorBody, filterForm, forbiddenBody, loginBody, selectField, tokenForm, typeField, windowField } from './pages.ts'
import { formValues, parsePolicyForm, policyToForm, renderPolicyForm } from './policy-form.ts'
import { checkParams, createTables, publishedReport, typeParam, versionHref } from './report-queries.ts'
import { createSeriesStore, type SeriesStore } from './series-store.ts'
import { clearSession, csrfToken, csrfValid, principalOf, safeNext, sessionCookie, setSession } from './session.ts'
import { csvOf, jsonRows, liveCells, renderTable } from './table-view.ts'

/** What the console is built on (all of them the coordinator's own components). */
export interface ConsoleComponents {
  auth: Auth
  /** Issues the session of an admin-token login and revokes sessions at logout. */
  sessions: SessionTokens
  /**
   * The coordinator's root app (anything with its `fetch`): the login form posts to its
   * POST /v1/auth/login with the browser's connection, so rate limits, metrics and logs are the API's.
   */
  api: { fetch: (request: Request, env?: any) => Response | Promise<Response> }
  db: MetaDb
  events: EventStore
  images: ImageService
  policies: PolicyStore
  tokens: TokenStore
  logger: Logger
  /** The audit trail (the console's changes are audited like the API's). */
  audit: Audit
}

/** Options of createConsole (defaults in console/constants.ts). */
export interface ConsoleInit {
  /** Browser refresh period (CONSOLE_REFRESH_MS). */
  refreshMs?: number
  /** Chart sampling period (SERIES_SAMPLE_MS). */
  sampleMs?: number
  /** Age before the event index takes an event (EVENT_INDEX_SETTLE_MS); tests that post and read at once use 0. */
  indexSettleMs?: number
  /** Lifetime of the session cookie: the coordinator's sessionTtlSeconds (DEFAULT_SESSION_TTL_SECONDS). */
  sessionTtlSeconds?: number
}

/** The console: its routes and the background work behind its charts and filters. */
export interface AdminConsole {
  app: Hono<CoordinatorEnv>
  index: EventIndex
  series: SeriesStore
  start: () => Promise<void>
  stop: () => Promise<void>
}

const ASSETS = new URL('./assets/', import.meta.url)
const API_PREFIXES = ['/console/api/', '/console/live/', '/console/chart/']
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store'
}

/** Creates the console (nothing runs until start()). */
export function createConsole (components: ConsoleComponents, init: ConsoleInit = {}): AdminConsole {
  const { auth, sessions, images, events, policies, tokens, logger, audit } = components
  const report = publishedReport(events, images)
  const refreshMs = init.refreshMs ?? CONSOLE_REFRESH_MS
  const ttl = init.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS
  const index = createEventIndex({ db: components.db, logger }, { settleMs: init.indexSettleMs })
  const series = createSeriesStore({ db: components.db, events: { report }, logger }, { sampleMs: init.sampleMs })
  const tables = createTables({ db: components.db, events, images, policies, tokens, index })
  const charts = createCharts({ series })
  const js = readFileSync(new URL('console.js', ASSETS), 'utf8')
  const css = readFileSync(new URL('console.css', ASSETS), 'utf8')
  const favicon = readFileSync(new URL('favicon.svg', ASSETS), 'utf8')

  const app = new Hono<CoordinatorEnv>()
  const send = (c: Context, status: number, page: Markup): Response | Promise<Response> => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v)
    return c.html(page, status as 200)
  }
  const page = (c: Context<CoordinatorEnv>, title: string, active: string, body: Body, status = 200): Response | Promise<Response> =>
    send(c, status, shell({ title, active, principal: c.get('principal'), csrf: csrfToken(c), refreshMs, body }))
  const errorPage = (c: Context<CoordinatorEnv>, err: unknown): Response | Promise<Response> => {
    if (!(err instanceof TrimswarmError) || STATUS_OF_ERROR[err.name] == null) throw err
    return page(c, 'Error', '', errorBody(err.message), STATUS_OF_ERROR[err.name])
  }

  app.get('/', (c) => c.redirect('/console/images', 303))
  app.get('/console', (c) => c.redirect('/console/images', 303))
  app.get('/console/assets/console.js', (c) => c.body(js, 200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' }))
  // browsers ask for /favicon.ico whatever the page says; an SVG serves both
  app.get('/favicon.ico', (c) => c.body(favicon, 200, { 'Content-Type': 'image/svg+xml', 'Cache-Control': 'public, max-age=86400', 'X-Content-Type-Options': 'nosniff' }))
  app.get('/console/assets/console.css', (c) => c.body(css, 200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' }))

  // ---- login / logout ----
  app.get('/console/login', (c) => send(c, 200, shell({ title: 'Log in', csrf: csrfToken(c), body: loginBody(csrfToken(c), safeNext(c.req.query('next'))) })))
  app.post('/console/login', async (c) => {
    const form = await c.req.parseBody()
    const csrf = csrfToken(c)
    const next = safeNext(typeof form.next === 'string' ? form.next : undefined)
    const fail = (status: number, message: string): Response | Promise<Response> => send(c, status, shell({ title: 'Log in', csrf, body: loginBody(csrf, next, message) }))
    if (!csrfValid(c, form)) return fail(403, 'The form expired or did not come from this console (CSRF check failed). Please try again.')
    const str = (k: string): string => typeof form[k] === 'string' ? form[k] : ''
    let token = str('token').trim()
    if (token === '') {
      const user = str('user').trim()
      const password = str('password')
      if (user === '' || password === '') return fail(400, 'Enter a user name and password (or the admin token).')
      const res = await components.api.fetch(new Request(new URL('/v1/auth/login', c.req.url), {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user, password })
      }), c.env)
      if (res.status !== 200) {
        const body = await res.json().catch(() => ({})) as { error?: { message?: string } }
        if (res.status === 401) return fail(401, 'Wrong user name or password.')
        return fail(res.status, body.error?.message ?? `login failed (HTTP ${res.status})`)
      }
      token = ((await res.json()) as { token: string }).token
    }
    const principal = auth.principalFor(token)
    if (principal == null) return fail(401, 'That admin token is not valid.')
    if (principal.kind !== 'admin') {
      logger.info('console login refused: not an admin', { user: principal.user })
      return send(c, 403, shell({ title: 'Forbidden', csrf, body: forbiddenBody(principal.user, 'Your account is not in an admin group.') }))
    }
    // the admin token itself never goes into a cookie: an admin session like a user's, revocable at logout
    if (principal.user === 'admin' && token.startsWith(ADMIN_TOKEN_PREFIX)) token = sessions.issue('admin', [], true).token
    setSession(c, token, ttl)
    logger.info('console login', { user: principal.user })
    return c.redirect(next, 303)
  })
  app.post('/console/logout', async (c) => {
    const form = await c.req.parseBody()
    if (!csrfValid(c, form)) return send(c, 403, shell({ title: 'Forbidden', csrf: csrfToken(c), body: errorBody('CSRF check failed: log out from the console page.') }))
    // revoke the session server-side: a copy of the cookie stops working too (console and /v1)
    const token = sessionCookie(c)
    if (token != null && await sessions.revoke(token)) logger.info('console logout: session revoked', { user: auth.principalFor(token)?.user })
    clearSession(c)
    return c.redirect('/console/login', 303)
  })

  // ---- everything else needs an admin ----
  app.use('/console/*', async (c, next) => {
    const path = c.req.path
    if (path === '/console/login' || path.startsWith('/console/assets/')) { await next(); return }
    const api = API_PREFIXES.some(p => path.startsWith(p))
    const principal = principalOf(c, auth)
    if (principal == null) {
      if (api) throw new UnauthorizedError('log in to the console first (session cookie), or send Authorization: Bearer <token>')
      const url = new URL(c.req.url)
      return c.redirect(`/console/login?next=${encodeURIComponent(url.pathname + url.search)}`, 303)
    }
    if (principal.kind !== 'admin') {
      if (api) throw new ForbiddenError('the console is for administrators')
      return send(c, 403, shell({ title: 'Forbidden', csrf: csrfToken(c), body: forbiddenBody(principal.user, 'Your account is not in an admin group.') }))
    }
    c.set('principal', principal)
    await next()
  })
  // every POST below carries the CSRF token
  app.post('/console/*', async (c, next) => {
    const form = await c.req.parseBody()
    if (!csrfValid(c, form)) return page(c, 'Forbidden', '', errorBody('The form expired or did not come from this console (CSRF check failed): nothing was changed. Reload the page and try again.'), 403)
    await next()
  })

  // ---- data: JSON, CSV, live cells, charts ----
  app.get('/console/api/:table', async (c) => {
    let id = c.req.param('table')
    const csv = id.endsWith('.csv')
    if (csv) id = id.slice(0, -4)
    const table = tables[id]
    if (table == null) throw new ValidationError(`no table ${id}; tables: ${Object.keys(tables).join(', ')}`)
    const q = c.req.query()
    checkParams(table, q)
    const result = await table.load(q)
    if (csv) return c.body(csvOf(table, result.rows), 200, { 'Content-Type': 'text/csv; charset=utf-8', 'Content-Disposition': `attachment; filename="trimswarm-${id}.csv"`, 'Cache-Control': 'no-store' })
    return c.json({ rows: jsonRows(table, result.rows), next: result.next, partial: result.partial === true })
  })
  app.get('/console/live/:table', async (c) => {
    const table = tables[c.req.param('table')]
    if (table == null) throw new ValidationError('no such table')
    const q = c.req.query()
    checkParams(table, q)
    const result = await table.load(q)
    return c.json({ cells: liveCells(table, result.rows), next: result.next }, 200, { 'Cache-Control': 'no-store' })
  })
  app.get('/console/chart/:chart', async (c) => {
    const chart = charts[c.req.param('chart').replace(/\.svg$/, '')]
    if (chart == null) throw new ValidationError('no such chart')
    const q = c.req.query()
    for (const k of Object.keys(q)) if (!chart.params.includes(k)) throw new ValidationError(`${k}: unknown query parameter`)
    return c.body(await chart.render(q), 200, { 'Content-Type': 'image/svg+xml; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' })
  })

  // ---- pages ----
  const imageNames = async (): Promise<string[]> => (await images.listImages(() => true)).images.map(i => i.name)
  const siteNames = async (): Promise<string[]> => [...new Set((await report({})).map(r => r.site))].sort()
  const qs = (q: Record<string, string | undefined>): string => {
    const p = new URLSearchParams()
    for (const [k, v] of Object.entries(q)) if (v != null && v !== '') p.set(k, v)
    const s = p.toString()
    return s === '' ? '' : `?${s}`
  }
  const show = async (id: string, q: Record<string, string>, pagePath: string): Promise<Markup> => {
    const t = tables[id]
    const own = Object.fromEntries(Object.entries(q).filter(([k]) => t.params.includes(k)))
    return renderTable(t, await t.load(own), own, pagePath)
  }

  app.get('/console/images', async (c) => {
    try {
      const retired = c.req.query('retired')
      return await page(c, 'Images', 'images', [retired != null ? note(`Retired ${retired}. Storage gc (trimswarm image gc, or the daily sweep) frees its chunks that no live version shares.`) : '', await show('versions', {}, '/console/images')])
    } catch (err) { return await errorPage(c, err) }
  })
  app.get('/console/images/:image/:version', async (c) => {
    try {
      const image = nameParam(c.req.param('image'), 'image')
      const version = nameParam(c.req.param('version'), 'version')
      const v = (await images.adminImages()).images.find(i => i.name === image)?.versions.find(x => x.version === version)
      if (v == null) throw new NotFoundError(`image ${image} has no version ${version}`)
      const body = [
        detailList([
          ['state', v.latest ? `${v.state}, latest` : v.state],
          ['published', formatTime(v.publishedAt)],
          ['size', formatBytes(v.size)],
          ['non-zero data', formatBytes(v.nonZeroBytes)],
          ['chunks', String(v.chunks)],
          ['previous version', v.previous ?? 'none'],
          ['delta pack', v.deltaPackBytes == null ? 'none' : formatBytes(v.deltaPackBytes)]
        ]),
        v.state === 'live' || v.state === 'incomplete'
          ? actionForm(`${versionHref(image, version)}/retire`, csrfToken(c), `Retire ${image} ${version}`, `Retiring stops offering ${version} as latest${v.latest ? ' (agents already on it stay on it until a newer version is published or they are given a version by name)' : ''}; storage gc then deletes its chunks that no live version shares, and it is no longer served.`)
          : note(`This version is ${v.state}.`),
        html`<p><a href="/console/images">Back to the images</a> · <a href="/console/rollout?image=${image}">Rollout of ${image}</a></p>`
      ]
      return await page(c, `${image} ${version}`, 'images', body)
    } catch (err) { return await errorPage(c, err) }
  })
  app.post('/console/images/:image/:version/retire', async (c) => {
    try {
      const image = nameParam(c.req.param('image'), 'image')
      const version = nameParam(c.req.param('version'), 'version')
      const before = await images.getInfo(image, version).catch(() => undefined)
      const after = await images.retire(image, version)
      audit(c, 'version.retire', { target: { image, version, via: 'console' }, before: { retired: before?.retired }, after: { retired: after.retired } })
      return c.redirect(`/console/images?retired=${encodeURIComponent(`${image} ${version}`)}`, 303)
    } catch (err) { return await errorPage(c, err) }
  })

  // ---- machine tokens ----
  const groupNames = (): string[] => Object.keys(policies.all()).sort()
  app.get('/console/tokens', async (c) => {
    try {
      const revoked = c.req.query('revoked')
      return await page(c, 'Tokens', 'tokens', [revoked != null ? note(`Revoked token ${revoked}: agents using it get 401 from their next request.`) : '', await show('tokens', {}, '/console/tokens'), tokenForm(csrfToken(c), groupNames())])
    } catch (err) { return await errorPage(c, err) }
  })
  app.post('/console/tokens', async (c) => {
    try {
      const form = await c.req.parseBody()
      const group = typeof form.group === 'string' ? form.group.trim() : ''
      const label = typeof form.name === 'string' ? form.name.trim() : ''
      const again = async (message: string): Promise<Response> => await page(c, 'Tokens', 'tokens', [await show('tokens', {}, '/console/tokens'), tokenForm(csrfToken(c), groupNames(), { group, name: label }, message)], 400)
      try {
        nameSchema.parse(group, 'group')
      } catch {
        return await again('Group: letters, digits and . _ + - only (up to 128), starting with a letter or digit.')
      }
      if (label.length > 128) return await again('Name: at most 128 characters.')
      const { info, token } = await tokens.create(group, label === '' ? undefined : label)
      audit(c, 'token.create', { target: { tokenId: info.id, via: 'console' }, before: null, after: info })
      return await page(c, 'Token created', 'tokens', createdTokenBody(info, token))
    } catch (err) { return await errorPage(c, err) }
  })
  app.get('/console/tokens/:id', async (c) => {
    try {
      const id = tokenId(c.req.param('id'))
      const t = (await tokens.list()).find(x => x.id === id)
      if (t == null) throw new NotFoundError(`no token ${id}`)
      const body = [
        detailList([['group', t.group], ['name (site)', t.name], ['created', formatTime(t.createdAt)], ['state', t.revoked ? 'revoked' : 'active']]),
        t.revoked ? note('This token is revoked.') : actionForm(`/console/tokens/${id}/revoke`, csrfToken(c), `Revoke token ${id}`, 'Agents using this token get 401 from their next request. This cannot be undone: give them a new token.'),
        html`<p><a href="/console/tokens">Back to the tokens</a></p>`
      ]
      return await page(c, `Token ${id}`, 'tokens', body)
    } catch (err) { return await errorPage(c, err) }
  })
  app.post('/console/tokens/:id/revoke', async (c) => {
    try {
      const id = tokenId(c.req.param('id'))
      const before = (await tokens.list()).find(t => t.id === id) ?? null
      const after = await tokens.revoke(id)
      audit(c, 'token.revoke', { target: { tokenId: id, via: 'console' }, before, after })
      return c.redirect(`/console/tokens?revoked=${id}`, 303)
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/rollout', async (c) => {
    try {
      const q = c.req.query()
      const names = await imageNames()
      const image = q.image != null && q.image !== '' ? nameParam(q.image, 'image') : names[0]
      const w = windowParam(q)
      const form = filterForm('/console/rollout', [selectField('Image', 'image', names, image, names.length === 0 ? 'no images yet' : 'choose'), windowField(w.name)])
      if (image == null) return await page(c, 'Rollout', 'rollout', [form, note('No image has been published yet.')])
      const chartSrc = `/console/chart/rollout${qs({ image, window: q.window })}`
      const body = [
        form,
        chartBox(chartSrc, await charts.rollout.render({ image, ...(q.window != null ? { window: q.window } : {}) })),
        await show('rollout', { image }, '/console/rollout'),
        await show('failures', { image }, '/console/rollout')
      ]
      return await page(c, `Rollout of ${image}`, 'rollout', body)
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/bandwidth', async (c) => {
    try {
      const q = c.req.query()
      const image = q.image != null && q.image !== '' ? nameParam(q.image, 'image') : undefined
      const site = q.site != null && q.site !== '' ? nameParam(q.site, 'site') : undefined
      const w = windowParam(q)
      const form = filterForm('/console/bandwidth', [selectField('Image', 'image', await imageNames(), image), selectField('Site', 'site', await siteNames(), site), windowField(w.name)])
      const chartQ = { ...(image != null ? { image } : {}), ...(site != null && image == null ? { site } : {}), ...(q.window != null ? { window: q.window } : {}) }
      const body = [
        form,
        image != null && site != null ? note('The chart shows the image; choose only a site to chart a site.') : '',
        chartBox(`/console/chart/bandwidth${qs(chartQ)}`, await charts.bandwidth.render(chartQ)),
        await show('totals', { ...(image != null ? { image } : {}), ...(site != null ? { site } : {}) }, '/console/bandwidth'),
        await show('by-site', image != null ? { image } : {}, '/console/bandwidth'),
        await show('by-image', site != null ? { site } : {}, '/console/bandwidth')
      ]
      return await page(c, 'Bandwidth', 'bandwidth', body)
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/agents', async (c) => {
    try {
      const q = c.req.query()
      checkParams(tables.agents, q)
      const form = filterForm('/console/agents', [selectField('Site', 'site', await siteNames(), q.site), selectField('Image', 'image', await imageNames(), q.image)])
      return await page(c, 'Agents', 'agents', [form, await show('agents', q, '/console/agents')])
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/events', async (c) => {
    try {
      const q = c.req.query()
      checkParams(tables.events, q)
      typeParam(q)
      const form = filterForm('/console/events', [selectField('Image', 'image', await imageNames(), q.image), selectField('Site', 'site', await siteNames(), q.site), typeField(q.type)])
      return await page(c, 'Events', 'events', [form, await show('events', q, '/console/events')])
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/policy', async (c) => {
    try {
      const saved = c.req.query('saved')
      const body = [saved != null ? note(`Saved the policy of ${saved}.`) : '', await show('policies', {}, '/console/policy'), html`<p><a class="button" href="/console/policy/new">New group policy</a></p>`]
      return await page(c, 'Policy', 'policy', body)
    } catch (err) { return await errorPage(c, err) }
  })
  app.get('/console/policy/new', (c) => page(c, 'New group policy', 'policy', renderPolicyForm(policyToForm('', undefined), {}, csrfToken(c), true)))
  app.get('/console/policy/:group', async (c) => {
    try {
      const group = nameParam(c.req.param('group'), 'group')
      const p = policies.get(group)
      const hint = p == null ? note(`Group ${group} has no policy yet: saving creates one.`) : ''
      return await page(c, `Policy of ${group}`, 'policy', [hint, renderPolicyForm(policyToForm(group, p), {}, csrfToken(c), false)])
    } catch (err) { return await errorPage(c, err) }
  })
  const savePolicy = async (c: Context<CoordinatorEnv>, isNew: boolean, pathGroup?: string): Promise<Response> => {
    const form = await c.req.parseBody()
    const values = formValues(form)
    if (pathGroup != null) values.group = pathGroup
    const { policy, errors } = parsePolicyForm(values)
    if (policy == null) {
      return await page(c, isNew ? 'New group policy' : `Policy of ${values.group}`, 'policy', renderPolicyForm(values, errors, csrfToken(c), isNew), 400)
    }
    const before = policies.get(values.group) ?? null
    await policies.put(values.group, policy)
    audit(c, 'policy.set', { target: { group: values.group, via: 'console' }, before, after: policy })
    return c.redirect(`/console/policy?saved=${encodeURIComponent(values.group)}`, 303)
  }
  app.post('/console/policy', async (c) => await savePolicy(c, true))
  app.post('/console/policy/:group', async (c) => {
    try {
      return await savePolicy(c, false, nameParam(c.req.param('group'), 'group'))
    } catch (err) { return await errorPage(c, err) }
  })

  return {
    app,
    index,
    series,
    async start () {
      await index.start()
      await series.start()
    },
    async stop () {
      await series.stop()
      await index.stop()
    }
  }
}

/** A short note paragraph (escaped). */
function note (text: string): Markup {
  return html`<p class="note">${text}</p>`
}
