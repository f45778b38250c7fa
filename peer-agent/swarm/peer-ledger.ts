/**
 * The ledger of one peer a session fetches from (pure state, no I/O): what it holds, what is
 * requested from it, how fast it delivers and how much may be asked of it at once. The
 * session's planner (request-planner.ts) reads it; the want-list (want-list.ts) keeps its
 * requests and have-map in step with the chunks' states.
 */
import { PIPELINE_BYTES, PIPELINE_MAX_BYTES, PIPELINE_MAX_REQUESTS, PIPELINE_MIN_REQUESTS, PIPELINE_SECONDS } from './constants.ts'

/** A peer's delivery rate is sampled over windows of at least this long (ms). */
export const RATE_WINDOW_MS = 100

/** One connected peer as the session's planning sees it. */
export interface PeerLedger {
  readonly id: string
  /** Its have-map (bit i: chunk i). */
  have: Uint8Array
  /** Whether it syncs this version now (its HAVE carried ACTIVE): a participant of the claim rule. */
  active: boolean
  /** Chunk index -> performance.now() when requested. */
  inflight: Map<number, number>
  inflightBytes: number
  /** Requests cancelled (endgame, or found elsewhere) whose BLOCK may still arrive. */
  cancelled: Set<number>
  /** When it last announced a chunk it did not announce before (what keeps its claim-rule share its own). */
  lastProgressAt: number
  closed: boolean
  /** Bytes it may have requested and not delivered (PIPELINE_BYTES at first, then sized by its rate). */
  pipelineBytes: number
  /** Delivery rate estimate in bytes/s, and the bytes and start of the current measuring window. */
  rate: number
  rateBytes: number
  rateSince: number
}

/** A fresh ledger for a peer that just sent its first have-map (empty here: the want-list fills it). */
export function createPeerLedger (id: string, chunkCount: number, active: boolean, now: number): PeerLedger {
  return {
    id,
    have: new Uint8Array(Math.ceil(chunkCount / 8)),
    active,
    inflight: new Map(),
    inflightBytes: 0,
    cancelled: new Set(),
    lastProgressAt: now,
    closed: false,
    pipelineBytes: PIPELINE_BYTES,
    rate: 0,
    rateBytes: 0,
    rateSince: now
  }
}

/** Whether more may be requested from the peer: at least PIPELINE_MIN_REQUESTS, else up to its pipeline's bytes and PIPELINE_MAX_REQUESTS. */
export function hasCapacity (p: PeerLedger): boolean {
  return !p.closed && (p.inflight.size < PIPELINE_MIN_REQUESTS || (p.inflightBytes < p.pipelineBytes && p.inflight.size < PIPELINE_MAX_REQUESTS))
}

/** Whether a delivery brought the peer's requests down to half its window (by bytes and by count): one WANT and one scan per refill, not per chunk. */
export function needsRefill (p: PeerLedger): boolean {
  return (p.inflightBytes <= p.pipelineBytes / 2 && p.inflight.size <= PIPELINE_MAX_REQUESTS / 2) || p.inflight.size < PIPELINE_MIN_REQUESTS
}

/**
 * Counts `bytes` received from the peer and, once per RATE_WINDOW_MS, sizes its pipeline to
 * PIPELINE_SECONDS of what it delivers (PIPELINE_BYTES to PIPELINE_MAX_BYTES): a fast peer's
 * grows, a slow one's shrinks so its requests wait about PIPELINE_SECONDS.
 */
export function measureRate (p: PeerLedger, bytes: number, now: number): void {
  p.rateBytes += bytes
  const ms = now - p.rateSince
  if (ms < RATE_WINDOW_MS) return
  const sample = p.rateBytes * 1000 / ms
  p.rate = p.rate === 0 ? sample : (p.rate + sample) / 2
  p.rateBytes = 0
  p.rateSince = now
  p.pipelineBytes = Math.max(PIPELINE_BYTES, Math.min(PIPELINE_MAX_BYTES, p.rate * PIPELINE_SECONDS))
}

/**
 * Why a peer with requests in flight is to be dropped, if it is: silent for `stallMs` (counted from
 * the later of its last byte and its oldest open request) or one request open for `requestMs`.
 */
export function timeoutReason (p: PeerLedger, lastByteAt: number, now: number, limits: { stallMs: number, requestMs: number }): string | undefined {
  if (p.inflight.size === 0) return undefined
  const oldest = Math.min(...p.inflight.values())
  if (now - Math.max(lastByteAt, oldest) > limits.stallMs) return `stalled: no data for ${limits.stallMs} ms`
  if (now - oldest > limits.requestMs) return `too slow: a chunk took over ${limits.requestMs} ms`
  return undefined
}
