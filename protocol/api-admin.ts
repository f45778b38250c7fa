/**
 * Admin API bodies that complete protocol/api.ts: the token list, the
 * event page, the admin image list and storage gc (GET /v1/tokens,
 * GET /v1/events, GET /v1/admin/images, POST /v1/admin/gc), shared by the coordinator,
 * the CLI and the admin console.
 */
import { AgentEvent, TokenInfo } from './api.ts'
import { array, boolean, enumOf, integer, nullable, number, object, optional, record, string, type Infer } from './schema.ts'

const isoTime = string({ maxLength: 40, pattern: /^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$/ })

/** GET /v1/tokens */
export const TokenList = object({ tokens: array(TokenInfo, { maxItems: 1_000_000 }) })
export type TokenList = Infer<typeof TokenList>

/** One stored event: what the agent sent, when it arrived, and the principal that posted it. */
export const StoredEvent = object({ event: AgentEvent, receivedAt: isoTime, postedBy: string({ maxLength: 256 }) })
export type StoredEvent = Infer<typeof StoredEvent>

/** GET /v1/events?image=&site=&type=&limit=&before= — newest first; `next` is the `before` of the next page. */
export const EventPage = object({ events: array(StoredEvent, { maxItems: 100_000 }), next: nullable(string({ maxLength: 200 })) })
export type EventPage = Infer<typeof EventPage>

const stateName = string({ minLength: 1, maxLength: 128 })

/** Sync state of one image on one agent, from its events. */
export const AgentImageState = object({
  /** The latest completed sync: the version the agent holds. */
  completed: optional(object({ version: stateName, site: stateName, time: isoTime })),
  /** The latest sync event of any kind. */
  current: optional(object({ version: stateName, site: stateName,
    status: enumOf(['in-progress', 'completed', 'failed'] as const), time: isoTime,
    error: optional(string({ maxLength: 2000 })) }))
})
export type AgentImageState = Infer<typeof AgentImageState>

/** What the coordinator knows of one agent (from its events). */
export const AgentRecord = object({
  agent: string({ minLength: 1, maxLength: 128 }),
  site: stateName,
  lastSeen: isoTime,
  peerId: optional(string({ maxLength: 128 })),
  images: record(stateName, AgentImageState, { maxEntries: 100_000 }),
  /** The newest (by event time) servedBytes the agent reported: chunk bytes it served to LAN peers since its process started. */
  servedBytes: optional(integer()),
  /** Event time of that report (an older event re-sent later does not replace it). */
  servedAt: optional(isoTime),
  /** Who reports as this agent: `t:<token id>` or `u:<user>` (absent when the admin posted). Only that owner's events change the record. */
  owner: optional(string({ maxLength: 300 }))
})
export type AgentRecord = Infer<typeof AgentRecord>

/** GET /v1/agents?site= */
export const AgentList = object({ agents: array(AgentRecord, { maxItems: 10_000_000 }) })
export type AgentList = Infer<typeof AgentList>


const versionName = string({ minLength: 1, maxLength: 128 })

/**
 * State of one stored version: `live` (served; its chunks are kept), `retired`
 * (no longer `latest`; its chunks go at the next storage gc), `collected`
 * (retired and its unshared chunks deleted: no longer served), `incomplete`
 * (coordinator fsck found chunks damaged or missing: never served).
 */
export const VERSION_STATES = ['live', 'retired', 'collected', 'incomplete'] as const

/** One version in GET /v1/admin/images. */
export const AdminVersion = object({
  version: versionName,
  state: enumOf(VERSION_STATES),
  latest: boolean(),
  publishedAt: isoTime,
  /** Image size (bytes, zero regions included). */
  size: integer(),
  /** Bytes of non-zero data (what the chunks hold). */
  nonZeroBytes: integer(),
  chunks: integer(),
  previous: nullable(versionName),
  deltaPackBytes: nullable(integer())
})
export type AdminVersion = Infer<typeof AdminVersion>

/** GET /v1/admin/images: every image and every version with its state (admin). */
export const AdminImageList = object({
  images: array(object({ name: versionName, latest: nullable(versionName), versions: array(AdminVersion, { maxItems: 100_000 }) }), { maxItems: 100_000 })
})
export type AdminImageList = Infer<typeof AdminImageList>

/** POST /v1/admin/gc: delete chunks and delta packs no live version uses; `dryRun: true` only counts. Required, so a stray `{}` deletes nothing. */
export const GcRequest = object({ dryRun: boolean() })
export type GcRequest = Infer<typeof GcRequest>

/** What a storage gc found and freed. */
export const GcReport = object({
  dryRun: boolean(),
  /** Retired versions whose data this run released (now `collected`). */
  versionsCollected: integer(),
  chunks: object({
    /** Chunks in the block store. */
    scanned: integer(),
    /** Used by a version that is not retired (live or incomplete). */
    live: integer(),
    /** Unused but stored within the grace period, or named by a publish in progress: kept. */
    kept: integer(),
    /** Deleted (with dryRun: would be deleted). */
    deleted: integer(),
    deletedBytes: integer()
  }),
  packs: object({ deleted: integer(), deletedBytes: integer() }),
  seconds: number({ min: 0 })
})
export type GcReport = Infer<typeof GcReport>

/** Admin bodies, for the OpenAPI document. */
export const adminSchemas = { TokenList, StoredEvent, EventPage, AgentImageState, AgentRecord, AgentList, AdminVersion, AdminImageList, GcRequest, GcReport }
