/**
 * The console's tables: for each, its columns and how its rows are read from
 * the coordinator's stores (image service, event store and its report, policy
 * store, the console's event index). One definition serves the HTML page, the
 * live refresh, the JSON API and the CSV export, so they always agree.
 */
import type { Policy, ReportRow, TokenInfo, VersionInfo } from '../../protocol/api.ts'
import type { StoredEvent } from '../../protocol/api-admin.ts'
import { NotFoundError, ValidationError } from '../../protocol/errors.ts'
import { formatRate } from '../../protocol/rate.ts'
import type { EventStore, ReportFilter } from '../event-store.ts'
import type { ImageService } from '../image-service.ts'
import type { MetaDb } from '../meta-db.ts'
import type { PolicyStore } from '../policy-store.ts'
import type { TokenStore } from '../token-store.ts'
import { agentsTable } from './agents-table.ts'
import { ROLLOUT_FAILURES_ROWS } from './constants.ts'
import type { EventIndex } from './event-index.ts'
import { formatBytes, formatPercent, formatTime, savedPercent } from './format.ts'
import { cursorParam, EVENT_CURSOR, limitParam, opt, typeParam } from './table-params.ts'

/** One column: its raw value (JSON, CSV), how it reads on the page, and an optional link. */
export interface Column<R> {
  label: string
  value: (r: R) => string | number | boolean | null
  text?: (r: R) => string
  href?: (r: R) => string | undefined
  numeric?: boolean
  /** Long text (errors): wraps instead of being cut. */
  wrap?: boolean
}

/** Rows of one table page; `next` is the cursor of the following page. */
export interface TableResult<R> {
  rows: R[]
  next: string | null
  /** The page stopped early (MAX_SCAN_PER_PAGE) while filtering: `next` goes on. */
  partial?: boolean
}

/** A table of the console. */
export interface TableDef<R = any> {
  id: string
  title: string
  /** Query parameters it takes (anything else is a 400). */
  params: readonly string[]
  /** Name of the cursor parameter when the table is paged. */
  cursor?: string
  columns: Array<Column<R>>
  load: (q: Record<string, string>) => Promise<TableResult<R>>
  /** The JSON form of a row (default: the row itself). */
  json?: (r: R) => unknown
}

/** What the tables read. */
export interface QueryComponents {
  db: MetaDb
  events: EventStore
  images: ImageService
  policies: PolicyStore
  tokens: TokenStore
  index: EventIndex
}

/** Report rows of the event store, filtered. */
export type ReportSource = (filter: ReportFilter) => Promise<ReportRow[]>

/**
 * The event store's report without rows for versions the coordinator never
 * published: an agent asked for an image that does not exist ("nosuch@latest")
 * or a version it does not have ("9"). Such syncs stay visible as events and
 * on the agents page, but they are no rollout or bandwidth of any image.
 */
export function publishedReport (events: Pick<EventStore, 'report'>, images: Pick<ImageService, 'adminImages'>): ReportSource {
  return async (filter) => {
    const known = new Set<string>()
    for (const img of (await images.adminImages()).images) for (const v of img.versions) known.add(`${img.name}\x00${v.version}`)
    return events.report(filter).filter(r => known.has(`${r.image}\x00${r.version}`))
  }
}

/** A version row of the images table. */
export type VersionRow = VersionInfo & { latest: boolean }

/** Bytes and sync counts summed over some report rows. */
export interface TotalsRow {
  key: string
  clients: number
  inProgress: number
  failed: number
  bytes: { local: number, peers: number, origin: number }
  wanSavedPercent: number
}

/** A group's policy for the policy table. */
export type PolicyRow = Policy & { group: string }


/** Sums report rows by a key. */
export function totalsBy (rows: ReportRow[], keyOf: (r: ReportRow) => string): TotalsRow[] {
  const m = new Map<string, TotalsRow>()
  for (const r of rows) {
    const k = keyOf(r)
    let t = m.get(k)
    if (t == null) m.set(k, t = { key: k, clients: 0, inProgress: 0, failed: 0, bytes: { local: 0, peers: 0, origin: 0 }, wanSavedPercent: 0 })
    t.clients += r.clients; t.inProgress += r.inProgress; t.failed += r.failed
    t.bytes.local += r.bytes.local; t.bytes.peers += r.bytes.peers; t.bytes.origin += r.bytes.origin
  }
  const out = [...m.values()].sort((a, b) => a.key.localeCompare(b.key))
  for (const t of out) t.wanSavedPercent = savedPercent(t.bytes)
  return out
}

const bytesColumns = <R extends { bytes: { local: number, peers: number, origin: number }, wanSavedPercent: number }>(): Array<Column<R>> => [
  { label: 'local bytes', value: r => r.bytes.local, text: r => formatBytes(r.bytes.local), numeric: true },
  { label: 'LAN peer bytes', value: r => r.bytes.peers, text: r => formatBytes(r.bytes.peers), numeric: true },
  { label: 'WAN origin bytes', value: r => r.bytes.origin, text: r => formatBytes(r.bytes.origin), numeric: true },
  { label: 'WAN saved %', value: r => r.wanSavedPercent, text: r => formatPercent(r.wanSavedPercent), numeric: true }
]

const countColumns = <R extends { clients: number, inProgress: number, failed: number }>(): Array<Column<R>> => [
  { label: 'clients', value: r => r.clients, numeric: true },
  { label: 'in progress', value: r => r.inProgress, numeric: true },
  { label: 'failed', value: r => r.failed, numeric: true }
]

const rolloutHref = (image: string): string => `/console/rollout?image=${encodeURIComponent(image)}`
/** The page of one version (details and the retire action). */
export const versionHref = (image: string, version: string): string => `/console/images/${encodeURIComponent(image)}/${encodeURIComponent(version)}`
// Events list newest first by arrival at the coordinator (its clock; agents' clocks may be off and
// their queues send late), so that time comes first; the agent's own time of the event follows.
/** A column of the bytes one event reports from one source. */
function eventBytesColumn (label: string, source: 'peers' | 'origin'): Column<StoredEvent> {
  return { label, value: r => r.event.bytes?.[source] ?? null, text: r => r.event.bytes == null ? '' : formatBytes(r.event.bytes[source]), numeric: true }
}

/** A policy's update window as "start-end"; undefined for any time. */
const windowText = (p: Policy): string | undefined => p.updateWindow == null ? undefined : `${p.updateWindow.start}-${p.updateWindow.end}`

const eventColumns: Array<Column<StoredEvent>> = [
  { label: 'received', value: r => r.receivedAt, text: r => formatTime(r.receivedAt) },
  { label: 'type', value: r => r.event.type },
  // agents are named `t:<token id>/<name>` (bound to their token): long, so they wrap
  { label: 'agent', value: r => r.event.agent, wrap: true },
  { label: 'site', value: r => r.event.site },
  { label: 'image', value: r => r.event.image, href: r => rolloutHref(r.event.image) },
  { label: 'version', value: r => r.event.version },
  { label: 'from version', value: r => r.event.fromVersion ?? null },
  { label: 'local bytes', value: r => r.event.bytes?.local ?? null, text: r => r.event.bytes == null ? '' : formatBytes(r.event.bytes.local), numeric: true },
  eventBytesColumn('LAN peer bytes', 'peers'),
  eventBytesColumn('WAN origin bytes', 'origin'),
  { label: 'seconds', value: r => r.event.seconds ?? null, text: r => r.event.seconds == null ? '' : r.event.seconds.toFixed(1), numeric: true },
  { label: 'error', value: r => r.event.error ?? null, wrap: true },
  { label: 'agent time', value: r => r.event.time, text: r => formatTime(r.event.time) }
]
const eventColumn = (label: string): Column<StoredEvent> => eventColumns.find(c => c.label === label) as Column<StoredEvent>

/** Builds every table of the console over the stores. */
/** Every version of every image (or of `?image=`), newest first. */
function versionsTable (c: QueryComponents): TableDef<VersionRow> {
  return {
    id: 'versions',
    title: 'Image versions',
    params: ['image'],
    columns: [
      { label: 'image', value: r => r.image, href: r => rolloutHref(r.image) },
      { label: 'version', value: r => r.version, href: r => versionHref(r.image, r.version) },
      { label: 'latest', value: r => r.latest, text: r => r.latest ? 'latest' : '' },
      { label: 'published', value: r => r.publishedAt, text: r => formatTime(r.publishedAt) },
      { label: 'size', value: r => r.size, text: r => formatBytes(r.size), numeric: true },
      { label: 'non-zero data', value: r => r.nonZeroBytes, text: r => formatBytes(r.nonZeroBytes), numeric: true },
      { label: 'chunks', value: r => r.chunks, numeric: true },
      {
        label: 'reused from previous %',
        value: r => r.reusedFromPreviousPercent,
        text: r => r.previous == null ? '' : `${formatPercent(r.reusedFromPreviousPercent)} of ${r.previous}`,
        numeric: true
      },
      { label: 'delta pack', value: r => r.deltaPackBytes, text: r => r.deltaPackBytes == null ? '' : formatBytes(r.deltaPackBytes), numeric: true },
      { label: 'retired', value: r => r.retired, text: r => r.retired ? 'retired' : '' }
    ],
    async load (q) {
      const only = opt(q, 'image', 'image')
      const list = await c.images.listImages(name => only == null || name === only)
      const rows: VersionRow[] = []
      for (const img of list.images) {
        let vl
        try { vl = await c.images.listVersions(img.name) } catch (err) { if (err instanceof NotFoundError) continue; throw err }
        for (const v of [...vl.versions].reverse()) rows.push({ ...v, latest: v.version === vl.latest })
      }
      return { rows, next: null }
    }
  }
}

/** Clients by image, version and site, with bytes by source. */
function rolloutTable (report: ReportSource): TableDef<ReportRow> {
  return {
    id: 'rollout',
    title: 'Clients by version and site',
    params: ['image', 'version', 'site'],
    columns: [
      { label: 'image', value: r => r.image },
      { label: 'version', value: r => r.version },
      { label: 'site', value: r => r.site },
      ...countColumns<ReportRow>(),
      ...bytesColumns<ReportRow>()
    ],
    async load (q) {
      return { rows: await report({ image: opt(q, 'image', 'image'), version: opt(q, 'version', 'version'), site: opt(q, 'site', 'site') }), next: null }
    }
  }
}

/** The latest failed syncs (from the event index). */
function failuresTable (c: QueryComponents): TableDef<StoredEvent> {
  return {
    id: 'failures',
    title: 'Recent failed syncs',
    params: ['image', 'limit', 'before'],
    cursor: 'before',
    columns: ['received', 'agent', 'site', 'image', 'version', 'error'].map(eventColumn),
    async load (q) {
      await c.index.refresh()
      const paging = { limit: limitParam(q, ROLLOUT_FAILURES_ROWS), before: cursorParam(q, 'before', EVENT_CURSOR) }
      const page = await c.index.query({ image: opt(q, 'image', 'image'), type: 'sync.failed' }, paging)
      return { rows: page.events, next: page.next, partial: page.partial }
    }
  }
}

/** Report totals by site. */
function bySiteTable (report: ReportSource): TableDef<TotalsRow> {
  return {
    id: 'by-site',
    title: 'Bandwidth by site',
    params: ['image'],
    columns: [{ label: 'site', value: r => r.key }, ...countColumns<TotalsRow>(), ...bytesColumns<TotalsRow>()],
    async load (q) {
      return { rows: totalsBy(await report({ image: opt(q, 'image', 'image') }), r => r.site), next: null }
    }
  }
}

/** Report totals of the whole scope. */
function totalsTable (report: ReportSource): TableDef<TotalsRow> {
  return {
    id: 'totals',
    title: 'All syncs so far',
    params: ['image', 'site'],
    columns: [{ label: 'scope', value: r => r.key }, ...countColumns<TotalsRow>(), ...bytesColumns<TotalsRow>()],
    async load (q) {
      const image = opt(q, 'image', 'image')
      const site = opt(q, 'site', 'site')
      const scope = [image != null ? `image ${image}` : '', site != null ? `site ${site}` : ''].filter(x => x !== '').join(', ')
      return { rows: totalsBy(await report({ image, site }), () => scope === '' ? 'all images and sites' : scope), next: null }
    }
  }
}

/** Report totals by image version. */
function byImageTable (report: ReportSource): TableDef<TotalsRow> {
  return {
    id: 'by-image',
    title: 'Bandwidth by image version',
    params: ['site'],
    columns: [{ label: 'image@version', value: r => r.key }, ...countColumns<TotalsRow>(), ...bytesColumns<TotalsRow>()],
    async load (q) {
      return { rows: totalsBy(await report({ site: opt(q, 'site', 'site') }), r => `${r.image}@${r.version}`), next: null }
    }
  }
}

/** Stored events, filtered and paged (from the event index). */
function eventsTable (c: QueryComponents): TableDef<StoredEvent> {
  return {
    id: 'events',
    title: 'Events',
    params: ['image', 'site', 'type', 'limit', 'before'],
    cursor: 'before',
    columns: eventColumns,
    async load (q) {
      const filter = { image: opt(q, 'image', 'image'), site: opt(q, 'site', 'site'), type: typeParam(q) }
      if (filter.image != null || filter.site != null || filter.type != null) await c.index.refresh()
      const page = await c.index.query(filter, { limit: limitParam(q), before: cursorParam(q, 'before', EVENT_CURSOR) })
      return { rows: page.events, next: page.next, partial: page.partial }
    }
  }
}

/** The group policies. */
function policiesTable (c: QueryComponents): TableDef<PolicyRow> {
  return {
    id: 'policies',
    title: 'Group policies',
    params: [],
    columns: [
      { label: 'group', value: r => r.group, href: r => `/console/policy/${encodeURIComponent(r.group)}` },
      { label: 'images', value: r => r.images.join(' ') },
      // the values read as rates with their unit ("20 mbit"); the JSON and CSV keep bytes per second
      { label: 'WAN cap', value: r => r.wanLimitBps, text: r => formatRate(r.wanLimitBps), numeric: true },
      { label: 'LAN sharing', value: r => r.lanSharing, text: r => r.lanSharing ? 'yes' : 'no' },
      { label: 'LAN upload cap', value: r => r.lanUploadBps, text: r => formatRate(r.lanUploadBps), numeric: true },
      { label: 'max peers', value: r => r.maxPeers, numeric: true },
      { label: 'update window', value: r => windowText(r) ?? null, text: r => windowText(r) ?? 'any time' },
      { label: 'index folders', value: r => Object.entries(r.indexFolders).map(([os, f]) => `${os}: ${(f ?? []).join(', ')}`).join('; ') }
    ],
    async load () {
      return { rows: Object.entries(c.policies.all()).map(([group, p]) => ({ group, ...p })), next: null }
    }
  }
}

/** The machine tokens, newest first. */
function tokensTable (c: QueryComponents): TableDef<TokenInfo> {
  return {
    id: 'tokens',
    title: 'Machine tokens',
    params: [],
    columns: [
      { label: 'id', value: r => r.id, href: r => `/console/tokens/${encodeURIComponent(r.id)}` },
      { label: 'group', value: r => r.group, href: r => `/console/policy/${encodeURIComponent(r.group)}` },
      { label: 'name (site)', value: r => r.name },
      { label: 'created', value: r => r.createdAt, text: r => formatTime(r.createdAt) },
      { label: 'state', value: r => r.revoked ? 'revoked' : 'active' }
    ],
    async load () {
      // newest first: the token just created is on top
      return { rows: (await c.tokens.list()).sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.id.localeCompare(b.id)), next: null }
    }
  }
}

/** Every table of the console, by id. */
export function createTables (c: QueryComponents): Record<string, TableDef> {
  const report = publishedReport(c.events, c.images)
  const tables: TableDef[] = [
    versionsTable(c), rolloutTable(report), failuresTable(c), totalsTable(report), bySiteTable(report), byImageTable(report),
    agentsTable(c), eventsTable(c), policiesTable(c), tokensTable(c)
  ]
  return Object.fromEntries(tables.map(t => [t.id, t]))
}

/** Checks a table's query parameters (unknown ones are a 400, like the API's). */
export function checkParams (table: TableDef, q: Record<string, string>): void {
  for (const k of Object.keys(q)) if (!table.params.includes(k)) throw new ValidationError(`${k}: unknown query parameter of table ${table.id}`)
}
