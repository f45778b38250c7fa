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
import type { TokenStore } from '../token-store.ts'
import { ForbiddenError, TrimswarmError, UnauthorizedError, ValidationError } from '../../protocol/errors.ts'
import { createCharts } from './charts.ts'
import { CONSOLE_REFRESH_MS } from './constants.ts'
import { createEventIndex, type EventIndex } from './event-index.ts'
import { shell, type Body, type Markup } from './layout.ts'
import { errorBody, forbiddenBody, loginBody } from './pages.ts'
import { checkParams, createTables, publishedReport } from './report-queries.ts'
import { createSeriesStore, type SeriesStore } from './series-store.ts'
import { clearSession, csrfToken, csrfValid, principalOf, safeNext, sessionCookie, setSession } from './session.ts'
import { csvOf, jsonRows, liveCells, renderTable } from './table-view.ts'
import { ROUTES } from '../routes.ts'
import { useImagePages, usePolicyPages, useReportPages, useTokenPages, type ConsoleContext } from './console-pages.ts'

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
const SVG_HEADERS = { 'Content-Type': 'image/svg+xml; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' }
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
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

  const ctx: ConsoleContext = {
    components, auth, sessions, images, events, policies, tokens, logger, audit, report, refreshMs, ttl,
    index, series, tables, charts, js, css, favicon, send, page, errorPage, imageNames, siteNames, qs, show
  }
  useSessionRoutes(app, ctx)
  useDataRoutes(app, ctx)
  useImagePages(app, ctx)
  useTokenPages(app, ctx)
  useReportPages(app, ctx)
  usePolicyPages(app, ctx)

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

/** Assets, login and logout, then the admin gate and the CSRF check of every POST. */
function useSessionRoutes (app: Hono<CoordinatorEnv>, ctx: ConsoleContext): void {
  const { components, auth, sessions, images, logger, ttl, js, css, favicon, send, page } = ctx
  app.get('/', (c) => c.redirect('/console/images', 303))
  app.get('/console', (c) => c.redirect('/console/images', 303))
  const asset = (type: string, cache = 'no-cache'): Record<string, string> =>
    ({ 'Content-Type': type, 'Cache-Control': cache, 'X-Content-Type-Options': 'nosniff' })
  app.get('/console/assets/console.js', (c) => c.body(js, 200, asset('text/javascript; charset=utf-8')))
  // browsers ask for /favicon.ico whatever the page says; an SVG serves both
  app.get('/favicon.ico', (c) => c.body(favicon, 200, asset('image/svg+xml', 'public, max-age=86400')))
  app.get('/console/assets/console.css', (c) => c.body(css, 200, asset('text/css; charset=utf-8')))

  // ---- login / logout ----
  app.get('/console/login', (c) => send(c, 200, shell({ title: 'Log in', csrf: csrfToken(c), body: loginBody(csrfToken(c), safeNext(c.req.query('next'))) })))
  app.post('/console/login', async (c) => {
    const form = await c.req.parseBody()
    const csrf = csrfToken(c)
    const next = safeNext(typeof form.next === 'string' ? form.next : undefined)
    const fail = (status: number, message: string): Response | Promise<Response> =>
      send(c, status, shell({ title: 'Log in', csrf, body: loginBody(csrf, next, message) }))
    if (!csrfValid(c, form)) return fail(403, 'The form expired or did not come from this console (CSRF check failed). Please try again.')
    const str = (k: string): string => typeof form[k] === 'string' ? form[k] : ''
    let token = str('token').trim()
    if (token === '') {
      const user = str('user').trim()
      const password = str('password')
      if (user === '' || password === '') return fail(400, 'Enter a user name and password (or the admin token).')
      const res = await components.api.fetch(new Request(new URL(ROUTES.login.path, c.req.url), {
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
    if (!csrfValid(c, form)) {
      return send(c, 403, shell({ title: 'Forbidden', csrf: csrfToken(c), body: errorBody('CSRF check failed: log out from the console page.') }))
    }
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
    if (!csrfValid(c, form)) {
      const why = 'The form expired or did not come from this console (CSRF check failed): nothing was changed. Reload the page and try again.'
      return page(c, 'Forbidden', '', errorBody(why), 403)
    }
    await next()
  })
}

/** The tables as JSON and CSV, their live cells, and the charts. */
function useDataRoutes (app: Hono<CoordinatorEnv>, ctx: ConsoleContext): void {
  const { tables, charts } = ctx
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
    const csvHeaders = {
      'Content-Type': 'text/csv; charset=utf-8', 'Content-Disposition': `attachment; filename="trimswarm-${id}.csv"`, 'Cache-Control': 'no-store'
    }
    if (csv) return c.body(csvOf(table, result.rows), 200, csvHeaders)
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
    return c.body(await chart.render(q), 200, SVG_HEADERS)
  })
}
