/**
 * Every route the coordinator serves, in one table: its Hono pattern (built
 * from the protocol's route helpers, protocol/api.ts, so client and server
 * cannot spell a path differently) and what its body is. coordinator.ts
 * applies the config's JSON body limit to exactly the routes marked `json`;
 * the route modules register their handlers on these patterns.
 */
import { routes } from '../protocol/api.ts'
import { API_PREFIX } from '../protocol/constants.ts'
import { swarmRoutes } from '../protocol/swarm-api.ts'
import { PACE_ROUTE } from '../protocol/pace.ts'
import { MAX_BLOCK_BATCH_REQUEST_BYTES, MAX_MISSING_REQUEST_BYTES } from './constants.ts'

/**
 * What a route's request body is:
 *   none   no body is read
 *   json   JSON within the config's limits.maxJsonBodyBytes (checked before auth)
 *   bytes  binary, within the route's own limit
 * A route with `maxBytes` reads JSON within that limit instead of the config's.
 */
export type RouteBody = 'none' | 'json' | 'bytes'

/** One route. */
export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Hono pattern (`:name` for a path parameter). */
  path: string
  body: RouteBody
  /** The route's own body limit in bytes (instead of the config's JSON limit). */
  maxBytes?: number
}

/** The Hono pattern of a protocol route helper: it is called with `__x__` placeholders, which become `:x`. */
export function routePattern<A extends string[]> (route: (...args: A) => string, ...names: A): string {
  return route(...names.map(n => `__${n}__`) as A).replace(/__(\w+)__/g, ':$1')
}

const r = (method: RouteSpec['method'], path: string, body: RouteBody = 'none', maxBytes?: number): RouteSpec =>
  maxBytes == null ? { method, path, body } : { method, path, body, maxBytes }

const version = routePattern(routes.version, 'name', 'version')

/** Every route (the console's pages are under CONSOLE_PREFIX, see console/console.ts). */
export const ROUTES = {
  health: r('GET', routes.health),
  metrics: r('GET', routes.metrics),
  openapi: r('GET', routes.openapi),
  key: r('GET', routes.key),
  login: r('POST', routes.login, 'json'),
  me: r('GET', routes.me),
  tokenCreate: r('POST', routes.tokens, 'json'),
  tokenList: r('GET', routes.tokens),
  tokenRevoke: r('DELETE', routePattern(routes.token, 'id')),
  policyList: r('GET', routes.policies),
  policyGet: r('GET', routePattern(routes.policy, 'group')),
  policyPut: r('PUT', routePattern(routes.policy, 'group'), 'json'),
  policyDelete: r('DELETE', routePattern(routes.policy, 'group')),
  adminImages: r('GET', routes.adminImages),
  gc: r('POST', routes.gc, 'json'),
  chunksMissing: r('POST', routes.chunksMissing, 'json', MAX_MISSING_REQUEST_BYTES),
  chunkUpload: r('PUT', routePattern(routes.chunkUpload, 'cid'), 'bytes'),
  images: r('GET', routes.images),
  versionList: r('GET', routePattern(routes.versions, 'name')),
  versionCommit: r('POST', routePattern(routes.versions, 'name'), 'bytes'),
  manifest: r('GET', version),
  latest: r('GET', routePattern(routes.latest, 'name')),
  versionInfo: r('GET', routePattern(routes.versionInfo, 'name', 'version')),
  retire: r('POST', routePattern(routes.retire, 'name', 'version')),
  blocks: r('POST', routePattern(routes.blocks, 'name', 'version'), 'json', MAX_BLOCK_BATCH_REQUEST_BYTES),
  chunk: r('GET', routePattern(routes.chunk, 'name', 'version', 'cid')),
  delta: r('GET', routePattern(routes.delta, 'name', 'version', 'from')),
  segmentList: r('GET', `${version}/segments`),
  segment: r('GET', `${version}/segments/:index`),
  pace: r('POST', PACE_ROUTE, 'json', 1024),
  eventsPost: r('POST', routes.events, 'json'),
  eventsGet: r('GET', routes.events),
  agents: r('GET', `${API_PREFIX}/agents`),
  reports: r('GET', routes.reports),
  capabilities: r('POST', swarmRoutes.capabilities, 'json'),
  peersPost: r('POST', swarmRoutes.peers, 'json'),
  peersGet: r('GET', swarmRoutes.peers),
  peersLeave: r('POST', swarmRoutes.peersLeave, 'json')
} as const satisfies Record<string, RouteSpec>

/** Where the admin console's pages and forms live (its forms are held to the JSON body limit too). */
export const CONSOLE_PREFIX = '/console'

/** Every route under the API prefix needs a token (the auth middleware's pattern); the open ones are mounted before it. */
export const API_PATTERN = `${API_PREFIX}/*`

/** Patterns of the admin's routes: every request under them needs the admin (admin-routes.ts). */
export const ADMIN_PATTERNS = [routes.tokens, `${routes.tokens}/*`, routes.policies, `${routes.policies}/*`, `${API_PREFIX}/admin/*`]

/** The routes whose JSON bodies are held to the config's limits.maxJsonBodyBytes: the `json` routes without a limit of their own. */
export function jsonLimitedRoutes (): RouteSpec[] {
  return Object.values(ROUTES as Record<string, RouteSpec>).filter(s => s.body === 'json' && s.maxBytes == null)
}
