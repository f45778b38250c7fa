/**
 * The agent's coordinator client: the one HTTP client of client/ (failover over
 * the --coordinator list, retries with backoff, wire errors rebuilt) plus what
 * only the agent needs: a machine token file or a user name + password file
 * (POST /v1/auth/login, again on a 401 of an expired session), the WAN limit
 * on response bodies, every body byte counted as origin bytes, JSON answers
 * checked with their schema and at most 64 MiB, and the swarm calls.
 */
import { api } from '../protocol/index.ts'
import { UnauthorizedError } from '../protocol/errors.ts'
import type { Schema } from '../protocol/schema.ts'
import {
  CapabilityResponse, PeerLeaveResponse, PeerList, PeerRegistrationResponse, swarmRoutes,
  type CapabilityRequest, type PeerLeave, type PeerRegistration
} from '../protocol/swarm-api.ts'
import { createCoordinatorHttp } from '../client/coordinator-http.ts'
import { readSecretFile } from '../client/secret-file.ts'
import type { RequestOptions, RetryOptions, StreamedResponse } from '../client/interface.ts'
import { JSON_MAX_BYTES, RETRY_ATTEMPTS, RETRY_BASE_MS, RETRY_MAX_MS } from './constants.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { createRateLimiter, type RateLimiter } from './rate-limiter.ts'

export type { RetryOptions, StreamedResponse }

/** How the agent proves who it is. */
export type AgentAuth = { tokenFile: string } | { user: string, passwordFile: string } | { token: string }

/** The coordinator as the agent sees it. */
export interface CoordinatorClient {
  /** The coordinator asked first: the one of the list that answered last. */
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
  /** POST /v1/peers/leave: removes this agent's registrations of `peerId` (it stops serving). */
  leavePeers: (req: PeerLeave, options?: AbortOptions) => Promise<PeerLeaveResponse>
}

/** Dependencies of the client. */
export interface CoordinatorClientComponents {
  logger: AgentLogger
}

/** Options of the client. */
export interface CoordinatorClientInit {
  /** One coordinator, or several serving the same key and images: the next is asked when one is down (docs/OPERATIONS.md "Failover"). */
  url: string | readonly string[]
  auth: AgentAuth
  retry?: RetryOptions
  /** Origin bytes per second (0 = none). */
  rateLimit?: number
}

/** Creates a client for the coordinators at `init.url`. */
export function createCoordinatorClient (components: CoordinatorClientComponents, init: CoordinatorClientInit): CoordinatorClient {
  let limiter: RateLimiter & { requestHeaders?: () => Record<string, string> } = createRateLimiter(init.rateLimit ?? 0)
  const http = createCoordinatorHttp({ logger: components.logger, pacer: () => limiter }, {
    urls: typeof init.url === 'string' ? [init.url] : init.url,
    retry: { attempts: init.retry?.attempts ?? RETRY_ATTEMPTS, baseMs: init.retry?.baseMs ?? RETRY_BASE_MS, maxMs: init.retry?.maxMs ?? RETRY_MAX_MS }
  })
  let token: string | undefined

  async function getToken (force: boolean, options: AbortOptions): Promise<string> {
    if (token != null && !force) return token
    const auth = init.auth
    if ('token' in auth) token = auth.token
    else if ('tokenFile' in auth) token = await readSecretFile(auth.tokenFile, 'token')
    else {
      const password = await readSecretFile(auth.passwordFile, 'password')
      const body = { user: auth.user, password }
      token = (await http.json('POST', api.routes.login, api.LoginResponse, { body, signal: options.signal, idempotent: true })).token
    }
    return token
  }

  /** With auth; on 401 from a login session, logs in again once. */
  async function authed<T> (call: (token: string) => Promise<T>, options: AbortOptions): Promise<T> {
    try {
      return await call(await getToken(false, options))
    } catch (err) {
      if (err instanceof UnauthorizedError && 'user' in init.auth) return await call(await getToken(true, options))
      throw err
    }
  }

  // Every request of the agent is idempotent, so a body that breaks off is asked again whole
  // (GETs; POSTs that log in, register, sign or list; POST .../blocks, which only reads;
  // POST /v1/events, deduplicated by event id).
  const client: CoordinatorClient = {
    get url () { return http.url },
    get receivedBytes () { return http.receivedBytes },
    setRateLimit (bps) { limiter = createRateLimiter(bps) },
    setLimiter (l) { limiter = l },
    async authorization (options = {}) { return `Bearer ${await getToken(false, options)}` },
    async json (method, path, schema, body, options = {}) {
      return await authed(async token => await http.json(method, path, schema, { ...requestOptions(body, token, options), maxBytes: JSON_MAX_BYTES }), options)
    },
    async bytes (method, path, body, options = {}) {
      return await authed(async token => await http.bytes(method, path, { ...requestOptions(body, token, options), maxBytes: options.maxBytes }), options)
    },
    async stream (method, path, body, options = {}) {
      return await authed(async token => await http.request(method, path, { ...requestOptions(body, token, options), headers: options.headers }), options)
    },
    async backoff (failures, why, options = {}) {
      return await http.backoff(failures, why, options)
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
    },
    async leavePeers (req, options = {}) {
      return await client.json('POST', swarmRoutes.peersLeave, PeerLeaveResponse, req, options)
    }
  }
  return client
}

/** Answers that are not errors for the agent: 304 (not modified), 416 (a resume past the end). */
const OK_STATUSES = [304, 416]

/** The options every authenticated request of the agent shares. */
function requestOptions (body: unknown, token: string, options: AbortOptions): RequestOptions {
  return { body, token, signal: options.signal, okStatuses: OK_STATUSES, idempotent: true }
}
