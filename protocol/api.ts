/**
 * The coordinator's HTTP API (JSON under /v1): routes and the one schema of
 * every body, used by the coordinator to validate requests and by clients to
 * validate responses. docs/PROTOCOL.md lists the routes with examples.
 */
import { NAME_PATTERN } from './constants.ts'
import { array, boolean, enumOf, integer, nullable, number, object, optional, record, string, tuple, type Infer } from './schema.ts'

/** A safe name: image, version, group, site. */
export const name = string({ minLength: 1, maxLength: 128, pattern: NAME_PATTERN })
const cidText = string({ minLength: 10, maxLength: 100, pattern: /^[a-z0-9]+$/ })
const isoTime = string({ maxLength: 40, pattern: /^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$/ })
const hhmm = string({ pattern: /^([01]\d|2[0-3]):[0-5]\d$/ })
const folder = string({ minLength: 1, maxLength: 4096 })
const bytesBySource = object({ local: integer(), peers: integer(), origin: integer() })

/** Route paths; `:x` segments are filled by the helpers below. */
export const routes = {
  health: '/healthz',
  metrics: '/metrics',
  openapi: '/v1/openapi.json',
  key: '/v1/key',
  login: '/v1/auth/login',
  me: '/v1/auth/me',
  tokens: '/v1/tokens',
  token: (id: string) => `/v1/tokens/${encodeURIComponent(id)}`,
  policies: '/v1/policies',
  policy: (group: string) => `/v1/policies/${encodeURIComponent(group)}`,
  images: '/v1/images',
  versions: (image: string) => `/v1/images/${encodeURIComponent(image)}/versions`,
  /** GET: the signed manifest envelope (binary); `version` may be `latest`. */
  version: (image: string, version: string) => `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}`,
  /** GET: the signed version pointer of the latest version (binary, protocol/version-pointer.ts): what agents install. */
  latest: (image: string) => `/v1/images/${encodeURIComponent(image)}/latest`,
  versionInfo: (image: string, version: string) => `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}/info`,
  retire: (image: string, version: string) => `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}/retire`,
  /** POST BlockBatchRequest: the named blocks as one zstd stream. */
  blocks: (image: string, version: string) => `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}/blocks`,
  /** GET: one chunk's raw bytes. */
  chunk: (image: string, version: string, cid: string) => `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}/chunks/${cid}`,
  /** GET (Range supported): the precomputed delta pack from `from` to `version`. */
  delta: (image: string, version: string, from: string) =>
    `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}` +
    `/delta/${encodeURIComponent(from)}`,
  chunksMissing: '/v1/chunks/missing',
  /** PUT raw bytes: uploads one chunk (admin). */
  chunkUpload: (cid: string) => `/v1/chunks/${cid}`,
  /** GET (admin): every image and version with its state. */
  adminImages: '/v1/admin/images',
  /** POST GcRequest (admin): storage gc. */
  gc: '/v1/admin/gc',
  events: '/v1/events',
  reports: '/v1/reports'
} as const

/** GET /v1/key: the coordinator's manifest-signing public key. */
export const KeyResponse = object({ algorithm: enumOf(['Ed25519']), publicKey: string({ maxLength: 100, description: 'raw 32-byte key, base64' }) })
export type KeyResponse = Infer<typeof KeyResponse>

/** GET /healthz: which version serves, for how long (a restart shows as a small uptime). */
export const HealthResponse = object({
  ok: boolean(),
  version: string({ maxLength: 64, description: 'package version of the coordinator' }),
  uptimeSeconds: integer({ min: 0, description: 'whole seconds since the coordinator started' })
})
export type HealthResponse = Infer<typeof HealthResponse>

/** POST /v1/auth/login */
export const LoginRequest = object({ user: string({ minLength: 1, maxLength: 256 }), password: string({ minLength: 1, maxLength: 1024 }) })
export type LoginRequest = Infer<typeof LoginRequest>
export const LoginResponse = object({ token: string({ maxLength: 8192 }), expiresAt: isoTime,
  user: string({ maxLength: 256 }), groups: array(string({ maxLength: 1024 }), { maxItems: 10_000 }) })
export type LoginResponse = Infer<typeof LoginResponse>

/** An update window in the agent's local time; end before start wraps past midnight. */
export const UpdateWindow = object({ start: hhmm, end: hhmm })
export type UpdateWindow = Infer<typeof UpdateWindow>

/** Folders agents index for Trim Transfer, per OS family. */
export const IndexFolders = object({ linux: optional(array(folder, { maxItems: 100 })),
  windows: optional(array(folder, { maxItems: 100 })),
  macos: optional(array(folder, { maxItems: 100 })) })
export type IndexFolders = Infer<typeof IndexFolders>

/**
 * How an agent's daemon moves bytes over the WAN: `background` yields to other
 * traffic (a delay-based scavenger rate, docs/ARCHITECTURE.md "Background mode"),
 * `foreground` takes the link like any download.
 */
export const TransferMode = enumOf(['background', 'foreground'])
export type TransferMode = Infer<typeof TransferMode>

/** PUT /v1/policies/:group — policy of one group. Rates in bytes per second, 0 = no cap. */
export const Policy = object({
  images: array(string({ minLength: 1, maxLength: 128, pattern: /^(\*|[A-Za-z0-9][A-Za-z0-9._+-]{0,127})$/ }), { maxItems: 1000 }),
  wanLimitBps: integer(),
  lanSharing: boolean(),
  lanUploadBps: integer(),
  maxPeers: integer({ min: 0, max: 1000 }),
  updateWindow: nullable(UpdateWindow),
  indexFolders: IndexFolders,
  /** The daemon's transfer mode; absent = background. */
  transfer: optional(TransferMode)
})
export type Policy = Infer<typeof Policy>

/** The policy in force for a caller: the union of its groups' policies. */
export const EffectivePolicy = object({
  groups: array(string({ maxLength: 1024 }), { maxItems: 10_000 }),
  images: array(string({ maxLength: 128 }), { maxItems: 100_000 }),
  wanLimitBps: integer(),
  lanSharing: boolean(),
  lanUploadBps: integer(),
  maxPeers: integer(),
  updateWindows: array(UpdateWindow, { maxItems: 10_000 }),
  indexFolders: object({ linux: array(folder, { maxItems: 10_000 }),
    windows: array(folder, { maxItems: 10_000 }),
    macos: array(folder, { maxItems: 10_000 }) }),
  /** The daemon's transfer mode (optional on the wire: a coordinator from before it sends none, which means background). */
  transfer: optional(TransferMode)
})
export type EffectivePolicy = Infer<typeof EffectivePolicy>

/** GET /v1/auth/me */
export const MeResponse = object({ kind: enumOf(['user', 'machine', 'admin']), user: string({ maxLength: 256 }),
  groups: array(string({ maxLength: 1024 }), { maxItems: 10_000 }), policy: EffectivePolicy })
export type MeResponse = Infer<typeof MeResponse>

/** POST /v1/tokens — a machine (agent) token for a group. */
/** `site`: binds the token's agents to that site (rendezvous and reports); without it the config's `sites` map or the agent's hint decides. */
export const TokenCreateRequest = object({ group: name, name: optional(string({ maxLength: 128 })), site: optional(name) })
export type TokenCreateRequest = Infer<typeof TokenCreateRequest>
export const TokenInfo = object({ id: string({ maxLength: 64 }), group: name, name: string({ maxLength: 128 }),
  site: optional(name), createdAt: isoTime, revoked: boolean() })
export type TokenInfo = Infer<typeof TokenInfo>
/** The secret appears only in the create response; the coordinator keeps a hash. */
export const TokenCreateResponse = object({ id: string({ maxLength: 64 }), group: name, name: string({ maxLength: 128 }),
  site: optional(name), createdAt: isoTime, revoked: boolean(), token: string({ maxLength: 256 }) })
export type TokenCreateResponse = Infer<typeof TokenCreateResponse>

/** What the coordinator says of one image version. */
export const VersionInfo = object({
  image: name,
  version: name,
  manifestCid: cidText,
  size: integer(),
  nonZeroBytes: integer(),
  chunks: integer(),
  blocks: integer(),
  publishedAt: isoTime,
  retired: boolean(),
  previous: nullable(name),
  /** Bytes of the delta pack from `previous`, null while not built or when there is no previous version. */
  deltaPackBytes: nullable(integer()),
  /** Share of this version's non-zero bytes already in `previous` (block level), null without previous. */
  reusedFromPreviousPercent: nullable(number({ min: 0, max: 100 }))
})
export type VersionInfo = Infer<typeof VersionInfo>
export const VersionList = object({ image: name, latest: nullable(name), versions: array(VersionInfo, { maxItems: 100_000 }) })
export type VersionList = Infer<typeof VersionList>
export const ImageList = object({ images: array(object({ name, latest: nullable(name), versions: integer() }), { maxItems: 100_000 }) })
export type ImageList = Infer<typeof ImageList>

/** POST /v1/chunks/missing — which of these chunks the coordinator lacks (asked before uploading). */
export const MissingChunksRequest = object({ cids: array(cidText, { maxItems: 100_000 }) })
export type MissingChunksRequest = Infer<typeof MissingChunksRequest>
export const MissingChunksResponse = object({ missing: array(cidText, { maxItems: 100_000 }) })
export type MissingChunksResponse = Infer<typeof MissingChunksResponse>

/**
 * POST .../blocks — blocks by index among the manifest's non-zero blocks, as
 * [start, count] ranges. The response is one zstd stream of the blocks' bytes
 * in request order. To resume, ask again for the blocks not yet received.
 */
export const BlockBatchRequest = object({ ranges: array(tuple([integer(), integer({ min: 1 })]), { maxItems: 1_000_000 }) })
export type BlockBatchRequest = Infer<typeof BlockBatchRequest>

/** Agent event types. */
export const EVENT_TYPES = ['sync.started', 'sync.progress', 'sync.completed', 'sync.failed', 'peer.banned'] as const

/** One event an agent reports. `id` makes re-sending idempotent. */
export const AgentEvent = object({
  id: string({ minLength: 8, maxLength: 64, pattern: /^[A-Za-z0-9-]+$/ }),
  type: enumOf(EVENT_TYPES),
  time: isoTime,
  agent: string({ minLength: 1, maxLength: 128 }),
  site: name,
  image: name,
  version: name,
  fromVersion: optional(nullable(name)),
  bytes: optional(bytesBySource),
  totalBytes: optional(integer()),
  seconds: optional(number({ min: 0 })),
  error: optional(string({ maxLength: 2000 })),
  peerId: optional(string({ maxLength: 128 })),
  /** Chunk bytes this agent has served to LAN peers, cumulative since the agent process started (not per sync); absent when LAN sharing did not run. */
  servedBytes: optional(integer())
})
export type AgentEvent = Infer<typeof AgentEvent>
export const EventBatch = object({ events: array(AgentEvent, { minItems: 1, maxItems: 1000 }) })
export type EventBatch = Infer<typeof EventBatch>
/**
 * `rejected`: events the coordinator did not take (image not in policy, unknown version, site refused, agent cap), by
 * reason in `rejectedBy`; not worth sending again.
 */
export const EventBatchResponse = object({
  accepted: integer(),
  duplicates: integer(),
  rejected: optional(integer()),
  rejectedBy: optional(object({ image: optional(integer()), version: optional(integer()), site: optional(integer()), agents: optional(integer()) }))
})

/** GET /v1/reports?image=&version=&site= — one row per image, version and site. */
export const ReportRow = object({
  image: name,
  version: name,
  site: name,
  clients: integer({ description: 'agents whose latest completed sync of this image is this version' }),
  inProgress: integer(),
  failed: integer(),
  bytes: bytesBySource,
  wanSavedPercent: number({ min: 0, max: 100 })
})
export type ReportRow = Infer<typeof ReportRow>
export const ReportResponse = object({ rows: array(ReportRow, { maxItems: 1_000_000 }) })
export type ReportResponse = Infer<typeof ReportResponse>

/** Every route's bodies, for the OpenAPI document. */
export const schemas = {
  HealthResponse, KeyResponse, LoginRequest, LoginResponse, UpdateWindow, IndexFolders, Policy, EffectivePolicy, MeResponse,
  TokenCreateRequest, TokenInfo, TokenCreateResponse, VersionInfo, VersionList, ImageList, MissingChunksRequest,
  MissingChunksResponse, BlockBatchRequest, AgentEvent, EventBatch, EventBatchResponse, ReportRow, ReportResponse,
  PolicyMap: record(name, Policy)
}
