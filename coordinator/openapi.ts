/**
 * GET /v1/openapi.json: an OpenAPI 3.1 document generated from the contract
 * itself (protocol/api.ts `routes` and `schemas`), so it cannot drift from
 * what the coordinator validates.
 */
import { routes, schemas } from '../protocol/api.ts'
import { swarmRoutes, swarmSchemas } from '../protocol/swarm-api.ts'
import { DELTA_PACK_MEDIA_TYPE } from '../protocol/delta-pack.ts'
import { VERSION_POINTER_MEDIA_TYPE } from '../protocol/version-pointer.ts'
import { adminSchemas } from '../protocol/api-admin.ts'
import { PACE_ROUTE, PaceUpdate, PaceUpdateResponse } from '../protocol/pace.ts'
import { MANIFEST_MEDIA_TYPE, BLOCK_STREAM_MEDIA_TYPE } from '../protocol/constants.ts'
import type { JsonSchema } from '../protocol/schema.ts'
import { STATUS_OF_ERROR } from './http-errors.ts'
import { ROUTES } from './routes.ts'
import { SEGMENT_MEDIA_TYPE, SegmentTable } from '../protocol/segments.ts'
import { TRIMSWARM_VERSION } from '../protocol/version.ts'

type Auth = 'none' | 'any' | 'admin' | 'metrics'
interface Operation {
  method: 'get' | 'post' | 'put' | 'delete'
  path: string
  summary: string
  auth: Auth
  request?: string | { media: string }
  response?: string | { media: string } | null
  status?: number
  query?: string[]
}

const P = (name: string): string => `__${name}__`
/** Turns a route built with `__x__` placeholders into an OpenAPI template `{x}`. */
const tpl = (path: string): string => path.replace(/__(\w+)__/g, '{$1}')

const OPERATIONS: Operation[] = [
  { method: 'get', path: routes.health, summary: 'Liveness: 200 while the coordinator serves, with its version and uptime',
    auth: 'none', response: 'HealthResponse' },
  { method: 'get', path: routes.metrics,
    summary: 'Prometheus metrics (text exposition format): the admin token, an admin session or the metrics token ' +
      '(config metrics.tokenFile); no token with metrics.public',
    auth: 'metrics', response: { media: 'text/plain' } },
  { method: 'get', path: routes.openapi, summary: 'This document', auth: 'none', response: null },
  { method: 'get', path: routes.key, summary: 'The manifest-signing public key (pin it on first contact)', auth: 'none', response: 'KeyResponse' },
  { method: 'post', path: routes.login,
    summary: 'Log in with a directory (LDAP) user; returns a short-lived session token. Rate limited per user and per client IP.',
    auth: 'none', request: 'LoginRequest', response: 'LoginResponse' },
  { method: 'get', path: routes.me, summary: 'Who the token belongs to and the policy in force (union of the groups\' policies)',
    auth: 'any', response: 'MeResponse' },
  { method: 'post', path: routes.tokens, summary: 'Create a machine (agent) token for a group; the secret is in this response only',
    auth: 'admin', request: 'TokenCreateRequest', response: 'TokenCreateResponse', status: 201 },
  { method: 'get', path: routes.tokens, summary: 'List machine tokens (never their secrets)', auth: 'admin', response: 'TokenList' },
  { method: 'delete', path: routes.token(P('id')), summary: 'Revoke a machine token (effective at once)', auth: 'admin', response: 'TokenInfo' },
  { method: 'get', path: routes.policies, summary: 'Every group policy, by group', auth: 'admin', response: 'PolicyMap' },
  { method: 'get', path: routes.policy(P('group')), summary: 'One group\'s policy', auth: 'admin', response: 'Policy' },
  { method: 'put', path: routes.policy(P('group')), summary: 'Set one group\'s policy (replaces it)', auth: 'admin', request: 'Policy', response: 'Policy' },
  { method: 'delete', path: routes.policy(P('group')), summary: 'Delete one group\'s policy', auth: 'admin', response: null, status: 204 },
  { method: 'get', path: routes.images, summary: 'Images the caller\'s policy gives it', auth: 'any', response: 'ImageList' },
  { method: 'get', path: routes.versions(P('image')), summary: 'Versions of an image', auth: 'any', response: 'VersionList' },
  { method: 'post', path: routes.versions(P('image')), summary: 'Commit a version: body is the unsigned manifest; every chunk must be uploaded first',
    auth: 'admin', request: { media: 'application/cbor' }, response: 'VersionInfo', status: 201 },
  { method: 'get', path: routes.version(P('image'), P('version')), summary: 'The signed manifest envelope; version may be `latest`',
    auth: 'any', response: { media: MANIFEST_MEDIA_TYPE } },
  { method: 'get', path: routes.latest(P('image')),
    summary: 'The signed version pointer of the latest version (not retired): what agents install without a named version',
    auth: 'any', response: { media: VERSION_POINTER_MEDIA_TYPE } },
  { method: 'get', path: routes.versionInfo(P('image'), P('version')), summary: 'What the coordinator says of one version',
    auth: 'any', response: 'VersionInfo' },
  { method: 'post', path: routes.retire(P('image'), P('version')), summary: 'Retire a version (no longer offered as latest)',
    auth: 'admin', response: 'VersionInfo' },
  { method: 'post', path: routes.blocks(P('image'), P('version')), summary: 'Named blocks as one zstd stream, in request order',
    auth: 'any', request: 'BlockBatchRequest', response: { media: BLOCK_STREAM_MEDIA_TYPE } },
  { method: 'post', path: PACE_ROUTE, summary: 'Sets the rate of the caller\'s pace session (sender-side pacing of its origin streams, clamped)',
    auth: 'any', request: 'PaceUpdate', response: 'PaceUpdateResponse' },
  { method: 'get', path: routes.chunk(P('image'), P('version'), P('cid')), summary: 'One chunk\'s raw bytes',
    auth: 'any', response: { media: 'application/octet-stream' } },
  { method: 'get', path: routes.delta(P('image'), P('version'), P('from')), summary: 'The precomputed delta pack from `from` (HTTP Range supported)',
    auth: 'any', response: { media: DELTA_PACK_MEDIA_TYPE } },
  { method: 'get', path: ROUTES.segmentList.path.replace(/:(\w+)/g, (_m, n: string) => P(n === 'name' ? 'image' : n)),
    summary: 'The version\'s precomputed compressed segments (which blocks each holds, its size and ETag)', auth: 'any', response: 'SegmentTable' },
  { method: 'get', path: ROUTES.segment.path.replace(/:(\w+)/g, (_m, n: string) => P(n === 'name' ? 'image' : n)),
    summary: 'One compressed segment (HTTP Range supported)', auth: 'any', response: { media: SEGMENT_MEDIA_TYPE } },
  { method: 'post', path: routes.chunksMissing, summary: 'Which of these chunks the coordinator lacks (asked before uploading)',
    auth: 'admin', request: 'MissingChunksRequest', response: 'MissingChunksResponse' },
  { method: 'put', path: routes.chunkUpload(P('cid')), summary: 'Upload one chunk; rejected unless its bytes hash to the CID',
    auth: 'admin', request: { media: 'application/octet-stream' }, response: null },
  { method: 'get', path: routes.adminImages, summary: 'Every image and version with its state (live, retired, collected, incomplete), sizes and publish time',
    auth: 'admin', response: 'AdminImageList' },
  { method: 'post', path: routes.gc,
    summary: 'Storage gc: delete chunks and delta packs no live version uses (older than the grace period, ' +
      'not claimed by a publish in progress); dryRun only counts',
    auth: 'admin', request: 'GcRequest', response: 'GcReport' },
  { method: 'post', path: routes.events, summary: 'Agents report events; idempotent by event id',
    auth: 'any', request: 'EventBatch', response: 'EventBatchResponse' },
  { method: 'get', path: routes.events, summary: 'Stored events, newest first, filtered and paged',
    auth: 'admin', response: 'EventPage', query: ['image', 'site', 'type', 'limit', 'before'] },
  { method: 'get', path: ROUTES.agents.path,
    summary: 'What the coordinator knows of each agent (site, last seen, peer id, sync state per image), from its events',
    auth: 'admin', response: 'AgentList', query: ['site'] },
  { method: 'post', path: swarmRoutes.capabilities,
    summary: 'A short-lived capability for an image version, bound to the caller\'s libp2p peer id (policy must allow the image and LAN sharing)',
    auth: 'any', request: 'CapabilityRequest', response: 'CapabilityResponse' },
  { method: 'post', path: swarmRoutes.peers, summary: 'Register this agent\'s multiaddrs and site for LAN rendezvous (expires unless renewed)',
    auth: 'any', request: 'PeerRegistration', response: 'PeerRegistrationResponse' },
  { method: 'get', path: swarmRoutes.peers, summary: 'Live peers of a site (optionally working on one image version)',
    auth: 'any', response: 'PeerList', query: ['site', 'image', 'version'] },
  { method: 'post', path: swarmRoutes.peersLeave, summary: 'Remove the caller\'s own registrations of a peer id (an agent that stops serving)',
    auth: 'any', request: 'PeerLeave', response: 'PeerLeaveResponse' },
  { method: 'get', path: routes.reports, summary: 'Per image, version and site: clients, in progress, failed, bytes by source, WAN saved',
    auth: 'admin', response: 'ReportResponse', query: ['image', 'version', 'site'] }
]

const ERROR_BODY = {
  type: 'object',
  required: ['error'],
  additionalProperties: false,
  properties: { error: { type: 'object', required: ['name', 'message'], additionalProperties: false,
    properties: { name: { type: 'string', enum: Object.keys(STATUS_OF_ERROR) }, message: { type: 'string' } } } }
}

function content (x: string | { media: string }): Record<string, unknown> {
  return typeof x === 'string'
    ? { 'application/json': { schema: { $ref: `#/components/schemas/${x}` } } }
    : { [x.media]: { schema: { type: 'string', format: 'binary' } } }
}

/** Builds the OpenAPI document. */
export function buildOpenApi (info: { version?: string, serverUrl?: string } = {}): Record<string, unknown> {
  const all: Record<string, { json: JsonSchema }> = { ...schemas, ...adminSchemas, ...swarmSchemas, PaceUpdate, PaceUpdateResponse, SegmentTable }
  const paths: Record<string, Record<string, unknown>> = {}
  const errorRef = { description: 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
  for (const op of OPERATIONS) {
    const path = tpl(op.path)
    const params = [...path.matchAll(/\{(\w+)\}/g)].map(m => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }))
    for (const q of op.query ?? []) params.push({ name: q, in: 'query', required: false, schema: { type: 'string' } })
    const responses: Record<string, unknown> = {
      [String(op.status ?? 200)]: op.response == null ? { description: 'success' } : { description: 'success', content: content(op.response) },
      400: errorRef
    }
    if (op.auth !== 'none') responses[401] = errorRef
    if (op.auth === 'admin' || path.includes('{image}')) responses[403] = errorRef
    responses.default = errorRef
    paths[path] ??= {}
    paths[path][op.method] = {
      summary: op.summary,
      ...(params.length > 0 ? { parameters: params } : {}),
      ...(op.auth === 'none' ? { security: [] } : {}),
      ...(op.auth === 'admin' ? { description: 'Admin only: the admin token, or a user in one of the config\'s adminGroups.' } : {}),
      ...(op.request != null ? { requestBody: { required: true, content: content(op.request) } } : {}),
      responses
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'trimswarm coordinator', version: info.version ?? TRIMSWARM_VERSION,
      description: 'Errors are JSON `{ "error": { "name", "message" } }`; docs/PROTOCOL.md maps each name to its status.' },
    ...(info.serverUrl != null ? { servers: [{ url: info.serverUrl }] } : {}),
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer',
        description: 'admin token (tsa_), machine token (tsm_) or session token (tss_) from /v1/auth/login' } },
      schemas: { ...Object.fromEntries(Object.entries(all).map(([k, s]) => [k, s.json])), Error: ERROR_BODY }
    }
  }
}
