/**
 * The coordinator: one Hono app over the metadata database, the block store,
 * the directory authenticator and the image service, with its lifecycle
 * (start: open DIR, create secrets on first start, listen; stop: drain
 * requests, stop background work, close the database).
 * The request order is at startCoordinator; the routes are in routes.ts.
 */
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Hono, type Context } from 'hono'
import type { HealthResponse, KeyResponse } from '../protocol/api.ts'
import { TRIMSWARM_VERSION } from '../protocol/version.ts'
import { NotFoundError } from '../protocol/errors.ts'
import { createAdminRoutes } from './admin-routes.ts'
import { createAudit, type Audit } from './audit.ts'
import { createConsole, type AdminConsole } from './console/console.ts'
import { createAuth } from './auth.ts'
import { createLoginRoutes, createMeRoutes } from './auth-routes.ts'
import { parseCoordinatorConfig, parseListen, type CoordinatorConfig } from './config.ts'
import {
  BLOCKS_DIR, DEFAULT_EVENT_RETENTION_DAYS, DEFAULT_EVENT_SWEEP_INTERVAL_MS, DEFAULT_LISTEN,
  DEFAULT_LOGIN_MAX_FAILURES_PER_USER, DEFAULT_LOGIN_MAX_PER_IP, DEFAULT_LOGIN_WINDOW_SECONDS, DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_BUFFERED_BODY_BYTES, DEFAULT_MAX_JSON_BODY_BYTES, DEFAULT_SESSION_TTL_SECONDS, SHUTDOWN_GRACE_MS
} from './constants.ts'
import { createDirectoryBlockStore } from './directory-block-store.ts'
import { recordS3BlockStore } from './s3-block-store-marker.ts'
import { ConfigError } from './errors.ts'
import { createEventRoutes } from './event-routes.ts'
import { createEventStore, type EventStore } from './event-store.ts'
import { createErrorHandler } from './http-errors.ts'
import { closeServer, listenOn } from './http-server.ts'
import { createImageRoutes } from './image-routes.ts'
import { createSwarmRoutes } from './swarm-routes.ts'
import type { ImageService } from './image-service.ts'
import { createSegmentRoutes } from './segment-routes.ts'
import { createPaceRegistry } from './pace.ts'
import { startImageServices, type SegmentService } from './segment-service.ts'
import type { Authenticator, BlockStore, CoordinatorEnv, Logger, ManifestSigner } from './interface.ts'
import { createLdapAuthenticator, parseLdapConfig, type LdapInit } from './ldap-authenticator.ts'
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
import { createInFlight, requestLog, type InFlight } from './request-log.ts'
import { API_PATTERN, CONSOLE_PREFIX, jsonLimitedRoutes, ROUTES } from './routes.ts'
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

/** What the config and init settle before anything touches the disk. */
interface Settings {
  config: CoordinatorConfig
  logger: Logger
  auditLogger: Logger
  proxies: TrustedProxies
  listen: { host: string, port: number }
  ldap?: LdapInit
  tls?: { cert: Buffer, key: Buffer }
}

async function loadSettings (init: CoordinatorInit): Promise<Settings> {
  const config: CoordinatorConfig = init.config == null ? {} : parseCoordinatorConfig(init.config)
  const level = init.logLevel ?? config.logLevel ?? 'info'
  const logger = init.logger ?? createLogger({ level, format: init.logFormat })
  // an audit trail is not noise: its lines are written whatever the level, unless logging is off
  const auditLogger = init.logger ?? createLogger({ level: level === 'silent' ? 'silent' : 'info', format: init.logFormat })
  const listen = parseListen(init.listen ?? config.listen ?? DEFAULT_LISTEN)
  let ldap: LdapInit | undefined
  if (config.ldap != null) {
    try {
      ldap = parseLdapConfig(config.ldap)
    } catch (err) {
      throw new ConfigError(`invalid coordinator config: ${(err as Error).message}`, { cause: err })
    }
  }
  const readPem = async (what: string, file: string): Promise<Buffer> =>
    await readFile(file).catch((err: Error) => { throw new ConfigError(`${what}: ${err.message}`) })
  const tls = config.tls != null ? { cert: await readPem('tls.cert', config.tls.cert), key: await readPem('tls.key', config.tls.key) } : undefined
  return { config, logger, auditLogger, proxies: createTrustedProxies(config.trustedProxies), listen, ldap, tls }
}

/** What the data dir holds. */
interface DataDir {
  path: string
  admin: { token: string, created: boolean, file: string }
  sessionSecret: Buffer
  signer: ManifestSigner
  db: MetaDb
}

/** The data dir's secrets (created on first start), signing key and metadata db. */
async function openDataDir (dataDir: string, settings: Settings): Promise<DataDir> {
  await ensureDir(dataDir)
  const { adminToken, adminTokenCreated, adminTokenFile, sessionSecret, signer } = await loadCoordinatorSecrets(dataDir, settings.config)
  const db = await openMetaStore({ dataDir, postgres: settings.config.metadata?.postgres }, { logger: settings.logger })
  return { path: dataDir, admin: { token: adminToken, created: adminTokenCreated, file: adminTokenFile }, sessionSecret, signer, db }
}

/** Stop steps, run last-added first; a failing step is logged and the rest still run. */
interface Cleanups {
  /** The steps, in the order added (startImageServices pushes its own). */
  steps: Array<() => Promise<void>>
  add: (fn: () => Promise<void>) => void
  run: () => Promise<void>
}

function createCleanups (logger: Logger): Cleanups {
  const steps: Array<() => Promise<void>> = []
  return {
    steps,
    add: (fn) => { steps.push(fn) },
    async run () {
      for (const fn of steps.reverse()) {
        try { await fn() } catch (err) { logger.error('error while stopping', { error: (err as Error).message }) }
      }
    }
  }
}

/** The metadata stores, policy, sessions, site hints and auth. */
async function startStores (settings: Settings, dir: DataDir, cleanups: Cleanups) {
  const { config } = settings
  const { db, admin } = dir
  const tokens = createTokenStore({ db })
  const policies = createPolicyStore({ db })
  const events = createEventStore({ db })
  await tokens.start()
  await policies.start()
  await events.start()
  cleanups.add(async () => { await events.stop() })
  const policy = createPolicyEngine({ policies })
  const sessions = createSessionTokens({ secret: dir.sessionSecret, ttlSeconds: config.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS }, { db })
  await sessions.start()
  const sites = createSiteAssigner({ siteMap: createSiteMap(config.sites), db }, { maxHints: config.maxSiteHintsPerToken })
  await sites.start()
  const { adminGroups, adminGroupsByName } = config
  const auth = createAuth({ tokens, sessions, policy }, { adminToken: admin.token, adminGroups, adminGroupsByName })
  return { tokens, policies, events, sessions, sites, auth }
}

/** The block store, the image service and storage gc, started. */
async function startImages (settings: Settings, dir: DataDir, stores: Stores, cleanups: Cleanups) {
  const { config, logger } = settings
  const dataDir = dir.path
  const blockStore = await openBlockStore(config, dataDir, logger)
  cleanups.add(async () => { blockStore.close?.() })
  const { images, segments } = await startImageServices({ db: dir.db, blockStore, signer: dir.signer, logger, dataDir }, config, cleanups.steps)
  // several coordinators on one store: reload what the others wrote
  const { tokens, policies, sessions, events } = stores
  cleanups.add(startMirrorRefresh(dir.db, { logger, tokens, policies, sessions, events, images }))
  const storageGc = createStorageGc({ blockStore, images, logger }, config.storageGc ?? {})
  storageGc.start()
  cleanups.add(async () => { await storageGc.stop() })
  return { images, segments, storageGc }
}

/** Deletes events past the retention now and every DEFAULT_EVENT_SWEEP_INTERVAL_MS. */
function startEventSweep (events: EventStore, metrics: Metrics, logger: Logger, retentionDays: number, cleanups: Cleanups): void {
  const retentionMs = retentionDays * 86_400_000
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
  cleanups.add(async () => { clearInterval(timer); await sweeping })
}

type Stores = Awaited<ReturnType<typeof startStores>>
type ImageParts = Awaited<ReturnType<typeof startImages>>

/** What the app is built from. */
interface AppParts extends Stores, ImageParts {
  settings: Settings
  dir: DataDir
  metrics: Metrics
  audit: Audit
  authenticator?: Authenticator
  inFlight: InFlight
  startedAt: number
}

/** The middlewares every request passes (request log, body budget and limits), in order. */
function useRequestMiddleware (app: Hono<CoordinatorEnv>, parts: AppParts): void {
  const { config, logger, proxies } = parts.settings
  const onError = createErrorHandler(logger)
  app.onError(onError)
  app.notFound(async (c) => await onError(new NotFoundError(`no route ${c.req.method} ${c.req.path}`), c))
  app.use('*', requestLog(logger, parts.metrics, proxies, parts.inFlight))
  app.use('*', bodyBudget(createBodyBudget({ maxBytes: config.limits?.maxBufferedBodyBytes ?? DEFAULT_MAX_BUFFERED_BODY_BYTES })))
  app.use('*', bodyLimit(config.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES))
  const jsonLimit = bodyLimit(config.limits?.maxJsonBodyBytes ?? DEFAULT_MAX_JSON_BODY_BYTES)
  for (const route of jsonLimitedRoutes()) app.on(route.method, route.path, jsonLimit)
  app.use(`${CONSOLE_PREFIX}/*`, jsonLimit)
  // the console's forms are parsed by hono, which has no limit of its own: read them here, within maxJson and the budget
  app.use(`${CONSOLE_PREFIX}/*`, bufferBody())
}

/** The routes that need no token (health, OpenAPI, key, login; metrics has its own check). */
async function useOpenRoutes (app: Hono<CoordinatorEnv>, parts: AppParts): Promise<void> {
  const { config, logger } = parts.settings
  const keyBody: KeyResponse = { algorithm: 'Ed25519', publicKey: Buffer.from(parts.dir.signer.publicKeyRaw).toString('base64') }
  let openapi: Record<string, unknown> | undefined
  const uptimeSeconds = (): number => Math.floor((performance.now() - parts.startedAt) / 1000)
  app.get(ROUTES.health.path, (c) => c.json({ ok: true, version: TRIMSWARM_VERSION, uptimeSeconds: uptimeSeconds() } satisfies HealthResponse))
  app.route('/', await createMetricsRoute({ metrics: parts.metrics, auth: parts.auth }, config.metrics))
  app.get(ROUTES.openapi.path, (c) => c.json(openapi ??= buildOpenApi()))
  app.get(ROUTES.key.path, (c) => c.json(keyBody))
  const windowMs = (config.loginRateLimit?.windowSeconds ?? DEFAULT_LOGIN_WINDOW_SECONDS) * 1000
  const perIp = createRateLimiter({ windowMs, max: config.loginRateLimit?.maxPerIp ?? DEFAULT_LOGIN_MAX_PER_IP })
  const perUser = createRateLimiter({ windowMs, max: config.loginRateLimit?.maxFailuresPerUser ?? DEFAULT_LOGIN_MAX_FAILURES_PER_USER })
  const { authenticator, sessions, auth, metrics } = parts
  app.route('/', createLoginRoutes({ authenticator, sessions, auth, perIp, perUser, metrics, logger, clientIp: (c) => c.get('clientIp') }))
}

/** The admin console (`/`, CONSOLE_PREFIX, its own cookie sessions), started. */
async function useConsole (app: Hono<CoordinatorEnv>, parts: AppParts, cleanups: Cleanups): Promise<AdminConsole> {
  const { config, logger } = parts.settings
  const { auth, sessions, events, images, policies, tokens, audit } = parts
  // the console's login form posts to POST /v1/auth/login through `api`, so rate limits, metrics and logs are the API's
  const ttl = config.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS
  const components = { auth, sessions, api: app, db: parts.dir.db, events, images, policies, tokens, logger, audit }
  const adminConsole = createConsole(components, { ...config.console, sessionTtlSeconds: ttl })
  await adminConsole.start()
  cleanups.add(async () => { await adminConsole.stop() })
  app.route('/', adminConsole.app)
  return adminConsole
}

/** The API behind the auth middleware. */
function useApiRoutes (app: Hono<CoordinatorEnv>, parts: AppParts): void {
  const { config, logger } = parts.settings
  const { tokens, policies, images, storageGc, audit, events, metrics, sites } = parts
  const clientAddress = (c: Context<CoordinatorEnv>): string => c.get('clientIp')
  app.use(API_PATTERN, parts.auth.middleware)
  app.route('/', createMeRoutes())
  app.route('/', createAdminRoutes({ tokens, policies, images, storageGc, audit }))
  app.route('/', createEventRoutes({ events, metrics, images, sites, clientAddress }, config.events))
  // one registry: a pace session's block batches, segments, chunks and delta packs share its rate
  const paces = createPaceRegistry()
  app.route('/', createImageRoutes(images, audit, paces)).route('/', createSegmentRoutes(parts.segments, paces))
  const swarm = { db: parts.dir.db, signer: parts.dir.signer, logger, sites, clientAddress, maxRegistrationsPerToken: config.swarm?.maxRegistrationsPerToken }
  app.route('/', createSwarmRoutes(swarm))
}

/** Listens; the URL it listens on. The close waits for requests in flight before the database closes. */
async function serve (app: Hono<CoordinatorEnv>, settings: Settings, inFlight: InFlight, cleanups: Cleanups, dataDir: string): Promise<string> {
  const { listen, tls, logger } = settings
  const server = await listenOn(app, listen, tls)
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  const url = `${tls != null ? 'https' : 'http'}://${host}:${addr.port}`
  cleanups.add(async () => {
    inFlight.stopping = true
    await closeServer(server)
    // a request whose socket was cut at the grace limit may still be running: let it finish before the database closes
    await inFlight.drained(SHUTDOWN_GRACE_MS)
  })
  logger.info('coordinator listening', { version: TRIMSWARM_VERSION, node: process.versions.node, url, dataDir, ldap: settings.ldap != null, tls: tls != null })
  return url
}

/**
 * Request order: log (request id, client IP) + metrics -> body budget lease
 * and body limits (they read no body, request-body.ts) -> routes outside /v1
 * auth (healthz, openapi, key, login; metrics with its own token check) ->
 * the admin console (`/`, `/console/...`, its own cookie sessions) -> auth
 * middleware (every other /v1 route has `c.get('principal')`) -> /v1 routes,
 * which check access before they read a body -> JSON 404.
 */
async function startCoordinator (init: CoordinatorInit): Promise<Started> {
  const startedAt = performance.now()
  const settings = await loadSettings(init)
  const { config, logger } = settings
  const dataDir = init.dataDir
  const dir = await openDataDir(dataDir, settings)
  const cleanups = createCleanups(logger)
  cleanups.add(async () => { await dir.db.close() })
  try {
    const stores = await startStores(settings, dir, cleanups)
    const authenticator = init.authenticator ?? (settings.ldap != null ? createLdapAuthenticator({ logger }, settings.ldap) : undefined)
    if (authenticator?.close != null) cleanups.add(async () => { await authenticator.close?.() })
    const imageParts = await startImages(settings, dir, stores, cleanups)
    const metrics = createMetrics({ imageStats: imageParts.images.stats }, { version: init.version ?? TRIMSWARM_VERSION })
    startEventSweep(stores.events, metrics, logger, config.eventRetentionDays ?? DEFAULT_EVENT_RETENTION_DAYS, cleanups)
    const inFlight = createInFlight()
    const parts: AppParts = { ...stores, ...imageParts, settings, dir, metrics, audit: createAudit(settings.auditLogger), authenticator, inFlight, startedAt }
    const app = new Hono<CoordinatorEnv>()
    useRequestMiddleware(app, parts)
    await useOpenRoutes(app, parts)
    const adminConsole = await useConsole(app, parts, cleanups)
    useApiRoutes(app, parts)
    const url = init.serve !== false ? await serve(app, settings, inFlight, cleanups, dataDir) : ''
    const { images, segments, events, policies } = parts
    const { token: adminToken, created: adminTokenCreated, file: adminTokenFile } = dir.admin
    const publicKey = dir.signer.publicKeyRaw
    const close = cleanups.run
    return { url, adminToken, adminTokenCreated, adminTokenFile, app, publicKey, images, segments, events, policies, console: adminConsole, close }
  } catch (err) {
    await cleanups.run()
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

