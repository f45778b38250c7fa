/**
 * The coordinator: one Hono app over the metadata database, the block store,
 * the directory authenticator and the image service, with its lifecycle
 * (start: open DIR, create secrets on first start, listen; stop: drain
 * requests, stop background work, close the database).
 *
 * Request order: log (request id, client IP) + metrics -> body budget lease
 * and body limits (they read no body, request-body.ts) -> routes outside /v1
 * auth (healthz, openapi, key, login; metrics with its own token check) ->
 * the admin console (`/`, `/console/...`, its own cookie sessions) -> auth
 * middleware (every other /v1 route has `c.get('principal')`) -> /v1 routes,
 * which check access before they read a body -> JSON 404.
 */
import { randomUUID } from 'node:crypto'
import { createServer as createHttpsServer } from 'node:https'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { getConnInfo } from '@hono/node-server/conninfo'
import { createAdaptorServer, type ServerType } from '@hono/node-server'
import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { routePath } from 'hono/route'
import type { HealthResponse, KeyResponse } from '../protocol/api.ts'
import { TRIMSWARM_VERSION } from '../protocol/version.ts'
import { NotFoundError } from '../protocol/errors.ts'
import { createAdminRoutes } from './admin-routes.ts'
import { createAudit } from './audit.ts'
import { createConsole, type AdminConsole } from './console/console.ts'
import { createAuth } from './auth.ts'
import { createLoginRoutes, createMeRoutes } from './auth-routes.ts'
import { parseCoordinatorConfig, parseListen, type CoordinatorConfig } from './config.ts'
import {
  BLOCKS_DIR, DEFAULT_EVENT_RETENTION_DAYS, DEFAULT_EVENT_SWEEP_INTERVAL_MS, DEFAULT_LISTEN,
  DEFAULT_LOGIN_MAX_FAILURES_PER_USER, DEFAULT_LOGIN_MAX_PER_IP, DEFAULT_LOGIN_WINDOW_SECONDS, DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_BUFFERED_BODY_BYTES, DEFAULT_MAX_JSON_BODY_BYTES, DEFAULT_SESSION_TTL_SECONDS, KEEP_ALIVE_TIMEOUT_MS, LISTEN_BACKLOG, SHUTDOWN_GRACE_MS
} from './constants.ts'
import { createDirectoryBlockStore } from './directory-block-store.ts'
import { recordS3BlockStore } from './s3-block-store-marker.ts'
import { ConfigError } from './errors.ts'
import { createEventRoutes } from './event-routes.ts'
import { createEventStore, type EventStore } from './event-store.ts'
import { createErrorHandler } from './http-errors.ts'
import { createImageRoutes } from './image-routes.ts'
import { createSwarmRoutes } from './swarm-routes.ts'
import type { ImageService } from './image-service.ts'
import { createSegmentRoutes } from './segment-routes.ts'
import { startImageServices, type SegmentService } from './segment-service.ts'
import type { Authenticator, BlockStore, CoordinatorEnv, Logger } from './interface.ts'
import { createLdapAuthenticator, parseLdapConfig } from './ldap-authenticator.ts'
import { createLogger, type LogFormat, type LogLevel } from './logger.ts'
import { openMetaStore, type MetaDb } from './meta-db.ts'
import { startMirrorRefresh } from './meta-store/shared-refresh.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { createMetricsRoute } from './metrics-route.ts'
import { buildOpenApi } from './openapi.ts'
import { createPolicyEngine } from './policy-engine.ts'
import { createPolicyStore, type PolicyStore } from './policy-store.ts'
import { createRateLimiter } from './rate-limiter.ts'
import { createBodyBudget } from './body-budget.ts'
import { bodyBudget, bodyLimit, bufferBody } from './request-body.ts'
import { ensureDir } from './secret-files.ts'
import { loadCoordinatorSecrets } from './coordinator-secrets.ts'
import { createSessionTokens } from './session-tokens.ts'
import { createSiteAssigner } from './site-assignment.ts'
import { createSiteMap } from './sites.ts'
import { createTokenStore } from './token-store.ts'
import { createStorageGc } from './storage-gc.ts'
import { createTrustedProxies, type TrustedProxies } from './trusted-proxies.ts'

/** Options of createCoordinator. */
export interface CoordinatorInit {
  /** Data dir (created on first start): metadata db, blocks, delta packs, secrets. */
  dataDir: string
  /** HOST:PORT; port 0 picks a free port (see `url` after start). Overrides config.listen. */
  listen?: string
  /** Parsed config (config.ts parseCoordinatorConfig / loadCoordinatorConfig), or a raw object to parse. */
  config?: CoordinatorConfig | Record<string, unknown>
  /** Defaults to a logger on stderr at config.logLevel (or `logLevel`), in `logFormat` (default JSON lines). */
  logger?: Logger
  logLevel?: LogLevel
  logFormat?: LogFormat
  /** trimswarm's version for trimswarm_build_info; default this package's (protocol/version.ts). */
  version?: string
  /** Replaces the LDAP authenticator built from config.ldap (e.g. another directory). */
  authenticator?: Authenticator
  /** false: build the app without listening (tests use `app.request()`). Default true. */
  serve?: boolean
}

/** A running (or startable) coordinator. */
export interface Coordinator {
  /** http(s)://host:port it listens on (after start). */
  readonly url: string
  /** The admin token (after start). */
  readonly adminToken: string
  /** Whether this start created the admin token (first start): the CLI names its file (never the token). */
  readonly adminTokenCreated: boolean
  /** The file holding the admin token (DATA/admin.token, or the config's adminTokenFile). */
  readonly adminTokenFile: string
  /** The Hono app (after start), for in-process `app.request()`. */
  readonly app: Hono<CoordinatorEnv>
  /** Raw Ed25519 manifest-signing public key (after start). */
  readonly publicKey: Uint8Array
  /** The image service (after start), for tests and benchmarks (`whenIdle`). */
  readonly images: ImageService
  /** The segment service (after start), for tests and benchmarks (`whenIdle`, `stats`). */
  readonly segments: SegmentService
  /** The event store (after start), for benchmarks that fill it. */
  readonly events: EventStore
  /** The policy store (after start). */
  readonly policies: PolicyStore
  /** The admin console (after start): its event index and chart series. */
  readonly console: AdminConsole
  start: () => Promise<void>
  stop: () => Promise<void>
}

/** The socket's remote address. */
function remoteAddress (c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown'
  } catch {
    return 'in-process' // app.request() has no socket
  }
}

/** An X-Request-Id a trusted proxy may hand on (anything else is replaced by our own). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Requests being handled, so stop() can wait for them before closing the database. */
interface InFlight {
  count: number
  stopping: boolean
  /** Resolves when no request is in flight (or after `ms`). */
  drained: (ms: number) => Promise<void>
}

function createInFlight (): InFlight {
  let waiters: Array<() => void> = []
  const state: InFlight & { done: () => void } = {
    count: 0,
    stopping: false,
    done () {
      if (state.count === 0) { for (const w of waiters) w(); waiters = [] }
    },
    async drained (ms) {
      if (state.count === 0) return
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, ms)
        waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }
  return state
}

/**
 * Logs one line per request (with its request id, also sent as X-Request-Id,
 * and the client's IP) and records it in the metrics; counts requests in flight.
 */
function requestLog (logger: Logger, metrics: Metrics, proxies: TrustedProxies, inFlight: InFlight & { done?: () => void }): MiddlewareHandler<CoordinatorEnv> {
  return async (c, next) => {
    const t0 = performance.now()
    const remote = remoteAddress(c)
    const ip = proxies.clientIp(remote, c.req.header('x-forwarded-for'))
    const given = c.req.header('x-request-id')
    const requestId = given != null && REQUEST_ID.test(given) && proxies.isTrusted(remote) ? given : randomUUID()
    c.set('clientIp', ip)
    // Secure console cookies: our own TLS, or a TLS-terminating proxy we trust saying so
    c.set('https', new URL(c.req.url).protocol === 'https:' || proxies.forwardedHttps(remote, c.req.header('x-forwarded-proto')))
    c.set('requestId', requestId)
    c.header('X-Request-Id', requestId)
    inFlight.count++
    try {
      await next()
    } finally {
      inFlight.count--
      inFlight.done?.()
    }
    // while stopping, keep-alive clients are told to go (they reconnect to the next instance)
    if (inFlight.stopping) c.header('Connection', 'close')
    // a handler that built its own Response did not get the prepared header
    if (!c.res.headers.has('x-request-id')) { try { c.res.headers.set('X-Request-Id', requestId) } catch { /* immutable headers */ } }
    const seconds = (performance.now() - t0) / 1000
    let route = routePath(c)
    if (route === '' || route.endsWith('*')) route = 'unmatched'
    const status = c.res.status
    metrics.request(c.req.method, route, status, seconds)
    const principal = c.get('principal')
    logger.info('request', { method: c.req.method, route, status, ms: Math.round(seconds * 10_000) / 10, requestId, ip, ...(principal != null ? { principal: principal.user } : {}) })
  }
}

/** Creates a coordinator; nothing touches the disk until start(). */
export function createCoordinator (init: CoordinatorInit): Coordinator {
  let state: Started | undefined
  const need = <T>(f: (s: Started) => T): T => {
    if (state == null) throw new Error('the coordinator is not started')
    return f(state)
  }

  return {
    get url () { return need(s => s.url) },
    get adminToken () { return need(s => s.adminToken) },
    get adminTokenCreated () { return need(s => s.adminTokenCreated) },
    get adminTokenFile () { return need(s => s.adminTokenFile) },
    get app () { return need(s => s.app) },
    get publicKey () { return need(s => s.publicKey) },
    get images () { return need(s => s.images) },
    get segments () { return need(s => s.segments) },
    get events () { return need(s => s.events) },
    get policies () { return need(s => s.policies) },
    get console () { return need(s => s.console) },
    async start () {
      if (state != null) return
      state = await startCoordinator(init)
    },
    async stop () {
      const s = state
      state = undefined
      await s?.close()
    }
  }
}

/** What start() builds. */
interface Started {
  url: string
  adminToken: string
  adminTokenCreated: boolean
  adminTokenFile: string
  app: Hono<CoordinatorEnv>
  publicKey: Uint8Array
  images: ImageService
  segments: SegmentService
  events: EventStore
  policies: PolicyStore
  console: AdminConsole
  close: () => Promise<void>
}

async function startCoordinator (init: CoordinatorInit): Promise<Started> {
  const startedAt = performance.now()
  const config: CoordinatorConfig = init.config == null ? {} : parseCoordinatorConfig(init.config)
  const level = init.logLevel ?? config.logLevel ?? 'info'
  const logger = init.logger ?? createLogger({ level, format: init.logFormat })
  // an audit trail is not noise: its lines are written whatever the level, unless logging is off
  const auditLogger = init.logger ?? createLogger({ level: level === 'silent' ? 'silent' : 'info', format: init.logFormat })
  const proxies = createTrustedProxies(config.trustedProxies)
  const listen = parseListen(init.listen ?? config.listen ?? DEFAULT_LISTEN)
  let ldap
  if (config.ldap != null) {
    try {
      ldap = parseLdapConfig(config.ldap)
    } catch (err) {
      throw new ConfigError(`invalid coordinator config: ${(err as Error).message}`, { cause: err })
    }
  }
  const tls = config.tls != null
    ? { cert: await readFile(config.tls.cert).catch((err: Error) => { throw new ConfigError(`tls.cert: ${err.message}`) }), key: await readFile(config.tls.key).catch((err: Error) => { throw new ConfigError(`tls.key: ${err.message}`) }) }
    : undefined

  // ---- data dir and secrets ----
  const dataDir = init.dataDir
  await ensureDir(dataDir)
  const { adminToken, adminTokenCreated, adminTokenFile, sessionSecret, signer } = await loadCoordinatorSecrets(dataDir, config)
  const db: MetaDb = await openMetaStore({ dataDir, postgres: config.metadata?.postgres }, { logger })
  const cleanups: Array<() => Promise<void>> = [async () => { await db.close() }]
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) {
      try { await fn() } catch (err) { logger.error('error while stopping', { error: (err as Error).message }) }
    }
  }

  try {
    // ---- components ----
    const tokens = createTokenStore({ db })
    const policies = createPolicyStore({ db })
    const events = createEventStore({ db })
    await tokens.start()
    await policies.start()
    await events.start()
    cleanups.push(async () => { await events.stop() })
    const policy = createPolicyEngine({ policies })
    const sessions = createSessionTokens({ secret: sessionSecret, ttlSeconds: config.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS }, { db })
    await sessions.start()
    const sites = createSiteAssigner({ siteMap: createSiteMap(config.sites), db }, { maxHints: config.maxSiteHintsPerToken })
    await sites.start()
    const auth = createAuth({ tokens, sessions, policy }, { adminToken, adminGroups: config.adminGroups, adminGroupsByName: config.adminGroupsByName })
    const authenticator = init.authenticator ?? (ldap != null ? createLdapAuthenticator({ logger }, ldap) : undefined)
    if (authenticator?.close != null) cleanups.push(async () => { await authenticator.close?.() })
    const blockStore = await openBlockStore(config, dataDir, logger)
    cleanups.push(async () => { blockStore.close?.() })
    const { images, segments } = await startImageServices({ db, blockStore, signer, logger, dataDir }, config, cleanups)
    cleanups.push(startMirrorRefresh(db, { logger, tokens, policies, sessions, events, images }))
    const storageGc = createStorageGc({ blockStore, images, logger }, config.storageGc ?? {})
    storageGc.start()
    cleanups.push(async () => { await storageGc.stop() })
    const metrics = createMetrics({ imageStats: images.stats }, { version: init.version ?? TRIMSWARM_VERSION })
    const audit = createAudit(auditLogger)
    const windowMs = (config.loginRateLimit?.windowSeconds ?? DEFAULT_LOGIN_WINDOW_SECONDS) * 1000
    const perIp = createRateLimiter({ windowMs, max: config.loginRateLimit?.maxPerIp ?? DEFAULT_LOGIN_MAX_PER_IP })
    const perUser = createRateLimiter({ windowMs, max: config.loginRateLimit?.maxFailuresPerUser ?? DEFAULT_LOGIN_MAX_FAILURES_PER_USER })

    // ---- event retention ----
    const retentionMs = (config.eventRetentionDays ?? DEFAULT_EVENT_RETENTION_DAYS) * 86_400_000
    const sweep = async (): Promise<void> => {
      try {
        const n = await events.sweep(new Date(Date.now() - retentionMs))
        if (n > 0) {
          metrics.eventsSwept(n)
          logger.info('events swept', { deleted: n })
        }
      } catch (err) {
        logger.error('event sweep failed', { error: (err as Error).message })
      }
    }
    const sweeping = sweep()
    const timer = setInterval(() => { void sweep() }, DEFAULT_EVENT_SWEEP_INTERVAL_MS)
    timer.unref()
    cleanups.push(async () => { clearInterval(timer); await sweeping })

    // ---- app ----
    const maxJson = config.limits?.maxJsonBodyBytes ?? DEFAULT_MAX_JSON_BODY_BYTES
    const maxBody = config.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
    const jsonLimit = bodyLimit(maxJson)
    const budget = createBodyBudget({ maxBytes: config.limits?.maxBufferedBodyBytes ?? DEFAULT_MAX_BUFFERED_BODY_BYTES })
    const keyBody: KeyResponse = { algorithm: 'Ed25519', publicKey: Buffer.from(signer.publicKeyRaw).toString('base64') }
    let openapi: Record<string, unknown> | undefined

    const inFlight = createInFlight()
    const app = new Hono<CoordinatorEnv>()
    const onError = createErrorHandler(logger)
    app.onError(onError)
    app.notFound(async (c) => await onError(new NotFoundError(`no route ${c.req.method} ${c.req.path}`), c))
    app.use('*', requestLog(logger, metrics, proxies, inFlight))
    app.use('*', bodyBudget(budget))
    app.use('*', bodyLimit(maxBody))
    for (const p of ['/v1/auth/*', '/v1/tokens', '/v1/tokens/*', '/v1/policies', '/v1/policies/*', '/v1/admin/*', '/v1/events', '/v1/capabilities', '/v1/peers', '/console/*']) app.use(p, jsonLimit)
    // the console's forms are parsed by hono, which has no limit of its own: read them here, within maxJson and the budget
    app.use('/console/*', bufferBody())

    app.get('/healthz', (c) => c.json({ ok: true, version: TRIMSWARM_VERSION, uptimeSeconds: Math.floor((performance.now() - startedAt) / 1000) } satisfies HealthResponse))
    app.route('/', await createMetricsRoute({ metrics, auth }, config.metrics))
    app.get('/v1/openapi.json', (c) => c.json(openapi ??= buildOpenApi()))
    app.get('/v1/key', (c) => c.json(keyBody))
    app.route('/', createLoginRoutes({ authenticator, sessions, auth, perIp, perUser, metrics, logger, clientIp: (c) => c.get('clientIp') }))
    // the console's login form posts to POST /v1/auth/login through `api`, so rate limits, metrics and logs are the API's
    const adminConsole = createConsole({ auth, sessions, api: app, db, events, images, policies, tokens, logger, audit }, { ...config.console, sessionTtlSeconds: config.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS })
    await adminConsole.start()
    cleanups.push(async () => { await adminConsole.stop() })
    app.route('/', adminConsole.app)
    app.use('/v1/*', auth.middleware)
    app.route('/', createMeRoutes())
    app.route('/', createAdminRoutes({ tokens, policies, images, storageGc, audit }))
    app.route('/', createEventRoutes({ events, metrics, images, sites, clientAddress: (c) => c.get('clientIp') }, config.events))
    app.route('/', createImageRoutes(images, audit)).route('/', createSegmentRoutes(segments))
    app.route('/', createSwarmRoutes({ db, signer, logger, sites, clientAddress: (c) => c.get('clientIp'), maxRegistrationsPerToken: config.swarm?.maxRegistrationsPerToken }))

    // ---- listen ----
    let url = ''
    if (init.serve !== false) {
      const server = await listenOn(app, listen, tls)
      const addr = server.address() as AddressInfo
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
      url = `${tls != null ? 'https' : 'http'}://${host}:${addr.port}`
      cleanups.push(async () => {
        inFlight.stopping = true
        await closeServer(server)
        // a request whose socket was cut at the grace limit may still be running: let it finish before the database closes
        await inFlight.drained(SHUTDOWN_GRACE_MS)
      })
      logger.info('coordinator listening', { version: TRIMSWARM_VERSION, node: process.versions.node, url, dataDir, ldap: ldap != null, tls: tls != null })
    }

    return {
      url,
      adminToken,
      adminTokenCreated,
      adminTokenFile,
      app,
      publicKey: signer.publicKeyRaw,
      images, segments,
      events,
      policies,
      console: adminConsole,
      close: cleanup
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}

/** The block store the config names: an S3 bucket with `blockStore.s3`, else DATA/blocks. */
async function openBlockStore (config: CoordinatorConfig, dataDir: string, logger: Logger): Promise<BlockStore & { close?: () => void }> {
  const s3 = config.blockStore?.s3
  if (s3 == null) return await createDirectoryBlockStore({ logger }, { path: join(dataDir, BLOCKS_DIR) })
  // loaded only when used: the embedded default never loads the S3 SDK
  const { openS3BlockStoreFromConfig } = await import('./s3-block-store.ts')
  const store = await openS3BlockStoreFromConfig({ logger }, s3)
  await recordS3BlockStore(dataDir, { endpoint: s3.endpoint, bucket: store.bucket, keyPrefix: store.keyPrefix })
  logger.info('block store: S3 bucket', { endpoint: s3.endpoint, bucket: store.bucket, keyPrefix: store.keyPrefix })
  return store
}

async function listenOn (app: Hono<CoordinatorEnv>, listen: { host: string, port: number }, tls?: { cert: Buffer, key: Buffer }): Promise<ServerType> {
  return await new Promise((resolve, reject) => {
    const options = tls != null
      ? { fetch: app.fetch, hostname: listen.host, port: listen.port, createServer: createHttpsServer, serverOptions: { cert: tls.cert, key: tls.key } }
      : { fetch: app.fetch, hostname: listen.host, port: listen.port }
    const server = createAdaptorServer(options)
    const http = server as import('node:http').Server
    http.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
    http.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000 // must exceed keepAliveTimeout (Node docs)
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(err.code === 'EADDRINUSE'
        ? new ConfigError(`cannot listen on ${listen.host}:${listen.port}: address in use`, { cause: err })
        : err)
    }
    server.once('error', onError)
    http.listen({ host: listen.host, port: listen.port, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', onError)
      resolve(server)
    })
  })
}

/** Stops accepting, lets in-flight requests finish (up to SHUTDOWN_GRACE_MS), then closes what is left. */
async function closeServer (server: ServerType): Promise<void> {
  const s = server as import('node:http').Server
  const closed = new Promise<void>(resolve => { s.close(() => { resolve() }) })
  s.closeIdleConnections?.()
  const timer = setTimeout(() => { s.closeAllConnections?.() }, SHUTDOWN_GRACE_MS)
  await closed
  clearTimeout(timer)
}
