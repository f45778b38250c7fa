/**
 * Agent events and the reports built from them. Events are kept (for the
 * retention period) under `events` keyed by arrival time, so retention is a
 * range delete and paging is a range read. Reports are never computed by
 * scanning events: every write updates the agent's latest state per image
 * (`agents`) and per (image, version, site) aggregates (`reports`), which are
 * also held in memory, so GET /v1/reports costs a map walk.
 *
 * What it is given has been admitted by the events route (event-admission.ts:
 * images the caller may get, versions that exist, known sites, bound agent
 * names, clamped times and byte counts). It bounds what is left: at most
 * `maxAgents` agent records per owner (token or user), and retention (sweep)
 * also drops agent records not seen since the cutoff and aggregates that
 * count no agent and were last changed before it, so memory follows the
 * live fleet, not everything ever sent.
 *
 * Several coordinators on one shared store (PostgreSQL): writes run under the
 * store's `events` lock, and an aggregate is re-read from the store before a
 * write changes it, so counts from every coordinator add up; the in-memory
 * aggregates GET /v1/reports reads are reloaded every SHARED_REFRESH_MS
 * (`refresh`). The per-owner cap on agent records is counted per coordinator
 * (an owner may reach it on each).
 */
import type { AgentEvent, ReportRow } from '../protocol/api.ts'

/** An event's bytes by source (local, peers, origin). */
type BytesBySource = NonNullable<AgentEvent['bytes']>
import type { AgentImageState, AgentRecord, StoredEvent } from '../protocol/api-admin.ts'

export type { AgentImageState, AgentRecord }
import type { AbortOptions } from './interface.ts'
import type { MetaDb } from './meta-db.ts'

/** Filters of GET /v1/events. */
export interface EventQuery {
  image?: string
  site?: string
  type?: string
  limit: number
  /** Opaque cursor from a previous page's `next`. */
  before?: string
}

/** Stores events and answers reports. */
export interface EventStore {
  start: () => Promise<void>
  /** Reloads the report aggregates from the store (what other coordinators wrote). */
  refresh: () => Promise<void>
  stop: () => Promise<void>
  /**
   * With `owner`, a new agent record is refused (counted in `rejected`) once the owner has `maxAgents`.
   * `finished`: the new (not duplicate) sync.completed / sync.failed events with bytes, counted into the reports.
   */
  add: (events: AgentEvent[], postedBy: string, options?: AbortOptions & AddOptions) => Promise<AddResult>
  query: (q: EventQuery, options?: AbortOptions) => Promise<{ events: StoredEvent[], next: string | null }>
  report: (filter: ReportFilter) => ReportRow[]
  agents: (options?: AbortOptions) => AsyncIterable<AgentRecord>
  /** Deletes events that arrived before `cutoff`, agents last seen before it and aggregates idle since then that count no agent; returns how many events. */
  sweep: (cutoff: Date, options?: AbortOptions) => Promise<number>
}

/** What `add` did with a batch. */
export interface AddResult {
  accepted: number
  duplicates: number
  rejected: number
  byType: Record<string, number>
  finished: Array<AgentEvent & { bytes: BytesBySource }>
}

/** Which report rows to return; an absent field matches every value. */
export interface ReportFilter {
  image?: string
  version?: string
  site?: string
}

/** Who posts a batch, for the per-owner cap on agent records. */
export interface AddOptions {
  /** The principal key (access.ts principalKey) the batch's agents belong to; absent for the admin. */
  owner?: string
  /** Agent records one owner may have (DEFAULT_MAX_AGENTS_PER_TOKEN). */
  maxAgents?: number
  /** Store the events in the log only: they change no agent record and no report (event-admission.ts `logOnly`). */
  logOnly?: boolean
}

interface Aggregate {
  clients: number
  inProgress: number
  failed: number
  bytes: { local: number, peers: number, origin: number }
  /** Last change (ms since the epoch); absent in stores written before retention covered aggregates. */
  updated?: number
}

const SEP = '\x00' // not allowed in names (protocol/schema.ts rejects NUL), so keys cannot collide

function timeKey (ms: number, id: string): string {
  return `${String(ms).padStart(15, '0')}!${id}`
}

/** A `before` cursor: an event key (arrival ms, then a 4-digit base-36 place within that ms and the event id). */
export const EVENT_CURSOR_PATTERN = /^\d{15}![A-Za-z0-9-]{0,72}$/

function aggKey (image: string, version: string, site: string): string {
  return `${image}${SEP}${version}${SEP}${site}`
}

/** Which aggregate counters an agent's state for one image adds 1 to. */
function matchesFilter (filter: ReportFilter, image: string, version: string, site: string): boolean {
  return (filter.image == null || image === filter.image) &&
    (filter.version == null || version === filter.version) &&
    (filter.site == null || site === filter.site)
}

function contributions (image: string, s: AgentImageState | undefined): Array<[string, 'clients' | 'inProgress' | 'failed']> {
  const out: Array<[string, 'clients' | 'inProgress' | 'failed']> = []
  if (s?.completed != null) out.push([aggKey(image, s.completed.version, s.completed.site), 'clients'])
  if (s?.current?.status === 'in-progress') out.push([aggKey(image, s.current.version, s.current.site), 'inProgress'])
  if (s?.current?.status === 'failed') out.push([aggKey(image, s.current.version, s.current.site), 'failed'])
  return out
}

function statusOf (type: AgentEvent['type']): 'in-progress' | 'completed' | 'failed' | undefined {
  switch (type) {
    case 'sync.started': case 'sync.progress': return 'in-progress'
    case 'sync.completed': return 'completed'
    case 'sync.failed': return 'failed'
    default: return undefined
  }
}

/** An EventStore in the metadata database. */
export function createEventStore (components: { db: MetaDb }, init: { now?: () => number } = {}): EventStore {
  const now = init.now ?? Date.now
  const events = components.db.sublevel<string, StoredEvent>('events', { valueEncoding: 'json' })
  const ids = components.db.sublevel<string, string>('event-ids', { valueEncoding: 'utf8' })
  const agents = components.db.sublevel<string, AgentRecord>('agents', { valueEncoding: 'json' })
  const reports = components.db.sublevel<string, Aggregate>('reports', { valueEncoding: 'json' })
  let aggregates = new Map<string, Aggregate>()
  /** With a shared store: aggregates re-read from it in the current locked write (others may have changed them). */
  const fresh = new Set<string>()
  /** Agent records per owner, for the cap. */
  const owned = new Map<string, number>()
  // Events are keyed by arrival time, then by their place among the events that arrived in that
  // millisecond: a batch (an agent's queue flushed at once) shares one time and listed in id order, not newest first.
  let lastMs = 0
  let placeInMs = 0
  // one writer at a time (in every coordinator sharing the store): aggregates are read-modify-write
  let queue: Promise<unknown> = Promise.resolve()
  const serial = async <T>(fn: () => Promise<T>): Promise<T> => {
    const run = components.db.lock('events', async () => {
      fresh.clear()
      return await fn()
    })
    queue = run.catch(() => {})
    return await run
  }

  const agg = (key: string): Aggregate => {
    let a = aggregates.get(key)
    if (a == null) {
      a = { clients: 0, inProgress: 0, failed: 0, bytes: { local: 0, peers: 0, origin: 0 } }
      aggregates.set(key, a)
    }
    return a
  }

  /** agg, after re-reading the aggregate from a shared store once per locked write. */
  const aggOf = async (key: string): Promise<Aggregate> => {
    if (components.db.shared && !fresh.has(key)) {
      fresh.add(key)
      const stored = await reports.get(key)
      if (stored != null) aggregates.set(key, stored)
      else aggregates.delete(key)
    }
    return agg(key)
  }

  /** Drops agents not seen since `cutoff` (their counts leave the aggregates), then idle empty aggregates. */
  const sweepAgents = async (cutoff: Date): Promise<void> => {
    const iso = cutoff.toISOString()
    const touched = new Set<string>()
    let ops: any[] = []
    const flush = async (): Promise<void> => {
      for (const k of touched) ops.push({ type: 'put', sublevel: reports, key: k, value: aggregates.get(k) })
      touched.clear()
      if (ops.length > 0) await components.db.batch(ops)
      ops = []
    }
    for await (const [key, rec] of agents.iterator()) {
      if (Date.parse(rec.lastSeen) >= Date.parse(iso)) continue
      for (const [image, state] of Object.entries(rec.images)) {
        for (const [k, f] of contributions(image, state)) { (await aggOf(k))[f]--; touched.add(k) }
      }
      if (rec.owner != null) owned.set(rec.owner, Math.max(0, (owned.get(rec.owner) ?? 1) - 1))
      ops.push({ type: 'del', sublevel: agents, key })
      if (ops.length >= 1000) await flush()
    }
    await flush()
    if (components.db.shared) await load()
    for (const [k, a] of aggregates) {
      if (a.clients > 0 || a.inProgress > 0 || a.failed > 0 || (a.updated ?? 0) >= cutoff.getTime()) continue
      aggregates.delete(k)
      ops.push({ type: 'del', sublevel: reports, key: k })
      if (ops.length >= 1000) await flush()
    }
    await flush()
  }

  /** Reads every aggregate from the store. */
  const load = async (): Promise<void> => {
    const t = now()
    const next = new Map<string, Aggregate>()
    for await (const [k, a] of reports.iterator()) next.set(k, { ...a, updated: a.updated ?? t })
    aggregates = next
  }

  return {
    async start () {
      owned.clear()
      await load()
      for await (const rec of agents.values()) if (rec.owner != null) owned.set(rec.owner, (owned.get(rec.owner) ?? 0) + 1)
    },
    async refresh () {
      await serial(load)
    },
    async stop () {
      await queue
    },
    async add (batch, postedBy, options = {}) {
      return await serial(async () => {
        const receivedMs = now()
        const receivedAt = new Date(receivedMs).toISOString()
        const known = await ids.getMany(batch.map(e => e.id))
        const seen = new Set<string>()
        const agentCache = new Map<string, AgentRecord>()
        const touched = new Set<string>()
        const ops: any[] = []
        let accepted = 0
        let duplicates = 0
        let rejected = 0
        const byType: Record<string, number> = {}
        const finished: Array<AgentEvent & { bytes: BytesBySource }> = []
        // oldest first within the batch, so the newest event gets the last key
        const order = batch.map((ev, i) => ({ ev, i })).sort((a, b) => (Date.parse(a.ev.time) || 0) - (Date.parse(b.ev.time) || 0))
        for (const { ev, i } of order) {
          if (known[i] != null || seen.has(ev.id)) { duplicates++; continue }
          let rec: AgentRecord | undefined
          if (options.logOnly !== true) {
            rec = agentCache.get(ev.agent) ?? await agents.get(ev.agent)
            if (rec == null) {
              const { owner, maxAgents } = options
              if (owner != null && maxAgents != null && (owned.get(owner) ?? 0) >= maxAgents) { rejected++; continue }
              rec = { agent: ev.agent, site: ev.site, lastSeen: receivedAt, images: {}, ...(owner != null ? { owner } : {}) }
              if (owner != null) owned.set(owner, (owned.get(owner) ?? 0) + 1)
            }
          }
          seen.add(ev.id)
          accepted++
          byType[ev.type] = (byType[ev.type] ?? 0) + 1
          if (receivedMs === lastMs) placeInMs++
          else { lastMs = receivedMs; placeInMs = 0 }
          const key = timeKey(receivedMs, `${placeInMs.toString(36).padStart(4, '0')}-${ev.id}`)
          ops.push({ type: 'put', sublevel: events, key, value: { event: ev, receivedAt, postedBy } })
          ops.push({ type: 'put', sublevel: ids, key: ev.id, value: key })
          if (rec == null) continue // log only: no agent state, no report

          agentCache.set(ev.agent, rec)
          rec.site = ev.site
          rec.lastSeen = receivedAt
          // a peer.banned event names the banned peer, not the agent
          if (ev.peerId != null && ev.type !== 'peer.banned') rec.peerId = ev.peerId
          if (ev.servedBytes != null && (rec.servedAt == null || Date.parse(ev.time) >= Date.parse(rec.servedAt))) {
            rec.servedBytes = ev.servedBytes
            rec.servedAt = ev.time
          }

          const status = statusOf(ev.type)
          if (status != null) {
            const before = contributions(ev.image, rec.images[ev.image])
            const state: AgentImageState = { ...rec.images[ev.image] }
            // agents may re-send old events (queued while offline): only a newer event moves the state
            const t = Date.parse(ev.time) // compare as times: ISO strings with and without fractions do not sort as text
            if (state.current == null || t >= Date.parse(state.current.time)) {
              state.current = { version: ev.version, site: ev.site, status, time: ev.time, ...(ev.error != null ? { error: ev.error } : {}) }
            }
            if (status === 'completed' && (state.completed == null || t >= Date.parse(state.completed.time))) {
              state.completed = { version: ev.version, site: ev.site, time: ev.time }
            }
            rec.images[ev.image] = state
            for (const [k, f] of before) { (await aggOf(k))[f]--; touched.add(k) }
            for (const [k, f] of contributions(ev.image, state)) { (await aggOf(k))[f]++; touched.add(k) }
          }
          // progress events carry running totals; only a finished sync's totals are added
          if ((ev.type === 'sync.completed' || ev.type === 'sync.failed') && ev.bytes != null) {
            const k = aggKey(ev.image, ev.version, ev.site)
            const a = await aggOf(k)
            a.bytes.local += ev.bytes.local
            a.bytes.peers += ev.bytes.peers
            a.bytes.origin += ev.bytes.origin
            touched.add(k)
            finished.push({ ...ev, bytes: ev.bytes })
          }
        }
        for (const rec of agentCache.values()) ops.push({ type: 'put', sublevel: agents, key: rec.agent, value: rec })
        for (const k of touched) {
          const a = agg(k)
          a.updated = receivedMs
          ops.push({ type: 'put', sublevel: reports, key: k, value: a })
        }
        if (ops.length > 0) await components.db.batch(ops)
        return { accepted, duplicates, rejected, byType, finished }
      })
    },
    async query (q) {
      const out: StoredEvent[] = []
      let lastKey: string | undefined
      let more = false
      const range = q.before != null ? { lt: q.before, reverse: true } : { reverse: true }
      for await (const [key, stored] of events.iterator(range)) {
        const ev = stored.event
        if ((q.image != null && ev.image !== q.image) || (q.site != null && ev.site !== q.site) || (q.type != null && ev.type !== q.type)) continue
        if (out.length === q.limit) { more = true; break }
        out.push(stored)
        lastKey = key
      }
      // the next page reads below the last key returned
      return { events: out, next: more && lastKey != null ? lastKey : null }
    },
    report (filter) {
      const rows: ReportRow[] = []
      for (const [k, a] of aggregates) {
        const [image, version, site] = k.split(SEP)
        if (!matchesFilter(filter, image, version, site)) continue
        const total = a.bytes.local + a.bytes.peers + a.bytes.origin
        if (a.clients === 0 && a.inProgress === 0 && a.failed === 0 && total === 0) continue
        const saved = total === 0 ? 0 : Math.round((a.bytes.local + a.bytes.peers) * 1000 / total) / 10
        rows.push({ image, version, site, clients: a.clients, inProgress: a.inProgress, failed: a.failed, bytes: { ...a.bytes }, wanSavedPercent: saved })
      }
      return rows.sort((x, y) => x.image.localeCompare(y.image) || x.version.localeCompare(y.version) || x.site.localeCompare(y.site))
    },
    async * agents () {
      for await (const [, rec] of agents.iterator()) yield rec
    },
    async sweep (cutoff) {
      return await serial(async () => {
        let deleted = 0
        const lt = timeKey(cutoff.getTime(), '')
        for (;;) {
          const ops: any[] = []
          for await (const [key, stored] of events.iterator({ lt, limit: 1000 })) {
            ops.push({ type: 'del', sublevel: events, key }, { type: 'del', sublevel: ids, key: stored.event.id })
          }
          if (ops.length === 0) break
          await components.db.batch(ops)
          deleted += ops.length / 2
        }
        await sweepAgents(cutoff)
        return deleted
      })
    }
  }
}
