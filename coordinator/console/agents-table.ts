/**
 * The console's agents table: one row per agent record, paged by agent name;
 * filtered by site or image through the console's event index.
 */
import type { AgentRecord } from '../event-store.ts'
import type { MetaDb } from '../meta-db.ts'
import { MAX_SCAN_PER_PAGE } from './constants.ts'
import type { EventIndex } from './event-index.ts'
import { formatBytes, formatTime } from './format.ts'
import type { TableDef, TableResult } from './report-queries.ts'
import { AGENT_CURSOR, cursorParam, limitParam, opt } from './table-params.ts'

/** An agent flattened for the agents table. */
export interface AgentRow {
  agent: string
  site: string
  lastSeen: string
  peerId: string | null
  /** Chunk bytes the agent's swarm node served to LAN peers, as last reported (null: never reported). */
  servedBytes: number | null
  /** image@version of each completed image. */
  holds: string
  /** The latest sync of the filtered image (or of any image): "status image@version". */
  current: string
  error: string | null
}

/** An agent's record as a table row; with `image`, only that image's state. */
export function agentRow (rec: AgentRecord, image: string | undefined): AgentRow {
  const states = Object.entries(rec.images).filter(([img]) => image == null || img === image)
  const holds = states.filter(([, s]) => s.completed != null).map(([img, s]) => `${img}@${s.completed?.version ?? ''}`).join(' ')
  const cur = states.map(([img, s]) => ({ img, s: s.current })).filter(x => x.s != null).sort((a, b) => (b.s?.time ?? '').localeCompare(a.s?.time ?? ''))[0]
  return {
    agent: rec.agent,
    site: rec.site,
    lastSeen: rec.lastSeen,
    peerId: rec.peerId ?? null,
    servedBytes: rec.servedBytes ?? null,
    holds,
    current: cur?.s == null ? '' : `${cur.s.status} ${cur.img}@${cur.s.version}`,
    error: cur?.s?.status === 'failed' ? cur.s.error ?? null : null
  }
}

/** One page's query. */
interface AgentQuery {
  site?: string
  image?: string
  limit: number
  after?: string
}

type AgentStore = ReturnType<typeof agentRecords>

function agentRecords (db: MetaDb) {
  return db.sublevel<string, AgentRecord>('agents', { valueEncoding: 'json' })
}

/** Unfiltered: records are keyed by agent name, so a page is a range read from the cursor. */
async function pageByName (agents: AgentStore, q: AgentQuery): Promise<TableResult<AgentRow>> {
  const rows: AgentRow[] = []
  let last: string | undefined
  let more = false
  for await (const [name, rec] of agents.iterator({ ...(q.after != null ? { gt: q.after } : {}), limit: q.limit + 1 })) {
    if (rows.length === q.limit) { more = true; break }
    last = name
    rows.push(agentRow(rec, undefined))
  }
  return { rows, next: more && last != null ? last : null, partial: more && rows.length < q.limit }
}

/** Filtered: the agent index names the candidates (a site filter is the narrower one); at most MAX_SCAN_PER_PAGE read per page. */
async function pageByIndex (agents: AgentStore, index: EventIndex, q: AgentQuery): Promise<TableResult<AgentRow>> {
  const { site, image, limit } = q
  await index.refresh()
  const dim = site != null ? { site } : { image: image as string }
  const rows: AgentRow[] = []
  let scanned = 0
  let last: string | undefined
  let more = false
  let cursor = q.after
  while (rows.length < limit && scanned < MAX_SCAN_PER_PAGE && !more) {
    const names = await index.agentsBy(dim, { limit: Math.min(1000, limit + 1), after: cursor })
    if (names.length === 0) break
    for (const [i, rec] of (await agents.getMany(names)).entries()) {
      if (rows.length === limit) { more = true; break }
      scanned++
      last = names[i]
      if (rec != null && (site == null || rec.site === site) && (image == null || rec.images[image] != null)) rows.push(agentRow(rec, image))
    }
    cursor = names[names.length - 1]
  }
  if (!more && rows.length === limit) more = (await index.agentsBy(dim, { limit: 1, after: last })).length > 0
  if (scanned >= MAX_SCAN_PER_PAGE && rows.length < limit) more = true
  return { rows, next: more && last != null ? last : null, partial: more && rows.length < limit }
}

/** The agents table. */
export function agentsTable (c: { db: MetaDb, index: EventIndex }): TableDef<AgentRow> {
  const agents = agentRecords(c.db)
  return {
    id: 'agents',
    title: 'Agents',
    params: ['site', 'image', 'limit', 'after'],
    cursor: 'after',
    columns: [
      { label: 'agent', value: r => r.agent, wrap: true },
      { label: 'site', value: r => r.site },
      { label: 'last seen', value: r => r.lastSeen, text: r => formatTime(r.lastSeen) },
      { label: 'version held', value: r => r.holds },
      { label: 'latest sync', value: r => r.current },
      { label: 'error', value: r => r.error, wrap: true },
      { label: 'served to peers', value: r => r.servedBytes, text: r => r.servedBytes == null ? '' : formatBytes(r.servedBytes), numeric: true },
      { label: 'peer id', value: r => r.peerId, wrap: true }
    ],
    async load (q) {
      const query: AgentQuery = {
        site: opt(q, 'site', 'site'), image: opt(q, 'image', 'image'), limit: limitParam(q), after: cursorParam(q, 'after', AGENT_CURSOR)
      }
      return query.site == null && query.image == null ? await pageByName(agents, query) : await pageByIndex(agents, c.index, query)
    }
  }
}
