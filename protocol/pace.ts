/**
 * Sender-side pacing of origin streams (background mode, docs/PROTOCOL.md
 * "Paced origin streams"): an agent names a pace session and a byte rate in
 * two request headers on block-batch, delta-pack and chunk requests, and
 * changes the session's rate with POST /v1/pace while its streams run; the
 * coordinator writes every stream of that session through one token bucket
 * at that rate, so its bytes leave at the rate the agent's delay-based
 * controller chose instead of in window-sized bursts. The rate is the
 * client's word: always clamped to [PACE_MIN_RATE, PACE_MAX_RATE].
 */
import { ValidationError } from './errors.ts'
import { integer, object, string, type Infer } from './schema.ts'

/** Request header naming the pace session (PACE_SESSION_PATTERN). */
export const PACE_SESSION_HEADER = 'x-trimswarm-pace-session'

/** Request header with the session's rate in bytes per second (a whole number); the answer echoes the rate applied. */
export const PACE_RATE_HEADER = 'x-trimswarm-pace-rate'

/** POST: `PaceUpdate` in, `PaceUpdateResponse` out. */
export const PACE_ROUTE = '/v1/pace'

/** A session id: 16 to 64 base64url characters (the agent uses 16 random bytes). */
export const PACE_SESSION_PATTERN = /^[A-Za-z0-9_-]{16,64}$/

/**
 * Lowest rate a stream is paced at (bytes/s): the agent's background floor. A 16 KiB piece then waits at most
 * 1 s, well inside the coordinator's 30 s stall limit, and a client asking less is paced at this.
 */
export const PACE_MIN_RATE = 16 * 1024

/** Highest rate a stream is paced at (bytes/s, 10 Gbit/s): above it pacing costs timers and gains nothing. */
export const PACE_MAX_RATE = 1_250_000_000

/** Longest header value the coordinator reads as a rate (digits). */
const RATE_MAX_DIGITS = 16

/** Body of POST /v1/pace: the session's new rate (bytes/s, clamped by the coordinator). */
export const PaceUpdate = object({
  session: string({ pattern: PACE_SESSION_PATTERN, maxLength: 64 }),
  rate: integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
})
export type PaceUpdate = Infer<typeof PaceUpdate>

/** Answer of POST /v1/pace: the rate applied (clamped). */
export const PaceUpdateResponse = object({ rate: integer() })
export type PaceUpdateResponse = Infer<typeof PaceUpdateResponse>

/** `rate` within [PACE_MIN_RATE, PACE_MAX_RATE], whole bytes. */
export function clampPaceRate (rate: number): number {
  return Math.round(Math.min(PACE_MAX_RATE, Math.max(PACE_MIN_RATE, rate)))
}

/**
 * The pace a request asks for, from its two headers: undefined when it names none; throws ValidationError
 * when only one is there or either is malformed (the client's words, never trusted).
 */
export function parsePaceHeaders (session: string | undefined, rate: string | undefined): { session: string, rate: number } | undefined {
  if (session == null && rate == null) return undefined
  if (session == null || rate == null) throw new ValidationError(`${PACE_SESSION_HEADER} and ${PACE_RATE_HEADER} go together: one was sent without the other`)
  if (!PACE_SESSION_PATTERN.test(session)) throw new ValidationError(`${PACE_SESSION_HEADER} must be 16 to 64 characters of A-Z a-z 0-9 _ -`)
  const text = rate.trim()
  if (!/^\d+$/.test(text) || text.length > RATE_MAX_DIGITS) {
    throw new ValidationError(`${PACE_RATE_HEADER} must be a whole number of bytes per second, got ${JSON.stringify(rate.slice(0, 40))}`)
  }
  return { session, rate: clampPaceRate(Number(text)) }
}
