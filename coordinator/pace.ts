/**
 * Sender-side pacing of origin streams (protocol/pace.ts): pace sessions, one
 * token bucket each, shared by every stream that names the session, and a
 * web-stream wrapper that hands bytes to the HTTP writer at the session's rate.
 *
 * The rate is the client's word, so nothing here lets a client hold more than
 * it could by reading slowly, which it always can: the rate is clamped to
 * [PACE_MIN_RATE, PACE_MAX_RATE]; bytes go out in slices of at most
 * PACE_SLICE_BYTES, so one wait is a second or so at the floor, far inside the
 * block batch's 30 s stall limit (whose watchdog still ends a stream its client
 * stops reading); sessions are bounded per principal and in all, idle ones
 * forgotten; a stream holds its batch slot as long as a slow reader would.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { clampPaceRate, PACE_RATE_HEADER, PACE_SESSION_HEADER, parsePaceHeaders } from '../protocol/pace.ts'
import { PACE_BURST_SECONDS, PACE_IDLE_MS, PACE_MAX_OWNERS, PACE_MAX_SESSIONS_PER_OWNER, PACE_RECHECK_MS, PACE_SLICE_BYTES } from './constants.ts'

/** One pace session: a byte rate and its token bucket. */
export interface Pace {
  readonly rate: number
  setRate: (rate: number) => void
  /** Takes `bytes` from the bucket (going into debt) and returns how long to wait the debt off (ms, 0 = none). */
  reserve: (bytes: number) => number
}

/** Pace sessions by owner (the principal) and session id. */
export interface PaceRegistry {
  /** The session's pace, created at `rate` (clamped) when new; an existing one takes the new rate. */
  pace: (owner: string, session: string, rate: number) => Pace
  /** Sessions held now (all owners). */
  readonly size: number
}

/** Options of createPaceRegistry. */
export interface PaceRegistryInit {
  now?: () => number
  maxOwners?: number
  maxSessionsPerOwner?: number
  idleMs?: number
}

/** A token bucket at a settable rate, PACE_BURST_SECONDS deep (at least one slice): small, so paced bytes leave smoothly. */
export function createPace (rate: number, now: () => number = () => performance.now()): Pace {
  let r = clampPaceRate(rate)
  let tokens = 0
  let last = now()
  const refill = (): void => {
    const t = now()
    const capacity = Math.max(r * PACE_BURST_SECONDS, PACE_SLICE_BYTES)
    tokens = Math.min(capacity, tokens + (t - last) / 1000 * r)
    last = t
  }
  return {
    get rate () { return r },
    setRate (rate) {
      // the bytes owed so far were priced at the old rate: settle them first
      refill()
      r = clampPaceRate(rate)
    },
    reserve (bytes) {
      refill()
      tokens -= bytes
      return tokens >= 0 ? 0 : Math.ceil(-tokens / r * 1000)
    }
  }
}

/** Creates the registry of pace sessions (in memory, bounded). */
export function createPaceRegistry (init: PaceRegistryInit = {}): PaceRegistry {
  const now = init.now ?? (() => performance.now())
  const maxOwners = init.maxOwners ?? PACE_MAX_OWNERS
  const perOwner = init.maxSessionsPerOwner ?? PACE_MAX_SESSIONS_PER_OWNER
  const idleMs = init.idleMs ?? PACE_IDLE_MS
  // Map order = least recently used first, for owners and for each owner's sessions
  const owners = new Map<string, Map<string, { pace: Pace, used: number }>>()
  let size = 0

  function dropIdle (t: number): void {
    for (const [owner, sessions] of owners) {
      for (const [id, s] of sessions) {
        if (t - s.used < idleMs) break
        sessions.delete(id)
        size--
      }
      if (sessions.size === 0) owners.delete(owner)
    }
  }

  return {
    get size () { return size },
    pace (owner, session, rate) {
      const t = now()
      dropIdle(t)
      let sessions = owners.get(owner)
      if (sessions == null) sessions = new Map()
      owners.delete(owner)
      owners.set(owner, sessions)
      const had = sessions.get(session)
      if (had != null) {
        sessions.delete(session)
        sessions.set(session, had)
        had.used = t
        had.pace.setRate(rate)
        return had.pace
      }
      // a stream keeps the pace it got; a session dropped here only stops taking updates
      if (sessions.size >= perOwner) { sessions.delete(sessions.keys().next().value as string); size-- }
      const entry = { pace: createPace(rate, now), used: t }
      sessions.set(session, entry)
      size++
      if (owners.size > maxOwners) {
        const [oldest, its] = owners.entries().next().value as [string, Map<string, unknown>]
        owners.delete(oldest)
        size -= its.size
      }
      return entry.pace
    }
  }
}

/**
 * `source` handed on at `pace`'s rate, in slices of at most PACE_SLICE_BYTES (pull-driven like
 * toWebStream: a slice is read and waited for only when the HTTP writer asks for the next one).
 */
export function pacedStream (source: ReadableStream<Uint8Array>, pace: Pace): ReadableStream<Uint8Array> {
  const reader = source.getReader()
  let rest: Uint8Array | undefined
  const stopper = new AbortController()
  return new ReadableStream<Uint8Array>({
    async pull (controller) {
      if (rest == null || rest.length === 0) {
        const next = await reader.read()
        if (next.done) { controller.close(); return }
        rest = next.value
      }
      const slice = rest.subarray(0, PACE_SLICE_BYTES)
      rest = rest.subarray(slice.length)
      let ms = pace.reserve(slice.length)
      // in pieces, looking at the rate again after each: a debt priced at a low rate (the agent's periodic
      // slowdown drops it to the floor for a round trip) is paid off at the new one once it rises
      while (ms > 0) {
        await sleep(Math.min(ms, PACE_RECHECK_MS), undefined, { signal: stopper.signal })
        ms = pace.reserve(0)
      }
      controller.enqueue(slice)
    },
    async cancel (reason) {
      stopper.abort()
      await reader.cancel(reason)
    }
  }, { highWaterMark: 0 })
}

/** The owner of a principal's pace sessions: one principal cannot name, and so change, another's session. */
export function paceOwner (principal: { kind: string, user: string }): string {
  return `${principal.kind}:${principal.user}`
}

/**
 * The pace a request's headers ask for (its principal's session, created or updated), undefined when they name
 * none; throws ValidationError for malformed ones. Every origin stream of a session (block batches, segments,
 * chunks, delta packs) shares its one bucket, however many connections the agent opens.
 */
export function requestPace (
  registry: PaceRegistry, principal: { kind: string, user: string }, header: (name: string) => string | undefined
): Pace | undefined {
  const asked = parsePaceHeaders(header(PACE_SESSION_HEADER), header(PACE_RATE_HEADER))
  return asked == null ? undefined : registry.pace(paceOwner(principal), asked.session, asked.rate)
}

/** A response body: streamed, or whole. */
type ResponseBytes = ReadableStream<Uint8Array> | Uint8Array

/** `body` at `pace`'s rate when there is one; the header that tells the client its pace was applied, and at which rate. */
export function pacedBody (body: ResponseBytes, pace: Pace | undefined): { body: ResponseBytes, headers: Record<string, string> } {
  if (pace == null) return { body, headers: {} }
  const stream = body instanceof Uint8Array ? new Blob([body as Uint8Array<ArrayBuffer>]).stream() : body
  return { body: pacedStream(stream, pace), headers: { [PACE_RATE_HEADER]: String(pace.rate) } }
}
