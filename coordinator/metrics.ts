/**
 * The coordinator's Prometheus metrics, with prom-client on a registry of its
 * own (not prom-client's global one), so several coordinators in one process
 * (tests, benchmarks) keep their counts apart. Every family has HELP; counters
 * end in `_total`, with the unit before it (`_bytes_total`); what kind of
 * bytes is a label, not part of the name. docs/OPERATIONS.md `## Metrics`
 * lists every family.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { AgentEvent } from '../protocol/api.ts'
import { LATENCY_BUCKETS, LINT_FAILING_DEFAULT_METRICS, MAX_SYNC_BYTES_SERIES } from './constants.ts'
import type { ImageStats } from './image-service.ts'

/** Why a login failed (the `reason` label). */
export type LoginFailure = 'bad_credentials' | 'rate_limited' | 'unavailable'

/** What the coordinator records; the exposition is rendered at scrape time. */
export interface Metrics {
  /** Records one HTTP request; `route` is the route pattern (never the raw path, so labels stay few). */
  request: (method: string, route: string, status: number, seconds: number) => void
  login: () => void
  loginFailure: (reason: LoginFailure) => void
  /** Events stored (by type) and received again. */
  events: (byType: Record<string, number>, duplicates: number) => void
  eventsSwept: (n: number) => void
  /** Events not taken (event-admission.ts), by reason: image, version, site, agents. */
  eventsRejected: (reason: string, n: number) => void
  /** A finished sync's bytes by source, from an agent's event (fields already validated). */
  syncBytes: (site: string, image: string, bytes: NonNullable<AgentEvent['bytes']>) => void
  /** The exposition text. */
  render: () => Promise<string>
  /** Content-Type of `render()`'s text. */
  contentType: string
}

/** What the metrics read at scrape time. */
export interface MetricsComponents {
  /** The image service's counters. */
  imageStats: () => ImageStats
}

/** Options of createMetrics. */
export interface MetricsInit {
  /** trimswarm's version (package.json), for trimswarm_build_info. */
  version: string
}

/** A counter whose value is read from a running total at scrape time. */
function counterFrom (registry: Registry, name: string, help: string, read: () => number): void {
  // eslint-disable-next-line no-new
  new Counter({
    name,
    help,
    registers: [registry],
    collect () { this.reset(); this.inc(read()) }
  })
}

function gaugeFrom (registry: Registry, name: string, help: string, read: () => number): void {
  // eslint-disable-next-line no-new
  new Gauge({ name, help, registers: [registry], collect () { this.set(read()) } })
}

/** The image service's counters as metric families. */
function imageFamilies (registry: Registry, stats: () => ImageStats): void {
  // eslint-disable-next-line no-new
  new Counter({
    name: 'trimswarm_origin_sent_bytes_total',
    help: 'Bytes the origin sent, by kind: signed manifests, block batches (compressed, as on the wire), single chunks, delta packs',
    labelNames: ['kind'],
    registers: [registry],
    collect () {
      this.reset()
      for (const [kind, n] of Object.entries(stats().bytesServed)) this.inc({ kind }, n)
    }
  })
  counterFrom(registry, 'trimswarm_origin_block_batch_raw_bytes_total',
    'Uncompressed bytes of the blocks sent in block batches (compare with trimswarm_origin_sent_bytes_total{kind="blocks"})',
    () => stats().blockBatchRawBytes)
  counterFrom(registry, 'trimswarm_origin_block_batches_total', 'Block batch streams started', () => stats().blockBatches)
  counterFrom(registry, 'trimswarm_origin_block_batches_failed_total', 'Block batch streams that ended with an error', () => stats().blockBatchesFailed)
  gaugeFrom(registry, 'trimswarm_origin_block_batches_waiting', 'Block batch requests waiting for a compression slot', () => stats().blockBatchesWaiting)
  counterFrom(registry, 'trimswarm_origin_block_batches_stalled_total',
    'Block batch streams aborted because their client took no byte for images.batchStallMs (slot freed, connection closed)',
    () => stats().blockBatchesStalled)
  counterFrom(registry, 'trimswarm_origin_corrupt_chunk_reads_total',
    'Reads of a stored chunk that failed its digest or was gone: refused, never served (run coordinator fsck)',
    () => stats().corruptChunkReads)
  counterFrom(registry, 'trimswarm_upload_chunks_total', 'Chunks stored by publishers (new ones; already stored chunks are not sent)',
    () => stats().chunksUploaded)
  counterFrom(registry, 'trimswarm_upload_bytes_total', 'Bytes of chunks stored by publishers', () => stats().bytesUploaded)
  counterFrom(registry, 'trimswarm_upload_rejected_total', 'Uploaded chunks refused (hash mismatch or invalid)', () => stats().uploadsRejected)
  counterFrom(registry, 'trimswarm_versions_committed_total', 'Image versions published', () => stats().versionsCommitted)
  counterFrom(registry, 'trimswarm_delta_packs_built_total', 'Delta packs built', () => stats().deltaPacksBuilt)
  counterFrom(registry, 'trimswarm_delta_pack_build_failures_total', 'Delta pack builds that failed', () => stats().deltaPackBuildFailures)
  gaugeFrom(registry, 'trimswarm_delta_packs_pending', 'Delta packs waiting or being built', () => stats().deltaPacksPending)
}

/** Creates the metrics of one coordinator (its own registry, process metrics included). */
export function createMetrics (components: MetricsComponents, init: MetricsInit): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const name of LINT_FAILING_DEFAULT_METRICS) registry.removeSingleMetric(name)
  new Gauge({ name: 'trimswarm_build_info', help: 'Always 1; labels: trimswarm version and Node.js version',
    labelNames: ['version', 'node'], registers: [registry] })
    .set({ version: init.version, node: process.version }, 1)
  const requests = new Counter({ name: 'trimswarm_http_requests_total', help: 'HTTP requests by method, route pattern and status',
    labelNames: ['method', 'route', 'status'], registers: [registry] })
  const latency = new Histogram({ name: 'trimswarm_http_request_duration_seconds', help: 'HTTP request latency (until the response head) by route pattern',
    labelNames: ['route'], buckets: LATENCY_BUCKETS, registers: [registry] })
  const logins = new Counter({ name: 'trimswarm_logins_total', help: 'Successful logins', registers: [registry] })
  const loginFailures = new Counter({ name: 'trimswarm_login_failures_total', help: 'Failed logins by reason (bad_credentials, rate_limited, unavailable)',
    labelNames: ['reason'], registers: [registry] })
  const events = new Counter({ name: 'trimswarm_events_total', help: 'Agent events stored, by type', labelNames: ['type'], registers: [registry] })
  const duplicates = new Counter({ name: 'trimswarm_events_duplicate_total', help: 'Agent events received again (same id) and ignored', registers: [registry] })
  const rejected = new Counter({ name: 'trimswarm_events_rejected_total',
    help: 'Agent events not taken, by reason (image: not in policy, version: unknown, site: one site too many, agents: one agent too many)',
    labelNames: ['reason'], registers: [registry] })
  const swept = new Counter({ name: 'trimswarm_events_swept_total', help: 'Events deleted by retention', registers: [registry] })
  const syncBytes = new Counter({ name: 'trimswarm_sync_bytes_total',
    help: 'Bytes of finished syncs reported by agents, by site, image and source (local: already on the host; peers: LAN; origin: WAN)',
    labelNames: ['site', 'image', 'source'], registers: [registry] })
  const syncSeriesDropped = new Counter({ name: 'trimswarm_sync_bytes_dropped_total',
    help: `Sync byte reports not counted in trimswarm_sync_bytes_total because it already has ${MAX_SYNC_BYTES_SERIES} (site, image) pairs`,
    registers: [registry] })
  imageFamilies(registry, components.imageStats)
  for (const reason of ['bad_credentials', 'rate_limited', 'unavailable']) loginFailures.inc({ reason }, 0)
  // a bound on label sets, whatever agents send: each (site, image) pair is 3 series
  const pairs = new Set<string>()

  return {
    contentType: registry.contentType,
    request (method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) })
      latency.observe({ route }, seconds)
    },
    login () { logins.inc() },
    loginFailure (reason) { loginFailures.inc({ reason }) },
    events (byType, dup) {
      for (const [type, n] of Object.entries(byType)) events.inc({ type }, n)
      if (dup > 0) duplicates.inc(dup)
    },
    eventsSwept (n) { swept.inc(n) },
    eventsRejected (reason, n) { rejected.inc({ reason }, n) },
    syncBytes (site, image, bytes) {
      const pair = `${site}\x00${image}`
      if (!pairs.has(pair)) {
        if (pairs.size >= MAX_SYNC_BYTES_SERIES) { syncSeriesDropped.inc(); return }
        pairs.add(pair)
      }
      for (const source of ['local', 'peers', 'origin'] as const) syncBytes.inc({ site, image, source }, bytes[source])
    },
    async render () { return await registry.metrics() }
  }
}
