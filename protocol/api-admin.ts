/**
 * Admin API bodies that complete protocol/api.ts: the token list and the
 * event page (GET /v1/tokens, GET /v1/events), shared by the coordinator,
 * the CLI and the admin console.
 */
import { AgentEvent, TokenInfo } from './api.ts'
import { array, nullable, object, string, type Infer } from './schema.ts'

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

/** Admin bodies, for the OpenAPI document. */
export const adminSchemas = { TokenList, StoredEvent, EventPage }
