/**
 * Prometheus metrics in the text exposition format, kept in-house: a few
 * counters and one histogram need no client library.
 */
import { LATENCY_BUCKETS } from './constants.ts'

/** Counters and the request latency histogram served at GET /metrics. */
export interface Metrics {
  /** Records one HTTP request; `route` is the route pattern (never the raw path, so labels stay few). */
  request: (method: string, route: string, status: number, seconds: number) => void
  /** Adds to a named counter with labels (e.g. login failures by reason). */
  inc: (name: string, labels?: Record<string, string>, by?: number) => void
  /** The exposition text; `gauges` are extra values read at scrape time (e.g. the image service's stats). */
  render: (gauges?: Record<string, number>) => string
}

/** Help texts of the counters the coordinator uses. */
const HELP: Record<string, string> = {
  trimswarm_login_failures_total: 'Failed logins by reason (bad_credentials, rate_limited, unavailable)',
  trimswarm_logins_total: 'Successful logins',
  trimswarm_events_total: 'Agent events stored, by type',
  trimswarm_events_duplicate_total: 'Agent events received again (same id) and ignored',
  trimswarm_events_rejected_total: 'Agent events not taken, by reason (image, version, site, agents)',
  trimswarm_events_swept_total: 'Events deleted by retention'
}

function escapeLabel (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function labelText (labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`)
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

/** Prometheus metric names allow [a-zA-Z0-9_:]. */
export function metricName (text: string): string {
  return text.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase().replace(/[^a-z0-9_:]/g, '_')
}

/** Creates an empty metrics registry. */
export function createMetrics (): Metrics {
  const requests = new Map<string, number>()
  const histos = new Map<string, { buckets: number[], sum: number, count: number }>()
  const counters = new Map<string, Map<string, number>>()
  return {
    request (method, route, status, seconds) {
      const key = labelText({ method, route, status: String(status) })
      requests.set(key, (requests.get(key) ?? 0) + 1)
      const hkey = labelText({ route })
      let h = histos.get(hkey)
      if (h == null) {
        h = { buckets: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 }
        histos.set(hkey, h)
      }
      for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]) h.buckets[i]++
      h.sum += seconds
      h.count++
    },
    inc (name, labels = {}, by = 1) {
      let m = counters.get(name)
      if (m == null) counters.set(name, m = new Map())
      const key = labelText(labels)
      m.set(key, (m.get(key) ?? 0) + by)
    },
    render (gauges = {}) {
      const lines: string[] = []
      lines.push('# HELP trimswarm_http_requests_total HTTP requests by method, route pattern and status')
      lines.push('# TYPE trimswarm_http_requests_total counter')
      for (const [k, v] of requests) lines.push(`trimswarm_http_requests_total${k} ${v}`)
      lines.push('# HELP trimswarm_http_request_duration_seconds HTTP request latency by route pattern')
      lines.push('# TYPE trimswarm_http_request_duration_seconds histogram')
      for (const [k, h] of histos) {
        const inner = k.slice(1, -1)
        LATENCY_BUCKETS.forEach((le, i) => lines.push(`trimswarm_http_request_duration_seconds_bucket{${inner},le="${le}"} ${h.buckets[i]}`))
        lines.push(`trimswarm_http_request_duration_seconds_bucket{${inner},le="+Inf"} ${h.count}`)
        lines.push(`trimswarm_http_request_duration_seconds_sum${k} ${h.sum}`)
        lines.push(`trimswarm_http_request_duration_seconds_count${k} ${h.count}`)
      }
      for (const [name, m] of counters) {
        if (HELP[name] != null) lines.push(`# HELP ${name} ${HELP[name]}`)
        lines.push(`# TYPE ${name} counter`)
        for (const [k, v] of m) lines.push(`${name}${k} ${v}`)
      }
      for (const [name, v] of Object.entries(gauges)) {
        if (!Number.isFinite(v)) continue
        lines.push(`# TYPE ${name} gauge`)
        lines.push(`${name} ${v}`)
      }
      return lines.join('\n') + '\n'
    }
  }
}
