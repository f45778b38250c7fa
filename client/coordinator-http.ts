/**
 * The one HTTP client of the coordinator API, under the agent, `trimswarm publish`
 * and the admin commands: one URL check, one auth header, one error per failure
 * (the wire error the coordinator named, CoordinatorHttpError, CoordinatorUnreachableError)
 * and failover over a list of coordinators.
 *
 * Failover: a network error or a 5xx from one coordinator asks the next after a
 * short pause (FAILOVER_DELAY_MS); a 4xx is an answer and is thrown at once. The
 * coordinator that answered is remembered and asked first next time. One try of
 * every coordinator is a round; between rounds the client backs off exponentially
 * with jitter, for `retry.attempts` rounds. Any coordinator serving the same
 * signing key and images is as good as another (manifests are signed and content
 * addressed), so the caller need not know which one answered.
 *
 * Transport: node:http / node:https, not WHATWG fetch: a response body is the socket's
 * own Node stream, where fetch hands each piece through web streams (57 MiB of segments
 * cost the agent 320-385 ms of CPU and 6 mark-compacts through fetch, 145-191 ms and 1
 * through node:http; docs/BENCHMARKS.md "### agent CPU"). TLS trusts what Node trusts
 * (its CA store, NODE_EXTRA_CA_CERTS), as fetch did; connections are kept alive by
 * Node's global agents.
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import { userAgent } from '../protocol/version.ts'
import type { Schema } from '../protocol/schema.ts'
import { TrimswarmError } from '../protocol/errors.ts'
import { DEFAULT_ATTEMPTS, DEFAULT_RETRY_BASE_MS, DEFAULT_RETRY_MAX_MS, ERROR_BODY_MAX_BYTES, FAILOVER_DELAY_MS } from './constants.ts'
import { CoordinatorUrlError, httpError, unreachableError } from './errors.ts'
import type { AbortOptions, BytePacer, ClientLogger, RequestOptions, ResponseHeaders, RetryOptions, StreamedResponse } from './interface.ts'

// node:http and node:https through require, not import: Node builds the ESM facade of a built-in
// module from all its exports, and node:http's include lazy getters (WebSocket, ...) that load
// undici, ~30-40 ms of CPU in every process that only makes requests (docs/BENCHMARKS.md "Session 14")
const builtin = createRequire(import.meta.url)
const { request: httpRequest } = builtin('node:http') as typeof import('node:http')
const { request: httpsRequest } = builtin('node:https') as typeof import('node:https')

/** Sent with every request, so the coordinator's logs and an operator's proxy show which trimswarm version asks. */
const USER_AGENT = userAgent(process.versions.node)

/** Dependencies of the client. */
export interface CoordinatorHttpComponents {
  logger?: ClientLogger
  /** Paces every response body (the agent's WAN limit); none: unpaced. */
  pacer?: () => BytePacer | undefined
}

/** Options of the client. */
export interface CoordinatorHttpInit {
  /** Coordinator base URLs, tried in this order (a path prefix is kept: https://proxy/trimswarm). */
  urls: readonly string[]
  retry?: RetryOptions
  /** Pause before the next coordinator of the list (default FAILOVER_DELAY_MS). */
  failoverDelayMs?: number
}

/** The coordinator API over HTTP. */
export interface CoordinatorHttp {
  /** The coordinator asked first: the one that answered last. */
  readonly url: string
  readonly urls: readonly string[]
  /** Bytes of response bodies received so far (compressed, as on the wire). */
  readonly receivedBytes: number
  /** One request, with failover and retries; throws the coordinator's error for a 4xx. The body is the caller's to read. */
  request: (method: string, path: string, options?: RequestOptions) => Promise<StreamedResponse>
  /** A request whose whole body is returned; a body that breaks off is asked again (every such request must be idempotent). */
  bytes: (method: string, path: string, options?: RequestOptions & { maxBytes?: number }) => Promise<Uint8Array>
  /** A JSON request whose answer is validated with `schema` (an empty body parses as undefined). */
  json: <T>(method: string, path: string, schema: Schema<T> | undefined, options?: RequestOptions & { maxBytes?: number }) => Promise<T>
  /**
   * Waits before the caller tries again after the `failures`-th failure in a row (`why` is
   * logged), with the client's retry settings; false, without waiting, once the tries are used up.
   */
  backoff: (failures: number, why: string, options?: AbortOptions) => Promise<boolean>
}

/** Checks coordinator URLs: http:// or https://, at least one; returns them without trailing slashes. Throws CoordinatorUrlError. */
export function parseCoordinatorUrls (urls: readonly string[]): string[] {
  if (urls.length === 0) throw new CoordinatorUrlError('no coordinator URL given (e.g. http://127.0.0.1:8440)')
  return urls.map(raw => {
    let u: URL | undefined
    try { u = new URL(raw) } catch {}
    if (u == null || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.search !== '' || u.hash !== '') {
      throw new CoordinatorUrlError(`coordinator URL ${JSON.stringify(raw)} is not an http:// or https:// URL (e.g. http://127.0.0.1:8440)`)
    }
    return raw.replace(/\/+$/, '')
  })
}

/** One failed try: what to log, and whether it is worth asking again. */
interface Failure { why: string, error: unknown, refused: boolean, answered: boolean }

/** Creates the client; throws CoordinatorUrlError for a bad URL. */
export function createCoordinatorHttp (components: CoordinatorHttpComponents, init: CoordinatorHttpInit): CoordinatorHttp {
  const urls = parseCoordinatorUrls(init.urls)
  const attempts = Math.max(1, init.retry?.attempts ?? DEFAULT_ATTEMPTS)
  const baseMs = init.retry?.baseMs ?? DEFAULT_RETRY_BASE_MS
  const maxMs = init.retry?.maxMs ?? DEFAULT_RETRY_MAX_MS
  const failoverDelayMs = init.failoverDelayMs ?? FAILOVER_DELAY_MS
  const logger = components.logger
  let current = 0
  let received = 0
  // Retries are for a coordinator that answered before and went away (a restart); a list none of
  // which ever answered is most likely a wrong URL or port, which no retry fixes: that fails at once.
  let established = false

  async function * counted (body: IncomingMessage, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    try {
      for await (const piece of body as AsyncIterable<Buffer>) {
        received += piece.length
        await components.pacer?.()?.take(piece.length, { signal })
        yield piece
      }
    } finally {
      // a caller that stops reading early frees the connection
      body.destroy()
    }
  }

  /** One try against one coordinator: the response, or why it failed (a 4xx is thrown). */
  async function tryOnce (base: string, method: string, path: string, options: RequestOptions): Promise<StreamedResponse | Failure> {
    const signals = [...(options.timeoutMs != null ? [AbortSignal.timeout(options.timeoutMs)] : []), ...(options.signal != null ? [options.signal] : [])]
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0]
    let res: IncomingMessage
    try {
      const repeatable = IDEMPOTENT.has(method) || options.idempotent === true
      res = await send(base + path, method, headersOf(options, components.pacer?.()?.requestHeaders?.()), bodyOf(options.body), signal, repeatable)
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason
      return { why: describeNetworkError(err), error: err, refused: neverConnected(err), answered: false }
    }
    established = true
    const status = res.statusCode ?? 0
    if ((status >= 200 && status < 300) || options.okStatuses?.includes(status) === true) {
      return { status, headers: responseHeaders(res), body: counted(res, options.signal) }
    }
    const text = new TextDecoder().decode(await collect(counted(res, options.signal), ERROR_BODY_MAX_BYTES).catch(() => new Uint8Array()))
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch {}
    const err = httpError({ status, method, path }, parsed)
    if (status < 500) throw err
    return { why: `HTTP ${status} ${err.message}`, error: err, refused: false, answered: true }
  }

  async function request (method: string, path: string, options: RequestOptions = {}): Promise<StreamedResponse> {
    let failures = new Map<string, string>()
    let last: Failure | undefined
    let round = 1
    for (; ; round++) {
      failures = new Map()
      let allRefused = true
      const start = current
      for (let k = 0; k < urls.length; k++) {
        options.signal?.throwIfAborted()
        const i = (start + k) % urls.length
        const out = await tryOnce(urls[i], method, path, options)
        if (!('why' in out)) { current = i; return out }
        last = out
        failures.set(urls[i], out.why)
        allRefused &&= out.refused
        if (k + 1 < urls.length) {
          logger?.warn(`${method} ${path}: ${urls[i]}: ${out.why}; trying ${urls[(i + 1) % urls.length]}`)
          await sleep(failoverDelayMs, undefined, { signal: options.signal })
        }
      }
      if (!established && allRefused) break
      const what = urls.length === 1 ? [...failures.values()] : [...failures].map(([url, why]) => `${url}: ${why}`)
      if (!(await backoff(round, `${method} ${path}: ${what.join('; ')}`, options))) break
    }
    // one try of one coordinator that answered (the admin commands, publish): its own answer says most
    if (attempts === 1 && urls.length === 1 && last?.answered === true) throw last.error
    throw unreachableError(failures, round, last?.error)
  }

  async function backoff (failures: number, why: string, options: AbortOptions = {}): Promise<boolean> {
    if (failures >= attempts) return false
    const delay = Math.min(maxMs, baseMs * 2 ** (failures - 1))
    const jittered = delay / 2 + Math.random() * delay / 2
    logger?.warn(`${why}; retrying in ${(jittered / 1000).toFixed(1)} s (try ${failures + 1} of ${attempts})`)
    await sleep(jittered, undefined, { signal: options.signal })
    return true
  }

  async function bytes (method: string, path: string, options: RequestOptions & { maxBytes?: number } = {}): Promise<Uint8Array> {
    for (let attempt = 1; ; attempt++) {
      const res = await request(method, path, options)
      try {
        return await collect(res.body, options.maxBytes)
      } catch (err) {
        // our own limits (a response too large) and an abort are final
        if (options.signal?.aborted === true || err instanceof TrimswarmError) throw err
        const why = `${method} ${path}: response broke off (${describeNetworkError(err)})`
        if (!(await backoff(attempt, why, options))) throw unreachableError(new Map([[client.url, why]]), attempt, err)
      }
    }
  }

  const client: CoordinatorHttp = {
    get url () { return urls[current] },
    urls,
    get receivedBytes () { return received },
    request,
    bytes,
    async json<T> (method: string, path: string, schema: Schema<T> | undefined, options: RequestOptions & { maxBytes?: number } = {}): Promise<T> {
      const body = await bytes(method, path, { ...options, headers: { accept: 'application/json', ...options.headers } })
      let parsed: unknown
      try {
        const text = new TextDecoder().decode(body)
        parsed = text === '' ? undefined : JSON.parse(text)
      } catch {
        throw new TrimswarmError(`${method} ${path}: response is not JSON`)
      }
      return schema != null ? schema.parse(parsed) : parsed as T
    },
    backoff
  }
  return client
}

/** The one header rule: user agent, bearer token when given, content type of the body, the pacer's, the caller's. */
function headersOf (options: RequestOptions, pacerHeaders?: Record<string, string>): Record<string, string> {
  const raw = options.body instanceof Uint8Array || typeof options.body === 'string'
  const contentType = options.contentType ?? (options.body !== undefined && !raw ? 'application/json' : undefined)
  return {
    'user-agent': USER_AGENT,
    ...(options.token != null ? { authorization: `Bearer ${options.token}` } : {}),
    ...(contentType != null ? { 'content-type': contentType } : {}),
    ...pacerHeaders,
    ...options.headers
  }
}

function bodyOf (body: unknown): Uint8Array | string | undefined {
  if (body === undefined) return undefined
  if (body instanceof Uint8Array || typeof body === 'string') return body
  return JSON.stringify(body)
}

/** Methods a server may receive twice with the effect of once (RFC 9110 9.2.2); a POST says so itself. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])

/**
 * Sends one request (its body whole, with its Content-Length); resolves once the response's
 * status and headers are in, its body unread. A network error or an abort of `signal` rejects,
 * before the response or (as the body's error) after it. A kept-alive connection that the
 * coordinator closed while it sat idle (a restart, its keep-alive timeout) fails at its next use
 * before any answer: a `repeatable` request is sent once more on a new connection, so a restart
 * is seen as what it is (refused, or answered) and not as a reset. The reset cannot tell "closed
 * while idle" from "read, acted on, then lost", so a request that must not reach the coordinator
 * twice (a version commit, a token) is never sent on a kept-alive connection at all.
 */
async function send (
  url: string, method: string, headers: OutgoingHttpHeaders, body: Uint8Array | string | undefined, signal: AbortSignal | undefined, repeatable: boolean
): Promise<IncomingMessage> {
  if (!repeatable) return await sendOn(false, url, method, headers, body, signal)
  try {
    return await sendOn(undefined, url, method, headers, body, signal)
  } catch (err) {
    if ((err as { staleConnection?: boolean }).staleConnection !== true || signal?.aborted === true) throw err
    return await sendOn(false, url, method, headers, body, signal)
  }
}

/** One request on a pooled connection (`agent` undefined) or on a new one of its own (false). */
async function sendOn (
  agent: false | undefined, url: string, method: string, headers: OutgoingHttpHeaders, body: Uint8Array | string | undefined, signal?: AbortSignal
): Promise<IncomingMessage> {
  return await new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { method, headers, signal, agent }, resolve)
    req.on('error', (err: Error & { code?: string }) => {
      const stale = req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')
      reject(stale ? Object.assign(err, { staleConnection: true }) : err)
    })
    req.end(body)
  })
}

/** The response headers the callers read (ETag, ...), by case-insensitive name; repeated ones joined as fetch does. */
function responseHeaders (res: IncomingMessage): ResponseHeaders {
  return {
    get (name) {
      const v = res.headers[name.toLowerCase()]
      return v == null ? null : Array.isArray(v) ? v.join(', ') : v
    }
  }
}

/** Reads a body whole; more than `maxBytes` is a TrimswarmError (final, not retried). */
export async function collect (it: AsyncIterable<Uint8Array>, maxBytes = Infinity): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let n = 0
  for await (const p of it) {
    n += p.length
    if (n > maxBytes) throw new TrimswarmError(`response larger than ${maxBytes} bytes`)
    parts.push(p)
  }
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** Network errors that mean no connection was ever made: nothing listens there, or no such host. */
const NOT_CONNECTED_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH'])

function neverConnected (err: unknown): boolean {
  const code = errnoOf(err)?.code
  return code != null && NOT_CONNECTED_CODES.has(code)
}

/** The system error (ECONNREFUSED, ECONNRESET ...) of a network error: node:http's own, or its cause. */
function errnoOf (err: unknown): { code: string, message: string } | undefined {
  for (let e = err as { code?: unknown, message?: unknown, cause?: unknown } | undefined, depth = 0; e != null && depth < 3; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return { code: e.code, message: typeof e.message === 'string' ? e.message : '' }
  }
  return undefined
}

/**
 * A network error in a few words: its system error's code and message (ECONNREFUSED ...),
 * else what aborted it (a timeout), else its own message.
 */
export function describeNetworkError (err: unknown): string {
  const errno = errnoOf(err)
  if (errno != null) return `${errno.code} ${errno.message}`.trim()
  const e = err as Error & { cause?: { message?: unknown } }
  if (e.name === 'AbortError' && typeof e.cause?.message === 'string' && e.cause.message !== '') return e.cause.message
  return e.message ?? String(err)
}
