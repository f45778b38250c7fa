/** POST /v1/events (any principal), GET /v1/events, GET /v1/agents and GET /v1/reports (admin). */
import { Hono } from 'hono'
import { EVENT_TYPES, EventBatch, type ReportResponse } from '../protocol/api.ts'
import type { AgentList, EventPage } from '../protocol/api-admin.ts'
import { ValidationError } from '../protocol/errors.ts'
import { assertAdmin } from './access.ts'
import { DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE } from './constants.ts'
import { EVENT_CURSOR_PATTERN, type EventStore } from './event-store.ts'
import type { CoordinatorEnv } from './interface.ts'
import type { Metrics } from './metrics.ts'
import { nameParam, readJson } from './request-body.ts'

/** Optional name filter from the query string. */
function nameQuery (value: string | undefined, what: string): string | undefined {
  return value == null || value === '' ? undefined : nameParam(value, what)
}

/** Routes of events and reports (behind the auth middleware). */
export function createEventRoutes (components: { events: EventStore, metrics: Metrics }): Hono<CoordinatorEnv> {
  const { events, metrics } = components
  const app = new Hono<CoordinatorEnv>()
  app.post('/v1/events', async (c) => {
    const batch = await readJson(c, EventBatch)
    const { accepted, duplicates, byType, finished } = await events.add(batch.events, c.get('principal').user)
    metrics.events(byType, duplicates)
    for (const ev of finished) metrics.syncBytes(ev.site, ev.image, ev.bytes)
    return c.json({ accepted, duplicates })
  })
  app.get('/v1/events', async (c) => {
    assertAdmin(c.get('principal'))
    const q = c.req.query()
    for (const k of Object.keys(q)) if (!['image', 'site', 'type', 'limit', 'before'].includes(k)) throw new ValidationError(`${k}: unknown query parameter`)
    const type = q.type === '' ? undefined : q.type
    if (type != null && !(EVENT_TYPES as readonly string[]).includes(type)) throw new ValidationError(`type: must be one of ${EVENT_TYPES.join(', ')}`)
    const limit = q.limit == null ? DEFAULT_EVENTS_PAGE : Number(q.limit)
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_EVENTS_PAGE) throw new ValidationError(`limit: must be an integer between 1 and ${MAX_EVENTS_PAGE}`)
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
    const body: ReportResponse = { rows: events.report({ image: nameQuery(q.image, 'image'), version: nameQuery(q.version, 'version'), site: nameQuery(q.site, 'site') }) }
    return c.json(body)
  })
  return app
}
