/**
 * The agent daemon's own Prometheus metrics (`agent run --metrics-listen
 * HOST:PORT`): syncs by result, bytes by source (the WAN bytes this host
 * saved), the last successful sync, errors, and the process's metrics, on a
 * prom-client registry of its own. docs/OPERATIONS.md lists every family.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { ValidationError } from '../protocol/errors.ts'
import { LINT_FAILING_DEFAULT_METRICS } from './constants.ts'
import type { BytesBySource } from './interface.ts'

/** How a daemon's sync of one image ended (the `result` label). */
export type SyncResult = 'updated' | 'current' | 'failed'

/** What the daemon records. */
export interface DaemonMetrics {
  /** One sync of `image` ended; `bytes` (updated syncs) by source. */
  sync: (image: string, result: SyncResult, bytes?: BytesBySource) => void
  /** A check round failed before any sync (coordinator unreachable, bad token). */
  checkFailed: () => void
  render: () => Promise<string>
  contentType: string
}

/** Creates the daemon's metrics; `version` is trimswarm's (package.json). */
export function createDaemonMetrics (init: { version: string }): DaemonMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const name of LINT_FAILING_DEFAULT_METRICS) registry.removeSingleMetric(name)
  new Gauge({ name: 'trimswarm_build_info', help: 'Always 1; labels: trimswarm version and Node.js version',
    labelNames: ['version', 'node'], registers: [registry] })
    .set({ version: init.version, node: process.version }, 1)
  const syncs = new Counter({ name: 'trimswarm_agent_syncs_total',
    help: 'Syncs by image and result (updated: a new version installed; current: already up to date; failed)',
    labelNames: ['image', 'result'], registers: [registry] })
  const bytes = new Counter({ name: 'trimswarm_agent_sync_bytes_total',
    help: 'Bytes of installed versions by image and source (local: already on this host; peers: LAN; origin: WAN)',
    labelNames: ['image', 'source'], registers: [registry] })
  const lastSuccess = new Gauge({ name: 'trimswarm_agent_last_success_timestamp_seconds',
    help: 'Unix time of the last sync of the image that ended up to date (updated or current)',
    labelNames: ['image'], registers: [registry] })
  const errors = new Counter({ name: 'trimswarm_agent_errors_total',
    help: 'Failures by stage (sync: one image\'s sync; check: a round that could not ask the coordinator)',
    labelNames: ['stage'], registers: [registry] })
  errors.inc({ stage: 'sync' }, 0)
  errors.inc({ stage: 'check' }, 0)
  return {
    contentType: registry.contentType,
    sync (image, result, b) {
      syncs.inc({ image, result })
      if (result === 'failed') { errors.inc({ stage: 'sync' }); return }
      lastSuccess.set({ image }, Date.now() / 1000)
      if (b != null) for (const source of ['local', 'peers', 'origin'] as const) bytes.inc({ image, source }, b[source])
    },
    checkFailed () { errors.inc({ stage: 'check' }) },
    async render () { return await registry.metrics() }
  }
}

/** A running /metrics HTTP server. */
export interface MetricsServer {
  /** http://host:port */
  url: string
  close: () => Promise<void>
}

/** HOST:PORT (IPv6 in brackets), checked; throws ValidationError. */
export function parseHostPort (text: string): { host: string, port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text)
  if (m == null || Number(m[2]) > 65535) throw new ValidationError(`${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:9464)`)
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) }
}

/** Serves GET /metrics on `listen` (HOST:PORT; port 0 picks one); anything else is a 404. */
export async function startMetricsServer (metrics: DaemonMetrics, listen: string): Promise<MetricsServer> {
  const { host, port } = parseHostPort(listen)
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { name: 'NotFoundError', message: 'only GET /metrics is served here' } }))
      return
    }
    metrics.render().then(
      text => { res.writeHead(200, { 'content-type': metrics.contentType }).end(req.method === 'HEAD' ? undefined : text) },
      (err: Error) => { res.writeHead(500, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { name: 'TrimswarmError', message: err.message } })) }
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new ValidationError(`--metrics-listen ${listen}: ${err.code === 'EADDRINUSE' ? 'address in use' : err.message}`))
    })
    server.listen({ host, port }, () => { resolve() })
  })
  const addr = server.address() as AddressInfo
  return {
    url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`,
    async close () {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}
