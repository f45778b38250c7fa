/** POST /v1/events (any principal), GET /v1/events, GET /v1/agents and GET /v1/reports (admin). */
import { Hono, type Context } from 'hono'
import { EVENT_TYPES, EventBatch, type AgentEvent, type ReportResponse, type VersionInfo } from '../protocol/api.ts'
import type { AgentList, EventPage } from '../protocol/api-admin.ts'
import { ForbiddenError, NotFoundError, ValidationError } from '../protocol/errors.ts'
import { assertAdmin, canAccessImage, principalKey } from './access.ts'
import { DEFAULT_EVENT_CLOCK_SKEW_SECONDS, DEFAULT_EVENTS_PAGE, DEFAULT_MAX_AGENTS_PER_TOKEN,
  DEFAULT_MAX_EVENTS_PER_MINUTE, EVENT_RATE_KEYS, MAX_EVENTS_PAGE } from './constants.ts'
import { admitEvent, logOnlyKind, type RejectReason } from './event-admission.ts'
import { EVENT_CURSOR_PATTERN, type EventStore } from './event-store.ts'
import { RetryAfterError } from './http-errors.ts'
import type { ImageService } from './image-service.ts'
import type { CoordinatorEnv, Principal } from './interface.ts'
import type { Metrics } from './metrics.ts'
import { createKeyedTokenBucket } from './rate-limiter.ts'
import { nameParam, readJson } from './request-body.ts'
import type { SiteAssigner } from './site-assignment.ts'

/** What the event routes use. */
export interface EventRoutesComponents {
  events: EventStore
  metrics: Metrics
  /** Version lookups, to take events only for versions that exist and bound their byte counts. */
  images: Pick<ImageService, 'getInfo'>
  sites: SiteAssigner
  /** The client's address (behind trusted proxies: the forwarded one), for the `sites` subnet map. */
  clientAddress: (c: Context<CoordinatorEnv>) => string
}

/** Options of createEventRoutes (config `events`; defaults in constants.ts). */
export interface EventRoutesInit {
  maxPerMinutePerToken?: number
  clockSkewSeconds?: number
  maxAgentsPerToken?: number
}

/** Looks up every version and site hint a batch names, once each, for admitEvent. */
async function lookups (batch: AgentEvent[], principal: Principal, address: string,
  c: Pick<EventRoutesComponents, 'images' | 'sites'>):
  Promise<{ infos: Map<string, VersionInfo | undefined>, sites: Map<string, string | undefined> }> {
  const infos = new Map<string, VersionInfo | undefined>()
  const sites = new Map<string, string | undefined>()
  for (const ev of batch) {
    const access = canAccessImage(principal, ev.image)
    const k = `${ev.image}@${ev.version}`
    if (access && !infos.has(k)) {
      infos.set(k, await c.images.getInfo(ev.image, ev.version).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined
        throw err
      }))
    }
    // only events that pass the other checks may spend one of the caller's site hints
    if ((infos.get(k) != null || logOnlyKind(ev)) && !sites.has(ev.site)) {
      sites.set(ev.site, (await c.sites.siteOf(principal, address, ev.site).catch((err: unknown) => {
        if (err instanceof ForbiddenError) return undefined // one site too many: that event is refused, the others go on
        throw err
      }))?.site)
    }
  }
  return { infos, sites }
}

/** Optional name filter from the query string. */
function nameQuery (value: string | undefined, what: string): string | undefined {
  return value == null || value === '' ? undefined : nameParam(value, what)
}

/** Routes of events and reports (behind the auth middleware). */
export function createEventRoutes (components: EventRoutesComponents, init: EventRoutesInit = {}): Hono<CoordinatorEnv> {
  const { events, metrics } = components
  const maxPerMinute = init.maxPerMinutePerToken ?? DEFAULT_MAX_EVENTS_PER_MINUTE
  const skewMs = (init.clockSkewSeconds ?? DEFAULT_EVENT_CLOCK_SKEW_SECONDS) * 1000
  const maxAgents = init.maxAgentsPerToken ?? DEFAULT_MAX_AGENTS_PER_TOKEN
  const rate = createKeyedTokenBucket({ perMinute: maxPerMinute, maxKeys: EVENT_RATE_KEYS })
  const app = new Hono<CoordinatorEnv>()
  app.post('/v1/events', async (c) => {
    const principal = c.get('principal')
    const owner = principal.kind === 'admin' ? undefined : principalKey(principal)
    const limit = (n: number): void => {
      const wait = owner == null ? 0 : rate.take(owner, n)
      if (wait > 0) throw new RetryAfterError(`too many events from ${principal.user}: at most ${maxPerMinute} a minute; try again in ${wait} s`, wait)
    }
    // a caller over its limit is refused before its body is read (one event's worth now, the rest once counted)
    limit(1)
    const batch = await readJson(c, EventBatch)
    limit(batch.events.length - 1)
    const receivedMs = Date.now()
    const { infos, sites } = owner == null ? { infos: new Map(), sites: new Map() }
        : await lookups(batch.events, principal, components.clientAddress(c), components)
    const ctx = { owner, receivedMs, skewMs, canAccess: (image: string) => canAccessImage(principal, image),
      infoOf: (image: string, version: string) => infos.get(`${image}@${version}`),
      siteOf: (hint: string) => sites.get(hint) }
    const admitted: AgentEvent[] = []
    const logOnly: AgentEvent[] = []
    const refused: Partial<Record<RejectReason | 'agents', number>> = {}
    for (const ev of batch.events) {
      const verdict = admitEvent(ev, ctx)
      if ('rejected' in verdict) refused[verdict.rejected] = (refused[verdict.rejected] ?? 0) + 1
      else (verdict.logOnly ? logOnly : admitted).push(verdict.event)
    }
    const none = { accepted: 0, duplicates: 0, rejected: 0, byType: {}, finished: [] }
    const stored = admitted.length === 0 ? none : await events.add(admitted, principal.user, { owner, maxAgents })
    const logged = logOnly.length === 0 ? none : await events.add(logOnly, principal.user, { owner, logOnly: true })
    const accepted = stored.accepted + logged.accepted
    const duplicates = stored.duplicates + logged.duplicates
    const { finished } = stored
    const byType = { ...stored.byType }
    for (const [type, n] of Object.entries(logged.byType)) byType[type] = (byType[type] ?? 0) + n
    if (stored.rejected > 0) refused.agents = stored.rejected
    metrics.events(byType, duplicates)
    for (const ev of finished) metrics.syncBytes(ev.site, ev.image, ev.bytes)
    for (const [reason, n] of Object.entries(refused)) metrics.eventsRejected(reason, n)
    const rejected = Object.values(refused).reduce((a, b) => a + b, 0)
    return c.json({ accepted, duplicates, ...(rejected > 0 ? { rejected, rejectedBy: refused } : {}) })
  })
  app.get('/v1/events', async (c) => {
    assertAdmin(c.get('principal'))
    const q = c.req.query()
    for (const k of Object.keys(q)) if (!['image', 'site', 'type', 'limit', 'before'].includes(k)) throw new ValidationError(`${k}: unknown query parameter`)
    const type = q.type === '' ? undefined : q.type
    if (type != null && !(EVENT_TYPES as readonly string[]).includes(type)) throw new ValidationError(`type: must be one of ${EVENT_TYPES.join(', ')}`)
    const limit = q.limit == null ? DEFAULT_EVENTS_PAGE : Number(q.limit)
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_EVENTS_PAGE) {
      throw new ValidationError(`limit: must be an integer between 1 and ${MAX_EVENTS_PAGE}`)
    }
    if (q.before != null && !EVENT_CURSOR_PATTERN.test(q.before)) throw new ValidationError('before: not a cursor from a previous page')
    const page: EventPage = await events.query({ image: nameQuery(q.image, 'image'), site: nameQuery(q.site, 'site'), type, limit, before: q.before })
    return c.json(page)
  })
  app.get('/v1/agents', async (c) => {
    assertAdmin(c.get('principal'))
    const q = c.req.query()
    for (const k of Object.keys(q)) if (k !== 'site') throw new ValidationError(`${k}: unknown query parameter`)
    const site = nameQuery(q.site, 'site')
    const body: AgentList = { agents: [] }
    for await (const a of events.agents({ signal: c.req.raw.signal })) if (site == null || a.site === site) body.agents.push(a)
    return c.json(body)
  })
  app.get('/v1/reports', (c) => {
    assertAdmin(c.get('principal'))
    const q = c.req.query()
    for (const k of Object.keys(q)) if (!['image', 'version', 'site'].includes(k)) throw new ValidationError(`${k}: unknown query parameter`)
    const body: ReportResponse = { rows: events.report({ image: nameQuery(q.image, 'image'),
      version: nameQuery(q.version, 'version'), site: nameQuery(q.site, 'site') }) }
    return c.json(body)
  })
  return app
}
