/**
 * The request log middleware: one line per request with its request id (also
 * sent as X-Request-Id) and the client's IP, recorded in the metrics, and the
 * count of requests in flight that stop() waits for.
 */
import { randomUUID } from 'node:crypto'
import { getConnInfo } from '@hono/node-server/conninfo'
import type { Context, MiddlewareHandler } from 'hono'
import { routePath } from 'hono/route'
import type { CoordinatorEnv, Logger } from './interface.ts'
import type { Metrics } from './metrics.ts'
import type { TrustedProxies } from './trusted-proxies.ts'

/** The socket's remote address. */
function remoteAddress (c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown'
  } catch {
    return 'in-process' // app.request() has no socket
  }
}

/** An X-Request-Id a trusted proxy may hand on (anything else is replaced by our own). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Requests being handled, so stop() can wait for them before closing the database. */
export interface InFlight {
  count: number
  stopping: boolean
  /** Resolves when no request is in flight (or after `ms`). */
  drained: (ms: number) => Promise<void>
}

export function createInFlight (): InFlight {
  let waiters: Array<() => void> = []
  const state: InFlight & { done: () => void } = {
    count: 0,
    stopping: false,
    done () {
      if (state.count === 0) { for (const w of waiters) w(); waiters = [] }
    },
    async drained (ms) {
      if (state.count === 0) return
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, ms)
        waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }
  return state
}

/**
 * Logs one line per request (with its request id, also sent as X-Request-Id,
 * and the client's IP) and records it in the metrics; counts requests in flight.
 */
export function requestLog (
  logger: Logger, metrics: Metrics, proxies: TrustedProxies, inFlight: InFlight & { done?: () => void }
): MiddlewareHandler<CoordinatorEnv> {
  return async (c, next) => {
    const t0 = performance.now()
    const remote = remoteAddress(c)
    const ip = proxies.clientIp(remote, c.req.header('x-forwarded-for'))
    const given = c.req.header('x-request-id')
    const requestId = given != null && REQUEST_ID.test(given) && proxies.isTrusted(remote) ? given : randomUUID()
    c.set('clientIp', ip)
    // Secure console cookies: our own TLS, or a TLS-terminating proxy we trust saying so
    c.set('https', new URL(c.req.url).protocol === 'https:' || proxies.forwardedHttps(remote, c.req.header('x-forwarded-proto')))
    c.set('requestId', requestId)
    c.header('X-Request-Id', requestId)
    inFlight.count++
    try {
      await next()
    } finally {
      inFlight.count--
      inFlight.done?.()
    }
    // while stopping, keep-alive clients are told to go (they reconnect to the next instance)
    if (inFlight.stopping) c.header('Connection', 'close')
    // a handler that built its own Response did not get the prepared header
    if (!c.res.headers.has('x-request-id')) { try { c.res.headers.set('X-Request-Id', requestId) } catch { /* immutable headers */ } }
    const seconds = (performance.now() - t0) / 1000
    let route = routePath(c)
    if (route === '' || route.endsWith('*')) route = 'unmatched'
    const status = c.res.status
    metrics.request(c.req.method, route, status, seconds)
    const principal = c.get('principal')
    const who = principal != null ? { principal: principal.user } : {}
    logger.info('request', { method: c.req.method, route, status, ms: Math.round(seconds * 10_000) / 10, requestId, ip, ...who })
  }
}
