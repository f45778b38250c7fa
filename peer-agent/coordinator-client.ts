/**
 * The agent's only way to the coordinator: HTTP to the protocol/api.ts routes.
 * Authenticates with a machine token file or a user name + password file
 * (POST /v1/auth/login), retries network errors (refused, reset, a body that
 * breaks off) and 5xx with exponential backoff and jitter, so a coordinator
 * restart only delays the agent (docs/OPERATIONS.md "When the coordinator
 * restarts"), rebuilds error bodies with errorFromWire, validates every
 * JSON response with its schema, and counts every response body byte
 * received (compressed, as on the wire) as origin bytes.
 */
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { api } from '../protocol/index.ts'
import { errorFromWire, TrimswarmError, UnauthorizedError } from '../protocol/errors.ts'
import type { Schema } from '../protocol/schema.ts'
import { userAgent } from '../protocol/version.ts'
import { CapabilityResponse, PeerList, PeerRegistrationResponse, swarmRoutes, type CapabilityRequest, type PeerRegistration } from '../protocol/swarm-api.ts'
import { JSON_MAX_BYTES, RETRY_ATTEMPTS, RETRY_BASE_MS, RETRY_MAX_MS } from './constants.ts'
import { CoordinatorUnreachableError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { createRateLimiter, type RateLimiter } from './rate-limiter.ts'

/** Sent with every request, so the coordinator's logs and an operator's proxy show which agent version asks. */
const USER_AGENT = userAgent(process.versions.node)

/** How the agent proves who it is. */
export type AgentAuth = { tokenFile: string } | { user: string, passwordFile: string } | { token: string }

/** Retry settings for network errors and 5xx. */
export interface RetryOptions {
  attempts?: number
  baseMs?: number
  maxMs?: number
}

/** A response body streamed through the byte counter and rate limiter. */
export interface StreamedResponse {
  status: number
  headers: Headers
  body: AsyncIterable<Uint8Array>
}

/** The coordinator as the agent sees it. */
export interface CoordinatorClient {
  readonly url: string
  /** Bytes of response bodies received so far (origin bytes). */
  readonly receivedBytes: number
  /** Limits origin bytes per second from now on (0 = none). */
  setRateLimit: (bytesPerSecond: number) => void
  /** Paces origin bytes with `limiter` from now on (background mode's pacer; its requestHeaders go on every request). */
  setLimiter: (limiter: RateLimiter & { requestHeaders?: () => Record<string, string> }) => void
  /** The Authorization header value of this client's requests (background mode's pace updates, sent apart from the client's retries). */
  authorization: (options?: AbortOptions) => Promise<string>
  /** GET/POST JSON, validated with `schema`; a body that breaks off is asked again. */
  json: <T>(method: 'GET' | 'POST', path: string, schema: Schema<T>, body?: unknown, options?: AbortOptions) => Promise<T>
  /** A binary GET/POST whose whole body is returned (manifests, chunks); a body that breaks off is asked again. */
  bytes: (method: 'GET' | 'POST', path: string, body?: unknown, options?: AbortOptions & { maxBytes?: number }) => Promise<Uint8Array>
  /**
   * A binary request whose body is streamed; retries only until the response
   * starts (a broken body is the caller's to resume). `okStatuses` lists
   * statuses other than 2xx that are not errors (e.g. 416).
   */
  stream: (method: 'GET' | 'POST', path: string, body?: unknown, options?: AbortOptions & { headers?: Record<string, string> }) => Promise<StreamedResponse>
  /**
   * Waits before the caller resumes a streamed body that broke off for the
   * `failures`-th time in a row (`why` is logged), with the client's retry
   * settings; false, without waiting, once those tries are used up.
   */
  backoff: (failures: number, why: string, options?: AbortOptions) => Promise<boolean>
  /** GET /v1/auth/me */
  me: (options?: AbortOptions) => Promise<api.MeResponse>
  /** POST /v1/capabilities: the signed capability bytes for image@version bound to `peerId`. */
  capability: (req: CapabilityRequest, options?: AbortOptions) => Promise<{ capability: Uint8Array, expires: number }>
  /** POST /v1/peers: (re-)registers this swarm node for its site. */
  registerPeer: (reg: PeerRegistration, options?: AbortOptions) => Promise<PeerRegistrationResponse>
  /** GET /v1/peers?site=&image=&version=: live peers of a site. */
  listPeers: (query: { site: string, image?: string, version?: string }, options?: AbortOptions) => Promise<PeerList>
}

/** Dependencies of the client. */
export interface CoordinatorClientComponents {
  logger: AgentLogger
}

/** Options of the client. */
export interface CoordinatorClientInit {
  url: string
  auth: AgentAuth
  retry?: RetryOptions
  /** Origin bytes per second (0 = none). */
  rateLimit?: number
}

async function readSecret (path: string, what: string): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new UnauthorizedError(`cannot read ${what} file ${path}: ${(err as Error).message}`)
  }
  const s = text.trim()
  if (s === '') throw new UnauthorizedError(`${what} file ${path} is empty`)
  return s
}

/** Creates a client for the coordinator at `init.url`. */
export function createCoordinatorClient (components: CoordinatorClientComponents, init: CoordinatorClientInit): CoordinatorClient {
  const base = init.url.replace(/\/+$/, '')
  try {
    const u = new URL(base)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)')
  } catch {
    throw new TrimswarmError(`--coordinator must be an http:// or https:// URL, got ${JSON.stringify(init.url)}`)
  }
  const attempts = Math.max(1, init.retry?.attempts ?? RETRY_ATTEMPTS)
  const baseMs = init.retry?.baseMs ?? RETRY_BASE_MS
  const maxMs = init.retry?.maxMs ?? RETRY_MAX_MS
  let limiter: RateLimiter & { requestHeaders?: () => Record<string, string> } = createRateLimiter(init.rateLimit ?? 0)
  let token: string | undefined
  let received = 0
  // Retries are for a coordinator that answered before and went away (a restart); one that never
  // answered is most likely a wrong URL or port, which no retry fixes: that fails at once.
  let established = false

  async function getToken (force: boolean, options: AbortOptions): Promise<string> {
    if (token != null && !force) return token
    const auth = init.auth
    if ('token' in auth) token = auth.token
    else if ('tokenFile' in auth) token = await readSecret(auth.tokenFile, 'token')
    else {
      const password = await readSecret(auth.passwordFile, 'password')
      const res = await send('POST', api.routes.login, { user: auth.user, password }, options, undefined, {})
      const body = api.LoginResponse.parse(JSON.parse(new TextDecoder().decode(await collect(res.body))))
      token = body.token
    }
    return token
  }

  async function * counted (body: ReadableStream<Uint8Array> | null, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    if (body == null) return
    const reader = body.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        received += value.length
        await limiter.take(value.length, { signal })
        yield value
      }
    } finally {
      reader.releaseLock()
      await body.cancel().catch(() => {})
    }
  }

  async function collect (it: AsyncIterable<Uint8Array>, maxBytes = Infinity): Promise<Uint8Array> {
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

  /** One request with retries on network errors and 5xx; throws the wire error for other non-2xx. */
  async function send (method: string, path: string, body: unknown, options: AbortOptions, auth: string | undefined, headers: Record<string, string>, okStatuses: number[] = []): Promise<StreamedResponse> {
    let lastError: unknown
    for (let attempt = 1; attempt <= attempts; attempt++) {
      options.signal?.throwIfAborted()
      let res: Response
      try {
        res = await fetch(base + path, {
          method,
          headers: {
            'user-agent': USER_AGENT,
            ...(auth != null ? { authorization: `Bearer ${auth}` } : {}),
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...limiter.requestHeaders?.(),
            ...headers
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          signal: options.signal
        })
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        if (!established && neverConnected(err)) throw new CoordinatorUnreachableError(`cannot reach the coordinator at ${base}: ${describeNetworkError(err)}`, { cause: err })
        lastError = err
        await backoff(attempt, `${method} ${path}: ${describeNetworkError(err)}`, options)
        continue
      }
      established = true
      if (res.ok || okStatuses.includes(res.status)) {
        return { status: res.status, headers: res.headers, body: counted(res.body, options.signal) }
      }
      const text = new TextDecoder().decode(await collect(counted(res.body, options.signal), 1024 * 1024).catch(() => new Uint8Array()))
      let parsed: unknown
      try { parsed = JSON.parse(text) } catch {}
      const err = errorFromWire(parsed, `${method} ${path}: HTTP ${res.status}`)
      if (res.status >= 500) {
        lastError = err
        await backoff(attempt, `${method} ${path}: HTTP ${res.status} ${err.message}`, options)
        continue
      }
      throw err
    }
    throw new CoordinatorUnreachableError(`coordinator ${base} unreachable after ${attempts} tries: ${lastError instanceof Error ? describeNetworkError(lastError) : String(lastError)}`, { cause: lastError })
  }

  async function backoff (attempt: number, why: string, options: AbortOptions): Promise<boolean> {
    if (attempt >= attempts) return false
    const delay = Math.min(maxMs, baseMs * 2 ** (attempt - 1))
    const jittered = delay / 2 + Math.random() * delay / 2
    components.logger.warn(`${why}; retrying in ${(jittered / 1000).toFixed(1)} s (try ${attempt + 1} of ${attempts})`)
    await sleep(jittered, undefined, { signal: options.signal })
    return true
  }

  /** With auth; on 401 from a login session, logs in again once. */
  async function authed (method: string, path: string, body: unknown, options: AbortOptions, headers: Record<string, string> = {}): Promise<StreamedResponse> {
    try {
      return await send(method, path, body, options, await getToken(false, options), headers, [304, 416])
    } catch (err) {
      if (err instanceof UnauthorizedError && 'user' in init.auth) {
        return await send(method, path, body, options, await getToken(true, options), headers, [304, 416])
      }
      throw err
    }
  }

  /**
   * A request whose whole body is wanted: a body that breaks off (the coordinator
   * stopped or restarted mid-response, the connection was reset) asks again, as
   * every request of the agent is idempotent (GETs; POSTs that log in, register,
   * sign or list; POST .../blocks, which only reads; POST /v1/events, deduplicated
   * by event id).
   */
  async function whole (method: string, path: string, body: unknown, options: AbortOptions, headers: Record<string, string>, maxBytes?: number): Promise<Uint8Array> {
    for (let attempt = 1; ; attempt++) {
      const res = await authed(method, path, body, options, headers)
      try {
        return await collect(res.body, maxBytes)
      } catch (err) {
        // our own limits (a response too large) and an abort are final
        if (options.signal?.aborted === true || err instanceof TrimswarmError) throw err
        if (attempt >= attempts) {
          throw new CoordinatorUnreachableError(`coordinator ${base}: ${method} ${path}: response broke off ${attempts} times: ${describeNetworkError(err)}`, { cause: err })
        }
        await backoff(attempt, `${method} ${path}: response broke off (${describeNetworkError(err)})`, options)
      }
    }
  }

  const client: CoordinatorClient = {
    url: base,
    get receivedBytes () { return received },
    setRateLimit (bps) { limiter = createRateLimiter(bps) },
    setLimiter (l) { limiter = l },
    async authorization (options = {}) { return `Bearer ${await getToken(false, options)}` },
    async json (method, path, schema, body, options = {}) {
      const bytes = await whole(method, path, body, options, { accept: 'application/json' }, JSON_MAX_BYTES)
      let parsed: unknown
      try {
        parsed = JSON.parse(new TextDecoder().decode(bytes))
      } catch {
        throw new TrimswarmError(`${method} ${path}: response is not JSON`)
      }
      return schema.parse(parsed)
    },
    async bytes (method, path, body, options = {}) {
      return await whole(method, path, body, options, {}, options.maxBytes)
    },
    async stream (method, path, body, options = {}) {
      return await authed(method, path, body, options, options.headers ?? {})
    },
    async backoff (failures, why, options = {}) {
      return await backoff(failures, why, options)
    },
    async me (options = {}) {
      return await client.json('GET', api.routes.me, api.MeResponse, undefined, options)
    },
    async capability (req, options = {}) {
      const res = await client.json('POST', swarmRoutes.capabilities, CapabilityResponse, req, options)
      return { capability: Uint8Array.from(Buffer.from(res.capability, 'base64')), expires: res.expires }
    },
    async registerPeer (reg, options = {}) {
      return await client.json('POST', swarmRoutes.peers, PeerRegistrationResponse, reg, options)
    },
    async listPeers (query, options = {}) {
      const q = new URLSearchParams({ site: query.site })
      if (query.image != null) q.set('image', query.image)
      if (query.version != null) q.set('version', query.version)
      return await client.json('GET', `${swarmRoutes.peers}?${q.toString()}`, PeerList, undefined, options)
    }
  }
  return client
}

/** Network errors that mean no connection was ever made: nothing listens there, or no such host. */
const NOT_CONNECTED_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH'])

function neverConnected (err: unknown): boolean {
  const cause = (err as { cause?: { code?: unknown, message?: unknown } }).cause
  // fetch refuses ports browsers block (9, 25, 6000, ...) before dialling: no retry helps either
  return (typeof cause?.code === 'string' && NOT_CONNECTED_CODES.has(cause.code)) || cause?.message === 'bad port'
}

function describeNetworkError (err: unknown): string {
  const e = err as Error & { cause?: { code?: string, message?: string } }
  const cause = e.cause
  if (cause?.code != null) return `${cause.code} ${cause.message ?? ''}`.trim()
  if (typeof cause?.message === 'string' && cause.message !== '') return cause.message
  return e.message ?? String(err)
}
