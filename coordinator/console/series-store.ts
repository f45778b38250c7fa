/**
 * Time series for the charts, from samples of the event store's report of
 * published versions (an in-memory walk of its aggregates): every
 * SERIES_SAMPLE_MS, if the report changed, one sample with cumulative bytes by
 * source per image, per site and in total, and clients / in progress / failed
 * per image version. A chart point at time t reads the latest sample at or
 * before t (one level seek), so a chart costs CHART_POINTS seeks whatever the
 * number of events; bytes in a bucket are the difference of two cumulative
 * samples. History starts when the console first runs on a data dir.
 */
import type { ReportRow } from '../../protocol/api.ts'
import type { Logger } from '../interface.ts'
import type { MetaDb } from '../meta-db.ts'
import { SERIES_COARSE_MS, SERIES_FINE_KEEP_MS, SERIES_SAMPLE_MS } from './constants.ts'

/** Cumulative bytes by source: [local, peers, origin]. */
export type Bytes3 = [number, number, number]

/** One sample of the report. */
export interface Sample {
  /** Sample time, ms since the epoch. */
  t: number
  total: Bytes3
  images: Record<string, { bytes: Bytes3, versions: Record<string, [clients: number, inProgress: number, failed: number]> }>
  sites: Record<string, Bytes3>
}

/** Samples the report and reads the samples back. */
export interface SeriesStore {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Takes a sample now if the report changed since the last one (and the last is older than `minAgeMs`). */
  sample: (minAgeMs?: number) => Promise<void>
  /** For each time, the latest sample at or before it (undefined before the first sample). */
  at: (times: number[]) => Promise<Array<Sample | undefined>>
}

/** Options of createSeriesStore. */
export interface SeriesStoreInit {
  sampleMs?: number
  now?: () => number
}

const key = (t: number): string => String(t).padStart(15, '0')

/** Folds report rows into one sample. */
export function sampleOf (rows: ReportRow[], t: number): Sample {
  const s: Sample = { t, total: [0, 0, 0], images: {}, sites: {} }
  for (const r of rows) {
    const b: Bytes3 = [r.bytes.local, r.bytes.peers, r.bytes.origin]
    const img = (s.images[r.image] ??= { bytes: [0, 0, 0], versions: {} })
    const site = (s.sites[r.site] ??= [0, 0, 0])
    const v = (img.versions[r.version] ??= [0, 0, 0])
    v[0] += r.clients; v[1] += r.inProgress; v[2] += r.failed
    for (let i = 0; i < 3; i++) { img.bytes[i] += b[i]; site[i] += b[i]; s.total[i] += b[i] }
  }
  return s
}

/** What the series store reads: the report it samples. */
export interface SeriesStoreComponents {
  db: MetaDb
  events: { report: (filter: Record<string, never>) => ReportRow[] | Promise<ReportRow[]> }
  logger?: Logger
}

/** Creates the series store in the metadata database (sublevels `console-series-fine` and `-coarse`). */
export function createSeriesStore (components: SeriesStoreComponents, init: SeriesStoreInit = {}): SeriesStore {
  const { db, events, logger } = components
  const now = init.now ?? Date.now
  const sampleMs = init.sampleMs ?? SERIES_SAMPLE_MS
  const fine = db.sublevel<string, Sample>('console-series-fine', { valueEncoding: 'json' })
  const coarse = db.sublevel<string, Sample>('console-series-coarse', { valueEncoding: 'json' })
  let last: { t: number, text: string } | undefined
  let lastCoarse = 0
  let lastPrune = 0
  let timer: ReturnType<typeof setInterval> | undefined
  let chain: Promise<void> = Promise.resolve()

  const takeSample = async (minAgeMs: number): Promise<void> => {
    const t = now()
    if (last != null && t - last.t < minAgeMs) return
    const s = sampleOf(await events.report({}), t)
    const text = JSON.stringify({ ...s, t: 0 })
    if (last != null && last.text === text) return
    const ops: any[] = [{ type: 'put', sublevel: fine, key: key(t), value: s }]
    if (t - lastCoarse >= SERIES_COARSE_MS) { ops.push({ type: 'put', sublevel: coarse, key: key(t), value: s }); lastCoarse = t }
    await db.batch(ops)
    last = { t, text }
    if (t - lastPrune >= SERIES_COARSE_MS) {
      lastPrune = t
      await fine.clear({ lt: key(t - SERIES_FINE_KEEP_MS) })
    }
  }

  const sample = async (minAgeMs = 0): Promise<void> => {
    const run = chain.then(async () => { await takeSample(minAgeMs) })
    chain = run.catch((err: Error) => { logger?.error('console series sample failed', { error: err.message }) })
    await run
  }

  const latest = async (level: typeof fine, t: number): Promise<Sample | undefined> => {
    for await (const s of level.values({ lte: key(t), reverse: true, limit: 1 })) return s
    return undefined
  }

  return {
    async start () {
      const f = await latest(fine, Number.MAX_SAFE_INTEGER)
      if (f != null) last = { t: f.t, text: JSON.stringify({ ...f, t: 0 }) }
      lastCoarse = (await latest(coarse, Number.MAX_SAFE_INTEGER))?.t ?? 0
      await sample()
      timer = setInterval(() => { void sample().catch(() => {}) }, sampleMs)
      timer.unref()
    },
    async stop () {
      if (timer != null) clearInterval(timer)
      timer = undefined
      await chain
    },
    sample,
    async at (times) {
      const oldest = now() - SERIES_FINE_KEEP_MS
      return await Promise.all(times.map(async t => await latest(t >= oldest ? fine : coarse, t)))
    }
  }
}
