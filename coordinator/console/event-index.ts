/**
 * Indexes of stored events by image, site, type and each pair of them, so a
 * filtered events page (and the rollout page's recent failures) reads only
 * matching events, newest first, instead of the whole log.
 *
 * It follows the event store's `events` sublevel (coordinator/event-store.ts:
 * keys `<15-digit arrival ms>!<event id>`, newest last) from the last key it
 * indexed, kept in its own sublevel, so it needs no hook in the write path.
 * A pass takes only events that arrived more than EVENT_INDEX_SETTLE_MS ago:
 * a batch is stamped with its arrival time before it is committed, so a
 * younger key could still appear below one already read. Filtered views lag
 * by that much; the unfiltered events page reads the log itself. Events
 * deleted by retention leave index entries behind, which reads skip and drop.
 *
 * It also keeps which agents were seen on each site and with each image
 * (sublevel `console-agent-index`), for the agents page's filters.
 */
import type { StoredEvent } from '../../protocol/api-admin.ts'
import type { AbortOptions, Logger } from '../interface.ts'
import type { MetaDb } from '../meta-db.ts'
import { EVENT_INDEX_BATCH, EVENT_INDEX_SETTLE_MS, EVENT_INDEX_TAIL_MS, MAX_SCAN_PER_PAGE } from './constants.ts'

/** Filters of an indexed events query. */
export interface EventFilter {
  image?: string
  site?: string
  type?: string
}

/** One page of events, newest first; `next` is the cursor of the following page (an event key). */
export interface IndexedEventPage {
  events: StoredEvent[]
  next: string | null
  /** True when the page stopped at MAX_SCAN_PER_PAGE examined entries before filling up. */
  partial: boolean
}

/** Options of createEventIndex. */
export interface EventIndexInit {
  /** Events younger than this are left for the next pass (EVENT_INDEX_SETTLE_MS). */
  settleMs?: number
  now?: () => number
}

/** The event index (see the module comment). */
export interface EventIndex {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Indexes what arrived since the last pass (at most `maxEvents`); resolves to how many events were read. */
  refresh: (maxEvents?: number) => Promise<number>
  /** Events matching `filter`, newest first, below the cursor `before`. */
  query: (filter: EventFilter, page: { limit: number, before?: string }, options?: AbortOptions) => Promise<IndexedEventPage>
  /**
   * Names of agents seen on `site` (or with events of `image`), in name order after `after`, at most `limit`.
   * An agent that moved keeps its old site entry: callers check the agent's record.
   */
  agentsBy: (dim: { site: string } | { image: string }, page: { limit: number, after?: string }) => Promise<string[]>
  /** Key of the last event indexed ('' before the first pass). */
  watermark: () => string
}

const SEP = '\x00' // names cannot hold NUL (protocol/schema.ts), so dimension keys cannot collide
const HIGH = '\xff'
const WATERMARK = 'watermark'
const VERSION_KEY = 'version'
/** Bumped when what is indexed changes: a store indexed by an older version is indexed again from the start. */
const INDEX_VERSION = '3'

/** The dimension keys one event is indexed under. */
function dimsOf (ev: StoredEvent['event']): string[] {
  return [
    `i${SEP}${ev.image}`, `s${SEP}${ev.site}`, `t${SEP}${ev.type}`,
    `it${SEP}${ev.image}${SEP}${ev.type}`, `is${SEP}${ev.image}${SEP}${ev.site}`, `st${SEP}${ev.site}${SEP}${ev.type}`
  ]
}

/** The most selective index for a filter (a pair before a single dimension; site is usually the narrowest), or undefined without a filter. */
function dimFor (f: EventFilter): string | undefined {
  if (f.image != null && f.site != null) return `is${SEP}${f.image}${SEP}${f.site}`
  if (f.site != null && f.type != null) return `st${SEP}${f.site}${SEP}${f.type}`
  if (f.image != null && f.type != null) return `it${SEP}${f.image}${SEP}${f.type}`
  if (f.image != null) return `i${SEP}${f.image}`
  if (f.site != null) return `s${SEP}${f.site}`
  if (f.type != null) return `t${SEP}${f.type}`
  return undefined
}

function matches (ev: StoredEvent['event'], f: EventFilter): boolean {
  return (f.image == null || ev.image === f.image) && (f.site == null || ev.site === f.site) && (f.type == null || ev.type === f.type)
}

/** Creates the index over the coordinator's metadata database. */
export function createEventIndex (components: { db: MetaDb, logger?: Logger }, init: EventIndexInit = {}): EventIndex {
  const { db, logger } = components
  const events = db.sublevel<string, StoredEvent>('events', { valueEncoding: 'json' })
  const index = db.sublevel<string, string>('console-event-index', { valueEncoding: 'utf8' })
  const agentIndex = db.sublevel<string, string>('console-agent-index', { valueEncoding: 'utf8' })
  const meta = db.sublevel<string, string>('console-event-index-meta', { valueEncoding: 'utf8' })
  const now = init.now ?? Date.now
  const settleMs = init.settleMs ?? EVENT_INDEX_SETTLE_MS
  /** Key of the last event indexed ('' before the first). */
  let mark = ''
  let running: Promise<number> | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = true

  const pass = async (maxEvents: number): Promise<number> => {
    // only events that arrived more than settleMs ago: a batch stamped earlier can still be committing
    const settled = `${String(Math.max(0, now() - settleMs)).padStart(15, '0')}!`
    let read = 0
    let ops: any[] = []
    let last = mark
    const flush = async (): Promise<void> => {
      if (last === mark) return
      ops.push({ type: 'put', sublevel: meta, key: WATERMARK, value: last })
      await db.batch(ops)
      mark = last
      ops = []
    }
    const agentKeys = new Set<string>()
    for await (const [key, stored] of events.iterator({ gt: mark, lt: settled, limit: maxEvents })) {
      for (const d of dimsOf(stored.event)) ops.push({ type: 'put', sublevel: index, key: `${d}${SEP}${key}`, value: '' })
      const ev = stored.event
      for (const k of [`s${SEP}${ev.site}${SEP}${ev.agent}`, `i${SEP}${ev.image}${SEP}${ev.agent}`]) {
        if (agentKeys.has(k)) continue
        agentKeys.add(k)
        ops.push({ type: 'put', sublevel: agentIndex, key: k, value: '' })
      }
      last = key
      read++
      if (ops.length >= EVENT_INDEX_BATCH * 4) await flush()
    }
    await flush()
    return read
  }

  const refresh = async (maxEvents = EVENT_INDEX_BATCH): Promise<number> => {
    // one pass at a time; a caller arriving during a pass waits for it and runs its own
    while (running != null) await running.catch(() => {})
    running = pass(maxEvents)
    try { return await running } finally { running = undefined }
  }

  const loop = async (): Promise<void> => {
    timer = undefined
    if (stopped) return
    let read = 0
    try {
      read = await refresh()
    } catch (err) {
      logger?.error('console event index pass failed', { error: (err as Error).message })
    }
    // behind (first start on a big store): go on at once; else wait for new events
    if (!stopped) timer = setTimeout(() => { void loop() }, read >= EVENT_INDEX_BATCH ? 0 : EVENT_INDEX_TAIL_MS)
  }

  return {
    async start () {
      if ((await meta.get(VERSION_KEY)) !== INDEX_VERSION) {
        await index.clear()
        await agentIndex.clear()
        await meta.batch([{ type: 'put', key: VERSION_KEY, value: INDEX_VERSION }, { type: 'del', key: WATERMARK }])
      }
      mark = (await meta.get(WATERMARK)) ?? ''
      stopped = false
      void loop()
    },
    async stop () {
      stopped = true
      if (timer != null) clearTimeout(timer)
      timer = undefined
      await running?.catch(() => {})
    },
    refresh,
    watermark: () => mark,
    async agentsBy (dim, page) {
      const prefix = 'site' in dim ? `s${SEP}${dim.site}${SEP}` : `i${SEP}${dim.image}${SEP}`
      const out: string[] = []
      for await (const key of agentIndex.keys({ gt: prefix + (page.after ?? ''), lt: prefix + HIGH, limit: page.limit })) out.push(key.slice(prefix.length))
      return out
    },
    async query (filter, page, options = {}) {
      const dim = dimFor(filter)
      if (dim == null) {
        // no filter: the log itself is the index
        const out: StoredEvent[] = []
        let next: string | null = null
        for await (const [key, stored] of events.iterator({ ...(page.before != null ? { lt: page.before } : {}), reverse: true, limit: page.limit + 1 })) {
          if (out.length === page.limit) break
          out.push(stored)
          next = key
        }
        return { events: out, next: out.length === page.limit ? next : null, partial: false }
      }
      const prefix = `${dim}${SEP}`
      const out: StoredEvent[] = []
      const dangling: string[] = []
      let scanned = 0
      let lastKey: string | undefined
      let exhausted = true
      let keys: string[] = []
      const drain = async (): Promise<void> => {
        const values = await events.getMany(keys.map(k => k.slice(prefix.length)))
        for (const [i, stored] of values.entries()) {
          if (out.length === page.limit) return
          lastKey = keys[i].slice(prefix.length)
          if (stored == null) { dangling.push(keys[i]); continue }
          if (matches(stored.event, filter)) out.push(stored)
        }
        keys = []
      }
      const it = index.keys({ gt: prefix, lt: page.before != null ? prefix + page.before : prefix + HIGH, reverse: true })
      try {
        for await (const key of it) {
          options.signal?.throwIfAborted()
          keys.push(key)
          scanned++
          if (keys.length >= Math.min(page.limit * 2, 1000)) await drain()
          if (out.length === page.limit || scanned >= MAX_SCAN_PER_PAGE) { exhausted = false; break }
        }
        if (keys.length > 0) await drain()
      } finally {
        await it.close()
      }
      if (dangling.length > 0) await index.batch(dangling.map(key => ({ type: 'del' as const, key })))
      const full = out.length === page.limit
      return { events: out, next: !exhausted || (full && lastKey != null) ? lastKey ?? null : null, partial: !full && !exhausted }
    }
  }
}
